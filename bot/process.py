"""Running deploy and gate commands: own process group, timeout, output tail."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot import supervise

TAIL_LINES = 25
TAIL_CHARS = 2500


@dataclass(frozen=True)
class CommandResult:
    exit_code: int | None  # None when it was killed at the timeout
    timed_out: bool
    duration: float
    tail: str
    error: str | None = None  # it could not be run at all, and why

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.error is None

    def summary(self) -> str:
        if self.error:
            return self.error
        if self.timed_out:
            return f"timed out after {self.duration:.0f}s"
        if self.exit_code == 0:
            return "succeeded"
        if self.exit_code is not None and self.exit_code < 0:
            return f"killed by signal {-self.exit_code}"
        return f"exited with code {self.exit_code}"


class StopTime(Protocol):
    """When a command must have stopped unless told otherwise: an environment lock's safe
    time (bot.locks.RenewingLock), moved on by every renewal."""

    @property
    def stop_at(self) -> float: ...  # CLOCK_MONOTONIC seconds; 0 = now

    def listen(self, listener: Callable[[float], None]) -> Callable[[], None]: ...


async def run_command(command: str, *, cwd: Path, env: Mapping[str, str],
                      timeout: float, stop: StopTime | None = None) -> CommandResult:
    """Run `command` with the shell in its own process group; kill the whole group at timeout,
    and (with `stop`) when its stop time passes without a renewal, even if this process is
    frozen: the supervisor process does that."""
    started = time.monotonic()
    args = [str(os.getpid()), command]
    if stop is not None:
        args.append(repr(stop.stop_at))
    # bot.supervise leads the new process group and takes it down if this process dies.
    proc = await asyncio.create_subprocess_exec(
        # -I and a path, not -m: the released repository may have a `bot` package of its own.
        sys.executable, "-I", supervise.__file__, *args, cwd=cwd,
        env={**os.environ, **env},
        stdin=asyncio.subprocess.PIPE if stop is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True)
    forget = _tell_stop_times(proc, stop) if stop is not None else None
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    async def read_output() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            tail.append(line.decode(errors="replace").rstrip())

    reader = asyncio.create_task(read_output())
    timed_out = False
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        timed_out = True
        _kill_group(proc.pid)
        await proc.wait()
    finally:
        if forget is not None:
            forget()
        if proc.returncode is None:  # cancelled: never leave the command running
            _kill_group(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
    # A background child may hold the pipe open after the shell exits (a daemon the deploy
    # started); stop reading rather than wait on it.
    try:
        await asyncio.wait_for(reader, 2)
    except TimeoutError:
        reader.cancel()
    text = "\n".join(tail)[-TAIL_CHARS:]
    return CommandResult(exit_code=None if timed_out else proc.returncode, timed_out=timed_out,
                         duration=time.monotonic() - started, tail=text)


def _tell_stop_times(proc: asyncio.subprocess.Process, stop: StopTime) -> Callable[[], None]:
    """Pass every new stop time to the supervisor's stdin, one per line."""
    def tell(stop_at: float) -> None:
        if proc.stdin is not None and not proc.stdin.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                proc.stdin.write(f"{stop_at!r}\n".encode())

    return stop.listen(tell)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
