"""`python -I supervise.py PARENT_PID COMMAND [--user NAME] [--stop-at T]`: run COMMAND so
that it never outlives its worker's claim on the environment (and, with --user, as that
user; its environment is this process's own, which the worker made clean).

The worker starts this in a new process group. It kills its whole group (the shell, the deploy
and everything they started) when any of these happens:

- the worker dies, even by SIGKILL: the kernel sends this process SIGTERM (PR_SET_PDEATHSIG),
  and its end of our stdin closes;
- T passes (a CLOCK_MONOTONIC time) without a later one arriving on stdin, one per line.
  The worker sends a new T each time Redis confirms its environment lock, so a worker that
  is frozen (SIGSTOP) or cut off from Redis stops its deploy before the lock can expire and
  another worker can deploy to the same environment. This must run here and not in the worker:
  a frozen worker cannot kill anything.

Without --stop-at the command runs until it ends or the worker dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import pwd
import select
import signal
import subprocess
import sys
import time
from types import FrameType

PR_SET_PDEATHSIG = 1


def _kill_group(signum: int = 0, frame: FrameType | None = None) -> None:
    os.killpg(0, signal.SIGKILL)


def _stop(reason: str) -> None:
    # The last line of the output the worker shows in the thread, then the whole group.
    with contextlib.suppress(OSError):
        os.write(1, f"releasebot: stopped the command: {reason}\n".encode())
    _kill_group()


def _watch(child: subprocess.Popen[bytes], stop_at: float) -> int:
    """Wait for the child, stopping it at `stop_at` unless stdin moves it later."""
    pending = b""
    child_fd = os.pidfd_open(child.pid) if hasattr(os, "pidfd_open") else None
    while True:
        left = stop_at - time.monotonic()
        if left <= 0:
            _stop(
                "its environment lock was not renewed in time (the worker is frozen or "
                "cut off from Redis)"
            )
        watched = [0] if child_fd is None else [0, child_fd]
        # Without a pidfd (not Linux), look at the child at least every 0.1 s.
        wait = left if child_fd is not None else min(left, 0.1)
        ready, _, _ = select.select(watched, [], [], wait)
        if (child_fd is not None and child_fd in ready) or child.poll() is not None:
            return child.wait()
        if 0 in ready:
            data = os.read(0, 4096)
            if not data:  # the worker closed our stdin: it is gone
                _stop("its worker went away")
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                with contextlib.suppress(ValueError):
                    stop_at = float(line)


def main() -> int:
    parent, command = int(sys.argv[1]), sys.argv[2]
    options = dict(zip(sys.argv[3::2], sys.argv[4::2], strict=True))
    stop_at = float(options["--stop-at"]) if "--stop-at" in options else math.inf
    user = options.get("--user", "")
    signal.signal(signal.SIGTERM, _kill_group)
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the worker died before we asked to be told
        _kill_group()
    if stop_at <= time.monotonic():  # the worker was frozen between its check and now
        _stop("its environment lock was not renewed in time")
    # As another user, the command has none of our groups either; the kill stays ours.
    argv = ["/bin/sh", "-c", command]
    if user:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            user=user,
            group=pwd.getpwnam(user).pw_gid,
            extra_groups=[],
        )
    else:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    code = child.wait() if math.isinf(stop_at) else _watch(child, stop_at)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
