"""An in-process Redis (fakeredis) on a local port, for trying the bot without a Redis server.

Served over TCP rather than used as an in-memory client, so the web app, the saq worker and the
scheduler share it exactly as they would share a real Redis. Nothing survives a restart.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from fakeredis import TcpFakeServer
from fakeredis._clients._tcp_server import TCPFakeRequestHandler
from saq.job import Job
from saq.queue.redis import RedisQueue

WARNING = """\
************************************************************************************
*  No REDIS_URL: using an embedded, in-memory Redis. Nothing is kept across         *
*  restarts: releases, approvals, locks and the audit trail vanish when it stops.  *
*  Production needs a real Redis: set REDIS_URL=redis://host:6379/0                *
************************************************************************************"""


class _KeepConnectionHandler(TCPFakeRequestHandler):
    """fakeredis closes a connection after any command error (e.g. NOSCRIPT, which redis-py
    answers by loading the script and retrying). Real Redis keeps it open; so do we."""

    def setup(self) -> None:
        super().setup()
        self.errored = False
        dump = self.writer.dump

        def dump_and_note(value: Any) -> None:
            self.errored = self.errored or isinstance(value, Exception)
            dump(value)

        self.writer.dump = dump_and_note  # type: ignore[method-assign]

    def handle(self) -> None:
        while True:
            self.errored = False
            super().handle()
            # Back here after EOF (done) or after a reported error (carry on serving).
            if not self.errored or self.server._shutdown_event.is_set():
                return


class EmbeddedRedis:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = TcpFakeServer((host, port), server_type="redis")
        self.server.RequestHandlerClass = _KeepConnectionHandler
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="embedded-redis",
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"redis://{host}:{port}/0"

    def start(self) -> str:
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PollingQueue(RedisQueue):
    """saq's Redis queue for the embedded Redis. fakeredis's blocking pops have changed between
    releases (returning at once in some, waiting for a wake-up in others), so this queue never
    blocks in Redis: it tries a plain LMOVE and sleeps between tries."""

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
