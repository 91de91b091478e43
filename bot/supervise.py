"""`python -m bot.supervise PARENT_PID COMMAND`: run COMMAND so it dies with its worker.

The worker starts this in a new process group. If the worker dies, even by SIGKILL, the kernel
sends this process SIGTERM (PR_SET_PDEATHSIG) and it kills its whole group: the shell, the
deploy and everything they started. Without it, a killed worker's deploy would run on
unsupervised after the deploy has been reported failed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from types import FrameType

PR_SET_PDEATHSIG = 1


def _kill_group(signum: int = 0, frame: FrameType | None = None) -> None:
    os.killpg(0, signal.SIGKILL)


def main() -> int:
    parent, command = int(sys.argv[1]), sys.argv[2]
    signal.signal(signal.SIGTERM, _kill_group)
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the worker died before we asked to be told
        _kill_group()
    child = subprocess.Popen(["/bin/sh", "-c", command])
    code = child.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
