"""The scheduler role: APScheduler 3 jobs of which, across replicas, one runs each tick."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.runtime.container import Services
from bot.services import change_flags, ci_gates, create_candidate, freeze_environments
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


def on_every_replica(
    services: Services, name: str, work: Callable[[], Awaitable[object]]
) -> Callable[[], Awaitable[None]]:
    """`work`, on every replica, its failures logged."""

    async def run() -> None:
        # Tracked, so shutting down waits for a run in flight instead of closing Redis
        # under it.
        services.track(asyncio.current_task())
        try:
            await work()
        except Exception:
            log.exception("scheduled job %s failed", name)

    return run


def once_per_tick(
    services: Services, name: str, interval: float, work: Callable[[], Awaitable[object]]
) -> Callable[[], Awaitable[None]]:
    """`work`, on the one replica that wins the tick."""

    async def won() -> None:
        if await win_tick(services, name, interval):
            await work()

    return on_every_replica(services, name, won)


def every(
    scheduler: AsyncIOScheduler, name: str, seconds: float, run: Callable[[], Awaitable[object]]
) -> None:
    """Run `run` every `seconds`, never two at once, a late run not caught up on."""
    scheduler.add_job(run, "interval", seconds=seconds, id=name, max_instances=1, coalesce=True)


def build_scheduler(services: Services, monitors: Sequence[Monitor] = ()) -> AsyncIOScheduler:
    """A service's scheduled jobs (the reaper of lost deploys, …), and the health monitors
    given: with several services, one tick runs every service's checks (each monitor is a
    service's, with its own state), so their probes share one fan-out."""
    scheduler = AsyncIOScheduler(timezone="UTC")

    def once_every(name: str, seconds: float, work: Callable[[], Awaitable[object]]) -> None:
        """`work` every `seconds`, done by one replica of all (the one that wins the tick)."""
        every(scheduler, name, seconds, once_per_tick(services, name, seconds, work))

    once_every(
        "reap-lost-deploys",
        services.config.worker.reap_interval_seconds,
        lambda: reap_lost_deploys(services),
    )
    # What an earlier version recorded without indexes is indexed 20,000 entries a run, in
    # bounded steps (until then, readers scan the part not yet indexed); once done, a run is
    # three GETs. Every 10 s, not more often: APScheduler logs each run.
    once_every(
        "index-older-audit", 10.0, lambda: services.store.index_older_audit(batch=2000, steps=10)
    )
    # Outboxes whose sender died (with its replica) are sent by one woken here: every
    # replica may sweep, the channel's lease lets one send.
    every(scheduler, "outbox-sweep", OUTBOX_SWEEP_SECONDS, services.notifier.sender.sweep)
    # The version index follows the repository's tags (those pushed by hand, deleted ones):
    # rebuilt from the whole list off every command's path. It needs no lock beside creators:
    # a tag pushed while git's list is read is kept (RedisVersionIndex.begin_rebuild).
    once_every(
        "version-index",
        services.settings.tag_sync_interval,
        lambda: refresh_version_index(services),
    )
    # CI gates left waiting by their deploy are looked at again here (no worker waits).
    once_every("ci-gates", ci_gates.CI_RECHECK_SECONDS, lambda: ci_gates.recheck_waiting(services))
    # A release message Slack refused when its candidate was made is posted late, once.
    once_every("release-messages", 60.0, lambda: create_candidate.post_missing_messages(services))
    # Flag ramps take their steps on the monitoring tick (they wait on its alerts).
    tick = services.config.monitoring.tick_seconds
    once_every("flag-ramps", tick, lambda: change_flags.advance_ramps(services))
    # Freezes that ended by themselves are told on the same tick: soon after they end, and
    # once (a replica that loses the race for one tells nothing of it).
    once_every("freeze-ends", tick, lambda: freeze_environments.announce_ended(services))
    if monitors:
        # Every replica ticks, each on its share of the checks (Monitor); each check has its
        # own interval, and the tick only looks for the ones that are due.
        async def tick_all() -> None:
            await asyncio.gather(*(monitor.tick() for monitor in monitors))

        every_tick = min(m.services.config.monitoring.tick_seconds for m in monitors)
        every(scheduler, "monitor", every_tick, on_every_replica(services, "monitor", tick_all))
    return scheduler
