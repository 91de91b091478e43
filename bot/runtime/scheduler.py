"""The scheduler role: APScheduler 3 jobs of which, across replicas, one runs each tick."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.runtime.container import Services
from bot.services import change_flags
from bot.services.monitor_health import Monitor
from bot.services.reap_lost_deploys import reap_lost_deploys
from bot.services.version_history import refresh_version_index

log = logging.getLogger(__name__)

OUTBOX_SWEEP_SECONDS = 5.0


async def win_tick(services: Services, name: str, interval: float) -> bool:
    """True on exactly one replica for each tick (interval-long slot) of the job `name`."""
    return await services.monitor_state.claim_tick(
        name, math.floor(time.time() / interval), interval
    )


def once_per_tick(
    services: Services, name: str, interval: float, work: Callable[[], Awaitable[object]]
) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        # Tracked, so shutting down waits for a tick in flight instead of closing Redis
        # under it.
        services.track(asyncio.current_task())
        try:
            if await win_tick(services, name, interval):
                await work()
        except Exception:
            log.exception("scheduled job %s failed", name)

    return run


def build_scheduler(services: Services, monitor: Monitor | None = None) -> AsyncIOScheduler:
    """The reaper of lost deploys, and the health monitor when `monitor` is given."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    interval = services.config.worker.reap_interval_seconds
    scheduler.add_job(
        once_per_tick(services, "reap-lost-deploys", interval, lambda: reap_lost_deploys(services)),
        "interval",
        seconds=interval,
        id="reap-lost-deploys",
        max_instances=1,
        coalesce=True,
    )
    # What an earlier version recorded without indexes is indexed 20,000 entries a run, in
    # bounded steps (until then, readers scan the part not yet indexed); once done, a run is
    # three GETs. Every 10 s, not more often: APScheduler logs each run.
    scheduler.add_job(
        once_per_tick(
            services,
            "index-older-audit",
            10.0,
            lambda: services.store.index_older_audit(batch=2000, steps=10),
        ),
        "interval",
        seconds=10.0,
        id="index-older-audit",
        max_instances=1,
        coalesce=True,
    )
    # Outboxes whose sender died (with its replica) are sent by one woken here: every
    # replica may sweep, the channel's lease lets one send.
    scheduler.add_job(
        services.notifier.sender.sweep,
        "interval",
        seconds=OUTBOX_SWEEP_SECONDS,
        id="outbox-sweep",
        max_instances=1,
        coalesce=True,
    )
    # The version index follows the repository's tags (those pushed by hand, deleted ones):
    # rebuilt from the whole list off every command's path. It needs no lock beside creators:
    # a tag pushed while git's list is read is kept (RedisVersionIndex.begin_rebuild).
    every = services.settings.tag_sync_interval
    scheduler.add_job(
        once_per_tick(services, "version-index", every, lambda: refresh_version_index(services)),
        "interval",
        seconds=every,
        id="version-index",
        max_instances=1,
        coalesce=True,
    )
    # Flag ramps take their steps on the monitoring tick (they wait on its alerts).
    tick = services.config.monitoring.tick_seconds
    scheduler.add_job(
        once_per_tick(services, "flag-ramps", tick, lambda: change_flags.advance_ramps(services)),
        "interval",
        seconds=tick,
        id="flag-ramps",
        max_instances=1,
        coalesce=True,
    )
    if monitor is not None:
        tick = services.config.monitoring.tick_seconds
        # Each check has its own interval; the tick only looks for the ones that are due.
        scheduler.add_job(
            once_per_tick(services, "monitor", tick, monitor.tick),
            "interval",
            seconds=tick,
            id="monitor",
            max_instances=1,
            coalesce=True,
        )
    return scheduler
