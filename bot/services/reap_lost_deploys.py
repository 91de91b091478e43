"""Reporting deploys whose worker died: the scheduler's reaper.

A running deploy (bot.services.deploy_engine) keeps a lease in Redis alive with its environment
lock. A running-deploy entry whose lease has lapsed belongs to a worker that stopped (killed,
frozen, cut off from Redis): the deploy is reported failed in its thread, by the kind that
started it, and never re-run. If that worker comes back and records what really happened, its
outcome replaces this report (bot.domain.releases.finish_deploy)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from bot.services import change_flags, deploy_release, roll_back
from bot.services.change_flags import FlagNeeds
from bot.services.deploy_release import DeployNeeds
from bot.services.roll_back import RollbackNeeds


class ReaperNeeds(DeployNeeds, RollbackNeeds, FlagNeeds, Protocol):
    """Finding lost deploys and reporting them by their kind."""


Reporter = Callable[[ReaperNeeds, str, str, str, str], Awaitable[bool]]


async def _release(
    services: ReaperNeeds, subject: str, deploy_id: str, environment: str, detail: str
) -> bool:
    ttl = services.config.worker.lock_ttl_seconds
    return await deploy_release.report_lost_deploy(
        services,
        subject,
        deploy_id,
        environment,
        detail,
        message=f"The worker deploying to *{environment}* stopped responding (no heartbeat "
        f"for {ttl:g}s). The deploy is marked *failed* and was not retried; check "
        f"*{environment}* before deploying again.",
    )


async def _rollback(
    services: ReaperNeeds, subject: str, deploy_id: str, environment: str, detail: str
) -> bool:
    return await roll_back.report_lost(services, subject, detail)


async def _flags(
    services: ReaperNeeds, subject: str, deploy_id: str, environment: str, detail: str
) -> bool:
    return await change_flags.report_lost(services, subject, detail)


REPORTERS: dict[str, Reporter] = {"release": _release, "rollback": _rollback, "flags": _flags}


def _kind_and_subject(entry: dict[str, str]) -> tuple[str, str]:
    """Entries written before they named their kind: {version} or {rollback}."""
    if "kind" in entry:
        return entry["kind"], entry["subject"]
    if "rollback" in entry:
        return "rollback", entry["rollback"]
    return "release", entry["version"]


async def reap_lost_deploys(services: ReaperNeeds) -> list[str]:
    """Report deploys whose worker stopped heartbeating as failed (never re-run them);
    returns the ids reported by this call."""
    ttl = services.config.worker.lock_ttl_seconds
    reaped: list[str] = []
    for deploy_id, entry in await services.running_deploys.lapsed():
        kind, subject = _kind_and_subject(entry)
        if await REPORTERS[kind](
            services,
            subject,
            deploy_id,
            entry["environment"],
            f"worker lost: no heartbeat for {ttl:g}s",
        ):
            reaped.append(deploy_id)
        await services.running_deploys.forget(deploy_id)
    return reaped
