"""The worker's job entry points: saq calls these with plain keyword arguments (so any web
replica can enqueue a job and any worker run it); each turns them back into typed requests and
hands them to its use case with the container the worker started with."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

from saq.job import Job
from saq.types import Context

from bot.adapters import metrics
from bot.domain.actors import BOT, Actor
from bot.domain.flag_requests import FlagRequest
from bot.runtime.container import Services
from bot.runtime.logs import log_context
from bot.services import (
    approve_freezes,
    change_flags,
    create_candidate,
    deploy_release,
    promote_release,
    roll_back,
)
from bot.services.create_candidate import RcRequest
from bot.services.promote_release import FinalRequest


class JobContext(Context, total=False):
    """saq's context of a running job, plus what our worker's startup puts in it."""

    services: Services


def _services(ctx: JobContext) -> Services:
    return ctx["services"]


def _job(ctx: JobContext) -> Job | None:
    return ctx.get("job")


@contextlib.contextmanager
def _about(ctx: JobContext, kind: str, **fields: str) -> Iterator[None]:
    """Every line the job logs names it (and its release and environment, when it has them);
    the job is counted by kind and outcome, with how long it waited and ran."""
    job = _job(ctx)
    service = _services(ctx).config.service
    if job is not None and job.queued:
        waited = max(0.0, time.time() - job.queued / 1000)
        metrics.JOB_WAIT_SECONDS.labels(service, kind).observe(waited)
    took = metrics.Timer()
    outcome = "failed"
    try:
        with log_context(job=job.key if job is not None else "", kind=kind, **fields):
            yield
        outcome = "done"
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    finally:
        metrics.JOBS.labels(service, kind, outcome).inc()
        metrics.JOB_SECONDS.labels(service, kind).observe(took.seconds)


async def create_rc(ctx: JobContext, *, request: dict[str, Any]) -> None:
    with _about(ctx, "create-rc"):
        await create_candidate.create_release_candidate(_services(ctx), RcRequest(**request))


async def deploy(
    ctx: JobContext,
    *,
    version: str,
    environment: str,
    deploy_id: str,
    actor: dict[str, str] | None = None,
    gates_only: bool = False,  # a Re-run of its gates; missing in jobs queued before Re-run
) -> None:
    with _about(ctx, "deploy", release=version, environment=environment):
        await deploy_release.run_deploy(
            _services(ctx),
            version,
            environment,
            deploy_id,
            Actor(**actor) if actor else BOT,
            job=_job(ctx),
            gates_only=gates_only,
        )


async def promote(ctx: JobContext, *, request: dict[str, Any]) -> None:
    with _about(ctx, "promote", release=str(request.get("version", ""))):
        await promote_release.promote_candidate(_services(ctx), FinalRequest(**request))


async def rollback(ctx: JobContext, *, request_id: str, actor: dict[str, str]) -> None:
    with _about(ctx, "rollback", request=request_id):
        await roll_back.run_rollback(_services(ctx), request_id, Actor(**actor), _job(ctx))


async def flag_request(ctx: JobContext, *, request: dict[str, Any]) -> None:
    with _about(ctx, "flag-request"):
        await change_flags.start_request(_services(ctx), FlagRequest.from_dict(request))


async def flag_apply(ctx: JobContext, *, request_id: str) -> None:
    with _about(ctx, "flag-apply", request=request_id):
        await change_flags.apply_request(_services(ctx), request_id, _job(ctx))


async def freeze_request_expire(ctx: JobContext, *, request_id: str) -> None:
    with _about(ctx, "freeze-request-expire", request=request_id):
        await approve_freezes.expire(_services(ctx), request_id)


# Job name (what enqueue names) -> entry point. The names are stored in queued jobs: a job
# queued by the previous release of the bot still finds its function after an upgrade.
FUNCTIONS: list[tuple[str, Any]] = [
    (create_candidate.CREATE_RC, create_rc),
    (deploy_release.DEPLOY, deploy),
    (promote_release.PROMOTE, promote),
    (roll_back.ROLLBACK, rollback),
    (change_flags.REQUEST, flag_request),
    (change_flags.APPLY, flag_apply),
    (approve_freezes.EXPIRE, freeze_request_expire),
]
