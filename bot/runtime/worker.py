"""The deploy worker role: a saq worker on the bot's Redis queue."""

from __future__ import annotations

from typing import cast

from saq import Worker
from saq.types import PartialTimersDict

from bot.runtime.container import Services
from bot.runtime.jobs import FUNCTIONS, JobContext


def build_worker(services: Services) -> Worker[JobContext]:
    async def startup(ctx: JobContext) -> None:
        ctx["services"] = services

    ttl = services.config.worker.lock_ttl_seconds
    worker: Worker[JobContext] = Worker(
        services.queue,
        functions=FUNCTIONS,
        concurrency=services.config.worker.concurrency,
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
