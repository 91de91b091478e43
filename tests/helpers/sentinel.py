"""A Redis that can fail over, of the test's own: a primary, a replica and three sentinels
(`redis-server --sentinel`) on free ports in a temporary folder, with timings small enough
that a failover takes a second or two."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.helpers.redis_server import RedisServer

MASTER = "releasebot-test"
DOWN_AFTER_MS = 400  # a primary silent this long is down (to one sentinel)
FAILOVER_TIMEOUT_MS = 2000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing came up on port {port}")


class SentinelGroup:
    """Two data servers (a primary and its replica) and three sentinels watching them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.primary = RedisServer(directory / "a")
        self.replica = RedisServer(
            directory / "b", extra=("--replicaof", "127.0.0.1", str(self.primary.port))
        )
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def env(self) -> dict[str, str]:
        return {
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports),
            "REDIS_SENTINEL_MASTER": MASTER,
        }

    def servers(self) -> dict[int, RedisServer]:
        return {s.port: s for s in (self.primary, self.replica)}

    async def start(self) -> None:
        self.primary.start()
        self.replica.start()
        for n, port in enumerate(self.sentinel_ports):
            folder = self.directory / f"sentinel-{n}"
            folder.mkdir(parents=True)
            conf = folder / "sentinel.conf"  # a sentinel rewrites its file: one each
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    ["redis-server", str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.sentinel_ports:
            wait_for_port(port)
        # Ready once the replica is in sync and every sentinel knows the replica and the other
        # sentinels: only then can they agree on a failover.
        await self.wait_until(self._ready, "the sentinels never saw the whole group")

    async def _ready(self) -> bool:
        if (await self.replication(self.replica.port)).get("master_link_status") != "up":
            return False
        for port in self.sentinel_ports:
            async with Redis(port=port, decode_responses=True) as sentinel:
                state = (await sentinel.sentinel_masters()).get(MASTER)
                if not state or state["num-slaves"] < 1 or state["num-other-sentinels"] < 2:
                    return False
        return True

    async def replication(self, port: int) -> dict[str, str]:
        try:
            async with Redis(port=port, decode_responses=True, socket_timeout=1) as server:
                info: dict[str, str] = await server.info("replication")
                return info
        except (OSError, RedisError):  # a killed server
            return {}

    async def primary_port(self) -> int | None:
        """The primary's port, once every sentinel says the same (None before)."""
        ports = set()
        for port in self.sentinel_ports:
            async with Redis(port=port, decode_responses=True) as sentinel:
                _host, primary = await sentinel.sentinel_get_master_addr_by_name(MASTER)
                ports.add(int(primary))
        return ports.pop() if len(ports) == 1 else None

    async def in_sync(self) -> bool:
        """The replica has every write the primary has (replication is asynchronous)."""
        port = await self.primary_port()
        if port is None:
            return False
        primary = await self.replication(port)
        replica = await self.replication(self.replica.port)
        return (
            replica.get("master_link_status") == "up"
            and primary.get("master_repl_offset") == replica.get("slave_repl_offset")
            and bool(primary.get("master_repl_offset"))
        )

    def kill_primary(self) -> RedisServer:
        """The primary dies as in a crash (SIGKILL); the sentinels then promote the replica."""
        dead = self.primary
        dead.stop()
        return dead

    async def failover(self) -> None:
        """A planned failover (SENTINEL FAILOVER): the old primary becomes a replica."""
        async with Redis(port=self.sentinel_ports[0]) as sentinel:
            await sentinel.sentinel_failover(MASTER)

    async def wait_for_new_primary(self, old: int, timeout: float = 20) -> int:
        new: list[int] = []

        async def moved() -> bool:
            port = await self.primary_port()
            if port is None or port == old:
                return False
            new.append(port)
            return (await self.replication(port)).get("role") == "master"

        await self.wait_until(moved, "no new primary was promoted", timeout)
        return new[-1]

    @staticmethod
    async def wait_until(
        check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if await check():
                    return
            except (OSError, RedisError):
                pass  # a sentinel between two opinions, a server on its way down
            await asyncio.sleep(0.05)
        raise AssertionError(what)

    def stop(self) -> None:
        for process in self.sentinels:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)
        self.primary.stop()
        self.replica.stop()
