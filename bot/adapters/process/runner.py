"""Running deploy and gate commands: own process group, timeout, output tail, and an
environment with nothing of the bot's in it.

A command is the released repository's code: anyone who may commit can change it. So it gets
a clean environment (a short allowlist, what the config passes it, and the RELEASE_*/FLAG_*
values the bot sets), never the bot's own: no Slack token, no signing secret, no Redis URL, no
RELEASEBOT_* setting. With `run_as` it runs as another user, who cannot read the bot's memory,
`/proc/<bot>/environ`, its state directory or its config either.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import pwd
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

from bot.adapters.process import supervise
from bot.domain.command_results import CommandResult
from bot.domain.config import CommandEnv
from bot.services.ports import StopTime

PR_SET_DUMPABLE = 4


def keep_memory_from_children() -> bool:
    """Make this process non-dumpable (Linux): its memory, `/proc/<pid>/environ` and ptrace
    are closed to other processes of the same user, such as the commands it runs (root can
    still read them: run those as another user, `worker.run_as`). True if it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)


# From the bot's environment, only what a shell and its tools need to behave.
ALLOWED = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TERM", "USER", "LOGNAME", "SHELL", "TMPDIR")


def command_environment(
    own: Mapping[str, str],
    given: CommandEnv,
    *,
    source: Mapping[str, str] | None = None,
    user: str = "",
) -> dict[str, str]:
    """The whole environment of a command: the allowlist (and LC_*) from `source` (the bot's
    environment), the config's `pass_env` names from it and its `env` values, then `own`, the
    RELEASE_*/FLAG_* values of this deploy, which win. As `user`, HOME, USER and LOGNAME are
    theirs."""
    source = os.environ if source is None else source
    env = {k: v for k, v in source.items() if k in ALLOWED or k.startswith("LC_")}
    env.update({name: source[name] for name in given.pass_env if name in source})
    env.update(dict(given.values))
    if user:
        entry = pwd.getpwnam(user)
        env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
    env.update(own)
    return env


TAIL_LINES = 25
TAIL_CHARS = 2500


async def run_command(
    command: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    stop: StopTime | None = None,
    user: str = "",
    on_line: Callable[[str], None] | None = None,
) -> CommandResult:
    """Run `command` with the shell in its own process group, with exactly `env` (build it
    with `command_environment`) and as `user` if given; kill the whole group at timeout, and
    (with `stop`) when its stop time passes without a renewal, even if this process is frozen:
    the supervisor process does that."""
    started = time.monotonic()
    args = [str(os.getpid()), command, "--user", user]
    if stop is not None:
        args += ["--stop-at", repr(stop.stop_at)]
    # The supervisor (bot/adapters/process/supervise.py) leads the new process group and takes
    # it down if this process dies.
    proc = await asyncio.create_subprocess_exec(
        # -I and a path, not -m: the released repository may have a `bot` package of its own.
        sys.executable,
        "-I",
        supervise.__file__,
        *args,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.PIPE if stop is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    forget = _tell_stop_times(proc, stop) if stop is not None else None
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    async def read_output() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            text = line.decode(errors="replace").rstrip()
            tail.append(text)
            if on_line is not None and text:
                on_line(text)  # the latest line, for the release message (cheap: it keeps it)

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
    return CommandResult(
        exit_code=None if timed_out else proc.returncode,
        timed_out=timed_out,
        duration=time.monotonic() - started,
        tail=text,
    )


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


class CommandRunner:
    """The `Runner` port: a deploy or gate command in its own process group under the
    supervisor, with a clean environment, as `run_as` when set (worker.run_as)."""

    def __init__(self, run_as: str = "") -> None:
        self.run_as = run_as

    async def run(
        self,
        command: str,
        *,
        cwd: Path,
        own: Mapping[str, str],
        given: CommandEnv,
        timeout: float,
        stop: StopTime | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> CommandResult:
        """`own` are this run's RELEASE_*/FLAG_* values; `given` what the config passes;
        `on_line` hears each line of output as it comes."""
        return await run_command(
            command,
            cwd=cwd,
            timeout=timeout,
            stop=stop,
            env=command_environment(own, given, user=self.run_as),
            user=self.run_as,
            on_line=on_line,
        )
