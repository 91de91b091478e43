"""The deploy worker role: a saq worker on the bot's Redis queue."""

from __future__ import annotations

from typing import cast

from saq import Worker
from saq.types import PartialTimersDict

from bot.adapters.redis.connect import REDIS_OPTIONS
from bot.runtime.container import Services
from bot.runtime.jobs import FUNCTIONS, JobContext


def queue_wait_seconds(services: Services) -> float:
    """How long one blocking pop for a job may wait: well inside the socket timeout of the
    queue's Redis client (see build_worker)."""
    pool = getattr(getattr(services.queue, "redis", None), "connection_pool", None)
    kwargs: dict[str, object] = getattr(pool, "connection_kwargs", {})
    timeout = kwargs.get("socket_timeout")
    if not isinstance(timeout, int | float) or timeout <= 0:
        timeout = REDIS_OPTIONS["socket_timeout"]
    return float(timeout) / 2


def build_worker(services: Services) -> Worker[JobContext]:
    async def startup(ctx: JobContext) -> None:
        ctx["services"] = services

    ttl = services.config.worker.lock_ttl_seconds
    worker: Worker[JobContext] = Worker(
        services.queue,
        functions=FUNCTIONS,
        concurrency=services.config.worker.concurrency,
        # How long one blocking pop (BLMOVE) waits for a job before it asks again. saq's
        # default, 0, waits for ever, but the Redis client gives up on a reply after its socket
        # timeout: the pop then failed as if Redis were down, and the queue backed off (up to
        # 2 s) before asking again, so a rollback clicked after a quiet minute waited that
        # long to be picked up. Well inside the socket timeout, a pop ends with "no job" and
        # the next one starts at once: a job is picked up as soon as it is queued.
        dequeue_timeout=queue_wait_seconds(services),
        startup=startup,
        # Sweep for jobs whose worker died about as often as a lock can expire.
        # (saq types its "partial" timers as all required, hence the cast)
        timers=cast(PartialTimersDict, {"sweep": max(1, int(ttl))}),
        # On SIGTERM, give running deploys a moment; the rest are reported failed.
        shutdown_grace_period_s=int(services.config.worker.shutdown_grace_seconds),
    )
    # The process's own signal handling stops every role together, not just the worker.
    worker.SIGNALS = []
    return worker
