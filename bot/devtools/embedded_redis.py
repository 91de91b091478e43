"""An in-process Redis (fakeredis), for trying the bot without a Redis server.

Everything of one process (the web app, the saq worker, the scheduler) shares one fakeredis
server through in-process clients, as separate connections would share a real Redis. It used
to be served over TCP; fakeredis's threaded TCP server now and then left a reply unsent, and
a client waiting for it hung the process. Nothing survives a restart.
"""

from __future__ import annotations

import asyncio
import secrets

from fakeredis import FakeAsyncRedis, FakeServer
from saq.job import Job

from bot.adapters.redis.job_queue import JobQueue

WARNING = """\
************************************************************************************
*  No REDIS_URL: using an embedded, in-memory Redis. Nothing is kept across         *
*  restarts: releases, approvals, locks and the audit trail vanish when it stops.  *
*  Production needs a real Redis: set REDIS_URL=redis://host:6379/0                *
************************************************************************************"""

SCHEME = "embedded://"
_SERVERS: dict[str, FakeServer] = {}


class EmbeddedRedis:
    """One in-memory Redis; `start` names it with a URL that only this process knows."""

    def __init__(self) -> None:
        self.server = FakeServer()
        self.url = f"{SCHEME}{secrets.token_hex(6)}"

    def start(self) -> str:
        _SERVERS[self.url] = self.server
        return self.url

    def stop(self) -> None:
        _SERVERS.pop(self.url, None)


def client(url: str) -> FakeAsyncRedis:
    """A new client of the embedded Redis named by `url` (from EmbeddedRedis.start)."""
    try:
        server = _SERVERS[url]
    except KeyError:
        raise ValueError(f"no embedded Redis {url} in this process") from None
    # No socket timeout: there is no socket. With one, redis-py wraps each write in
    # asyncio.wait_for, and Python 3.11's wait_for drops a cancel that arrives as the write
    # completes, which in-process it always has. saq's worker, stopped while an upkeep task
    # was writing, then slept out that task's timer (10 s in the demo) before it could end:
    # `printf 'help\n' | releasebot shell --demo` took 11 s to exit instead of 1.
    return FakeAsyncRedis(server=server, socket_timeout=None)


class PollingQueue(JobQueue):
    """saq's Redis queue for the embedded Redis. A blocking pop would block the whole
    in-process server, so this queue never blocks in Redis: it tries a plain LMOVE and sleeps
    between tries."""

    POLL_SECONDS = 0.05

    async def version(self) -> tuple[int, ...]:
        return (7, 2, 0)  # fakeredis has no INFO; it speaks a current Redis

    async def dequeue(self, timeout: float = 0.0, poll_interval: float = 0.0) -> Job | None:
        waited = 0.0
        while True:
            job_id = await self.redis.lmove(self._queued, self._active, "LEFT", "RIGHT")
            if job_id is not None:
                return await self._get_job_by_id(job_id)
            if timeout and waited >= timeout:
                return None
            await asyncio.sleep(self.POLL_SECONDS)
            waited += self.POLL_SECONDS
