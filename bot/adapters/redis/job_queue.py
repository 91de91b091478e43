"""The job queue: saq's Redis queue, with a sweep that leaves alone a job a worker is taking,
and a worker that backs off while Redis is unreachable."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, NamedTuple

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from saq import Queue
from saq.job import Job, Status
from saq.queue.redis import RedisQueue

from bot.adapters.redis.keys import Keys

log = logging.getLogger(__name__)

# Under the sweep's own lock (taken for `lock` seconds, so that one worker of many sweeps
# each time), every job id of the active list with the job as stored, read in one step: a
# job that finishes meanwhile is read either still active or gone, never half way.
_READ_ACTIVE = """
if not redis.call('SET', KEYS[1], 1, 'NX', 'EX', ARGV[1]) then
    return false
end
local found = {}
for i, id in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    found[i] = {id, redis.call('GET', id)}
end
return found
"""


class _Attempt(NamedTuple):
    """One attempt at one job: a job queued again under the same key (a new `queued`), or
    retried (new `attempts` and `touched`), is a new attempt."""

    job_id: bytes
    queued: int
    attempts: int
    touched: int


class JobQueue(RedisQueue):
    """saq's Redis queue, whose sweep does not take a job from a worker that is taking it.

    A worker takes a job in two steps: a blocking pop moves its id from the queued list to
    the active one, then the worker stores the job as active. saq's sweep counts any job in
    the active list not stored as active as lost (saq issues #124 and #277): a sweep that ran
    between the two steps aborted a job just taken and queued it again, so a deploy was
    cancelled before its command started, or ran twice. Twice in CI, a rollback's and a
    candidate's deploy "never started" within 30 s.

    Here a job still stored as queued in the active list is swept only when an earlier sweep
    of this process saw it so, the same attempt, at least CLAIM_GRACE_SECONDS before: the
    two steps take milliseconds, so such a job is one whose worker died between them, and it
    is then swept as saq would (aborted, and queued again if it has retries left). Every
    other job is swept as saq sweeps it."""

    CLAIM_GRACE_SECONDS = 5.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # One attempt at a job seen stored as queued in the active list -> when this process
        # first saw it so (monotonic seconds).
        self._unclaimed_since: dict[_Attempt, float] = {}

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        found = await self.redis.eval(_READ_ACTIVE, 2, self._sweep, self._active, max(1, lock))
        if found is None:
            return []  # another worker sweeps this time
        now = time.monotonic()
        seen, still_unclaimed = self._unclaimed_since, {}
        swept: list[str] = []
        try:
            for entry in found:
                job_id: bytes = entry[0]
                stored = entry[1] if len(entry) > 1 else None
                job = self.deserialize(stored) if stored else None
                if job is None:
                    # Its record is gone (expired or deleted): nothing to run, only the id to
                    # drop.
                    async with self.redis.pipeline(transaction=True) as pipe:
                        pipe.lrem(self._active, 0, job_id.decode())
                        pipe.zrem(self._incomplete, job_id)
                        await pipe.execute()
                    swept.append(job_id.decode())
                    log.info("dropped the id of a missing job from the active list: %s", job_id)
                    continue
                if job.status == Status.QUEUED:
                    attempt = _Attempt(job_id, job.queued, job.attempts, job.touched)
                    first_seen = seen.get(attempt, now)
                    if now - first_seen < self.CLAIM_GRACE_SECONDS:
                        still_unclaimed[attempt] = first_seen  # a worker is taking it
                        continue
                elif job.status == Status.ACTIVE and not job.stuck:
                    continue
                swept.append(job_id.decode())
                await self._sweep_job(job, abort)
        except BaseException:
            # Those not reached this time keep when they were first seen.
            self._unclaimed_since = {**seen, **still_unclaimed}
            raise
        self._unclaimed_since = still_unclaimed
        return swept

    async def _sweep_job(self, job: Job, abort: float) -> None:
        """A job whose worker is gone: aborted (a worker still running it stops), then queued
        again if it has retries left, else finished as aborted."""
        log.info("sweeping job %s (%s)", job.key, job.status.value)
        await self.abort(job, error=self.swept_error_message)
        try:
            await job.refresh(abort)
        except TimeoutError:
            log.info("job %s did not end when aborted", job.key)
        if job.retryable:
            await self.retry(job, error=self.swept_error_message)
        else:
            await self.finish(job, Status.ABORTED, error=self.swept_error_message)


class PatientQueue(JobQueue):
    """The queue on a Redis server, whose worker waiting for jobs backs off while Redis is
    unreachable: saq asks again at once after a failed dequeue, which spun a core and logged
    for every attempt."""

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
