"""The job queue: saq's Redis queue, whose worker backs off while Redis is unreachable."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from saq import Queue
from saq.job import Job
from saq.queue.redis import RedisQueue

from bot.adapters.redis.keys import Keys


class PatientQueue(RedisQueue):
    """saq's Redis queue, but a worker waiting for jobs backs off while Redis is unreachable:
    saq asks again at once after a failed dequeue, which spun a core and logged for every
    attempt."""

    MAX_BACKOFF = 2.0

    def __init__(self, *args: Any, keys: Keys, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._backoff = 0.0
        self._keys = keys

    async def enqueue(self, job_or_func: str | Job, **kwargs: Any) -> Job | None:
        # Every job by name gets a key with the prefix's hash tag (saq would make a plain uuid).
        if isinstance(job_or_func, str):
            kwargs["key"] = self._keys.job_key(kwargs.get("key") or uuid.uuid4().hex)
        return await super().enqueue(job_or_func, **kwargs)

    async def dequeue(self, timeout: float = 0.0, poll_interval: float = 0.0) -> Job | None:
        try:
            job = await super().dequeue(timeout, poll_interval)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            self._backoff = min(self.MAX_BACKOFF, self._backoff * 2 or 0.1)
            await asyncio.sleep(self._backoff)
            return None
        self._backoff = 0.0
        return job


async def workers_alive(queue: Queue) -> bool:
    """Whether a worker is running: each saq worker puts its info in the queue's stats set
    every few seconds, with an expiry score a little later (one ZCOUNT). Unknown (a queue
    without that set) counts as running: nobody is told a wrong "no worker"."""
    redis, stats = getattr(queue, "redis", None), getattr(queue, "_stats", None)
    if redis is None or not isinstance(stats, str):
        return True
    return bool(await redis.zcount(stats, int(time.time() * 1000), "+inf"))
