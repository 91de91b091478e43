"""The shared Redis the tests use (each under a key prefix of its own), and a redis-server of
a test's own for tests that stop, pause or restart it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

REDIS_URL = os.environ.get("RELEASEBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class RedisServer:
    """A redis-server of the test's own on a free port, for tests that stop, pause or restart
    Redis (the shared one on 6379 must keep serving every other test).

    With `persist`, it keeps an append-only file (fsync on every write) in `directory`, so a
    restart comes back with the data it had, as a production Redis would."""

    def __init__(
        self,
        directory: Path,
        *,
        password: str | None = None,
        persist: bool = False,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.directory = directory
        self.password = password
        self.persist = persist
        # More arguments of redis-server (a replica's --replicaof).
        self.extra = extra
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes" if self.persist else "no",
        ]
        if self.persist:
            args += ["--appendfsync", "always"]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not come up")

    def stop(self) -> None:
        """Stop it as a crash would: SIGKILL, nothing written on the way out."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused server cannot die otherwise
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        """Hang it: connections stay open, nothing is answered (SIGSTOP)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
