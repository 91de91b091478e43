"""The worker picks a job up as soon as it is queued, however long it was idle: its waiting
pops end by themselves well inside the Redis socket timeout. The real Redis and worker."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis
from saq import Worker

from bot.adapters.redis.connect import REDIS_OPTIONS
from bot.adapters.redis.job_queue import PatientQueue
from bot.runtime.container import Services
from bot.runtime.worker import build_worker, queue_wait_seconds
from bot.services import roll_back as rollback_jobs
from tests.helpers.bot import make_settings
from tests.helpers.config import make_config
from tests.helpers.redis_server import REDIS_URL


def test_a_pop_for_jobs_ends_well_inside_the_redis_socket_timeout(
    git_remote, tmp_path, prefix, slack
):
    services = Services.create(
        make_settings(prefix, slack, tmp_path / "state"), make_config(git_remote, tmp_path)
    )
    worker = build_worker(services)
    assert 0 < worker.dequeue_timeout <= REDIS_OPTIONS["socket_timeout"] / 2
    assert queue_wait_seconds(services) == worker.dequeue_timeout


async def test_an_idle_worker_picks_a_job_up_at_once(git_remote, tmp_path, prefix, slack, redis):
    """Idle for several socket timeouts (shortened here to 0.4 s), the worker never took
    its wait for a Redis outage, and a job queued then is picked up at once."""
    services = Services.create(
        make_settings(prefix, slack, tmp_path / "state"), make_config(git_remote, tmp_path)
    )
    await services.queue.disconnect()
    quick = Redis.from_url(REDIS_URL, **{**REDIS_OPTIONS, "socket_timeout": 0.4})
    queue = PatientQueue(quick, name=services.store.keys.queue_name, keys=services.store.keys)
    services.queue = queue
    worker: Worker = build_worker(services)
    assert worker.dequeue_timeout == pytest.approx(0.2)
    task = asyncio.create_task(worker.start())
    try:
        await asyncio.sleep(1.5)
        assert queue._backoff == 0.0  # no pop ever failed as if Redis were down
        queued = time.monotonic()
        # A rollback job for a request that does not exist: it ends at once, doing nothing.
        job = await queue.enqueue(
            rollback_jobs.ROLLBACK, request_id="none", actor={"user_id": "U0BOB"}, key="pickup-test"
        )
        assert job is not None
        while (await queue.job(job.key)).status.value not in ("active", "complete", "failed"):
            assert time.monotonic() - queued < 5, "the job was never picked up"
            await asyncio.sleep(0.005)
        assert time.monotonic() - queued < 0.5
        assert queue._backoff == 0.0
    finally:
        await worker.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await services.close()
