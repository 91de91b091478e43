"""Bots and deploys as separate processes: starting a worker, telling whether a pid runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def worker_command(config: Path) -> list[str]:
    """`releasebot serve --role worker` on a free port with the config file `config`."""
    return [
        sys.executable,
        "-m",
        "bot.runtime.cli",
        "serve",
        "--role",
        "worker",
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--config",
        str(config),
    ]


def running(pid: int) -> bool:
    """Alive and not a zombie (a killed orphan may wait for a reaper that never comes)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone before, or while, it was read
        return False
    return "State:\tZ" not in status


def spawn_worker(config: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`releasebot serve --role worker` with the config file `config`; its stderr goes to
    worker.log beside it."""
    with open(config.parent / "worker.log", "ab") as log:
        return subprocess.Popen(
            worker_command(config),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
