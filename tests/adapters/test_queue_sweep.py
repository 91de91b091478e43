"""The queue's sweep (bot.adapters.redis.job_queue) on the real Redis: it never takes a job
from a worker that is taking it, and still takes one whose worker died half way through.

A worker takes a job in two steps: a pop moves its id to the active list, then the job is
stored as active. saq's own sweep, run between them, aborted the job and queued it again."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from saq.job import Status
from saq.queue.redis import RedisQueue
from saq.utils import now

from bot.adapters.redis.job_queue import PatientQueue
from bot.adapters.redis.keys import Keys


def queue_of(redis: Redis, prefix: str) -> PatientQueue:
    keys = Keys(prefix)
    return PatientQueue(redis, name=keys.queue_name, keys=keys)


async def active_ids(queue: RedisQueue) -> list[bytes]:
    return list(await queue.redis.lrange(queue._active, 0, -1))


async def next_sweep(queue: RedisQueue) -> None:
    """The time between two sweeps, which the sweep's lock measures: over at once."""
    await queue.redis.delete(queue._sweep)


async def test_a_sweep_between_a_workers_two_steps_leaves_the_job_to_it(redis, prefix):
    queue = queue_of(redis, prefix)
    job = await queue.enqueue("deploy", key="taken", retries=1)
    assert job is not None
    taken = await queue.dequeue(timeout=1)  # the worker's first step
    assert taken is not None and taken.key == job.key

    assert await queue.sweep(lock=1) == []

    stored = await queue.job(job.key)
    assert stored is not None and stored.status == Status.QUEUED and not stored.error
    assert await active_ids(queue) == [job.id.encode()]
    assert not await redis.exists(job.abort_id)  # the worker is not told to stop
    assert await redis.llen(queue._queued) == 0  # nor is the job queued a second time

    # The worker's second step: the job then runs and ends as it would have.
    await taken.update(status=Status.ACTIVE)
    await taken.finish(Status.COMPLETE)
    finished = await queue.job(job.key)
    assert finished is not None and finished.status == Status.COMPLETE
    assert await active_ids(queue) == []


async def test_saqs_own_sweep_took_such_a_job(redis, prefix):
    """What the queue above mends: the same moment, with saq's queue (saq #124, #277). When
    saq mends it, this test fails: then JobQueue.sweep can go."""
    name = Keys(prefix).queue_name
    queue = RedisQueue(redis, name=name)
    job = await queue.enqueue("deploy", key="taken", retries=1)
    assert job is not None
    await queue.dequeue(timeout=1)

    assert await queue.sweep(lock=1, abort=0.05) == [job.id]
    stored = await queue.job(job.key)
    assert stored is not None and stored.error == queue.swept_error_message


async def test_a_job_whose_worker_died_half_way_is_swept_and_queued_again(redis, prefix):
    queue = queue_of(redis, prefix)
    queue.CLAIM_GRACE_SECONDS = 0.2  # 5 s in the bot
    job = await queue.enqueue("deploy", key="orphan", retries=2)
    assert job is not None
    await queue.dequeue(timeout=1)  # ...and the worker is gone before its second step

    assert await queue.sweep(lock=1) == []  # seen once: it may be a worker taking it
    await next_sweep(queue)
    assert await queue.sweep(lock=1) == []  # still inside its grace
    assert await queue.sweep(lock=1) == []  # another worker's turn: the lock is taken
    await asyncio.sleep(0.2)
    await next_sweep(queue)
    assert await queue.sweep(lock=1, abort=0.05) == [job.id]

    stored = await queue.job(job.key)
    assert stored is not None and stored.status == Status.QUEUED
    assert stored.error == queue.swept_error_message
    assert await active_ids(queue) == []
    assert await redis.lrange(queue._queued, 0, -1) == [job.id.encode()]  # runs again


async def test_a_job_taken_again_after_a_retry_is_a_new_attempt(redis, prefix):
    """A job seen half taken at one sweep, then run, retried and half taken again at the
    next, is not counted as stuck since the first: each attempt has its own grace."""
    queue = queue_of(redis, prefix)
    queue.CLAIM_GRACE_SECONDS = 0.3
    job = await queue.enqueue("deploy", key="again", retries=3)
    assert job is not None
    taken = await queue.dequeue(timeout=1)
    assert taken is not None
    assert await queue.sweep(lock=1) == []
    await asyncio.sleep(0.4)
    await taken.update(status=Status.ACTIVE, attempts=1)
    await taken.retry("the deploy asked to be run again")
    await queue.dequeue(timeout=1)
    await next_sweep(queue)
    assert await queue.sweep(lock=1) == []


async def test_a_key_queued_again_is_a_new_attempt(redis, prefix):
    """A job that ended, queued again under its key (a promotion asked again), is half taken
    at a sweep long after its first run was seen so: it is not swept."""
    queue = queue_of(redis, prefix)
    queue.CLAIM_GRACE_SECONDS = 0.3
    first = await queue.enqueue("promote", key="promote-1.2.0", retries=1)
    assert first is not None
    taken = await queue.dequeue(timeout=1)
    assert taken is not None
    assert await queue.sweep(lock=1) == []
    await taken.update(status=Status.ACTIVE, attempts=1)
    await taken.finish(Status.COMPLETE)
    await asyncio.sleep(0.4)
    again = await queue.enqueue("promote", key="promote-1.2.0", retries=1)
    assert again is not None and again.queued != first.queued
    await queue.dequeue(timeout=1)
    await next_sweep(queue)
    assert await queue.sweep(lock=1) == []


async def test_a_running_job_is_left_to_its_worker(redis, prefix):
    queue = queue_of(redis, prefix)
    job = await queue.enqueue("deploy", key="running", retries=1, heartbeat=60)
    assert job is not None
    taken = await queue.dequeue(timeout=1)
    assert taken is not None
    await taken.update(status=Status.ACTIVE, attempts=1, started=now())  # as saq's worker does
    assert await queue.sweep(lock=1) == []
    stored = await queue.job(job.key)
    assert stored is not None and stored.status == Status.ACTIVE


async def test_a_missing_job_and_a_stuck_one_are_swept_as_before(redis, prefix):
    queue = queue_of(redis, prefix)
    gone = await queue.enqueue("deploy", key="gone", retries=1)
    stuck = await queue.enqueue("deploy", key="stuck", retries=1, heartbeat=1)
    assert gone is not None and stuck is not None
    first, second = await queue.dequeue(timeout=1), await queue.dequeue(timeout=1)
    assert first is not None and second is not None
    await redis.delete(gone.id)
    # Its worker ran it (its one attempt) and stopped beating.
    await second.update(status=Status.ACTIVE, attempts=1, touched=1)

    swept = await queue.sweep(lock=1, abort=0.05)

    assert sorted(swept) == sorted([gone.id, stuck.id])
    assert await active_ids(queue) == []
    stored = await queue.job(stuck.key)
    assert stored is not None and stored.status == Status.ABORTED
