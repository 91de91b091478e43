"""Which Redis commands a piece of code runs, seen by Redis itself (MONITOR on a connection of
its own), counted for one test's key prefix so that other clients do not count."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from redis.asyncio import Redis

from tests.helpers.redis_server import REDIS_URL


@dataclass
class Seen:
    commands: list[str] = field(default_factory=list)  # each as MONITOR printed it

    @property
    def count(self) -> int:
        return len(self.commands)

    def named(self, name: str) -> list[str]:
        return [c for c in self.commands if c.split(" ", 1)[0].upper() == name.upper()]


@contextlib.asynccontextmanager
async def commands_on(prefix: str, url: str = REDIS_URL) -> AsyncIterator[Seen]:
    """Collect the commands naming a key under `prefix` while the block runs. A marker
    command at the end makes sure every command before it was seen."""
    seen = Seen()
    client = Redis.from_url(url)
    marker = f"{prefix}monitor-end"
    started = asyncio.Event()
    ended = asyncio.Event()

    async def listen() -> None:
        async with client.monitor() as monitor:
            started.set()
            async for event in monitor.listen():
                command = str(event.get("command", ""))
                if marker in command:
                    ended.set()
                    return
                if prefix in command:
                    seen.commands.append(command)

    task = asyncio.create_task(listen())
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.sleep(0.05)  # MONITOR is answered before it is in force
    other = Redis.from_url(url)
    try:
        yield seen
    finally:
        await other.exists(marker)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), 5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await other.aclose()
        await client.aclose()
