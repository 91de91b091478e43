"""Gates passed by the team's CI (`check = "github"`): the deploy job looks once; a gate still
waiting is left running and the scheduler looks again every CI_RECHECK_SECONDS, so waiting for
CI holds no worker. While it waits, its checklist line says for what. The verdict's rules are
in bot.domain.ci_checks."""

from __future__ import annotations

import logging
from functools import partial
from typing import Protocol

from bot.blocks import release as messages
from bot.domain import releases
from bot.domain.actors import BOT
from bot.domain.ci_checks import CiVerdict, judge
from bot.domain.config import GateConfig
from bot.domain.releases import Gate, Release, TransitionError
from bot.services.ports import (
    CiUnavailable,
    HasChat,
    HasCi,
    HasClock,
    HasConfig,
    HasEnvironmentOutcomes,
    HasStore,
)

log = logging.getLogger(__name__)

CI_RECHECK_SECONDS = 10.0  # how often the scheduler looks at waiting CI gates


class CiNeeds(HasConfig, HasClock, HasStore, HasChat, HasCi, HasEnvironmentOutcomes, Protocol):
    """The CI's checks, the release records, and the thread to tell."""


async def look(services: CiNeeds, release: Release, gate: Gate, cfg: GateConfig) -> CiVerdict:
    """The gate's verdict now; a gate that waits keeps what it waits for (note_waiting), so
    the deploy job's first look and every recheck show it. Without GitHub access, or while
    GitHub does not answer, it waits, and fails at its timeout with that reason: never
    passes."""
    verdict = await _verdict(services, release, gate, cfg)
    if verdict.outcome == "waiting":
        await note_waiting(services, release, gate, verdict.detail)
    return verdict


async def _verdict(services: CiNeeds, release: Release, gate: Gate, cfg: GateConfig) -> CiVerdict:
    now = services.clock()
    waited = now - (gate.started_at or now)
    if services.ci is None:
        return CiVerdict(
            "failed",
            "the bot has no GitHub access: set GITHUB_TOKEN (or a GitHub App) to check CI",
        )
    try:
        checks = await services.ci.checks(release.sha)
    except CiUnavailable as exc:
        if waited >= cfg.timeout_seconds:
            return CiVerdict("failed", f"after {cfg.timeout_seconds:.0f}s, {exc}"[:500])
        return CiVerdict("waiting", str(exc)[:500])
    return judge(checks, cfg.contexts, cfg.allow_failures, waited, cfg.timeout_seconds)


async def note_waiting(services: CiNeeds, release: Release, gate: Gate, detail: str) -> bool:
    """What a waiting gate waits for, kept on it with its audit entry and shown on the release
    message; only when it changed (nothing written, nothing redrawn otherwise). False when it
    had not changed, or the gate is no longer running (decided or re-run meanwhile)."""
    if gate.detail == detail:
        return False
    try:
        await services.store.update_release(
            release.version,
            partial(releases.note_waiting, gate_id=gate.id, detail=detail),
            BOT,
            "gate.wait",
            environment=gate.stage,
            outcome="waiting",
            reason=f"{gate.id}: {detail}"[:500],
        )
    except TransitionError:  # NoChange too: another replica's look wrote it first
        return False
    services.chat.refresh(release.version)
    return True


async def finish(
    services: CiNeeds, release: Release, gate: Gate, verdict: CiVerdict, environment: str
) -> bool:
    """Record a decided CI gate with its audit entry, and tell the thread; False when someone
    (another replica's look, a re-run) finished it first."""
    store = services.store
    try:
        release, done = await store.update_release(
            release.version,
            partial(
                releases.finish_gate,
                gate_id=gate.id,
                now=store.clock(),
                ok=verdict.outcome == "passed",
                detail=verdict.detail,
            ),
            BOT,
            "gate.finish",
            environment=environment,
            outcome=verdict.outcome,
            reason=f"{gate.id}: {verdict.detail}"[:500],
        )
    except TransitionError:
        return False
    if verdict.outcome == "failed":
        # As any gate that failed there: a rollback never goes back to it by itself.
        ran, ran_tag = release.tag_for(environment, services.config.last_environment.name)
        await services.environment_outcomes.mark_failed_in(
            environment, ran, ran_tag, f"gate {gate.id} failed"
        )
    services.chat.refresh(release.version)
    await services.chat.thread(
        release.version,
        messages.ci_gate_outcome(done, verdict.outcome == "passed", verdict.detail),
        f"{done.name} {done.status}",
    )
    return True


async def recheck_waiting(services: CiNeeds) -> int:
    """The scheduler's look at every CI gate left waiting; returns how many it decided."""
    ci_gates = {g.id: g for g in services.config.gates if g.check == "github"}
    if not ci_gates:
        return 0
    decided = 0
    for release in await services.store.releases_in_flight():
        for gate in release.gates:
            cfg = ci_gates.get(gate.id)
            if cfg is None or gate.status != "running":
                continue
            verdict = await look(services, release, gate, cfg)
            if verdict.outcome != "waiting" and await finish(
                services, release, gate, verdict, gate.stage
            ):
                decided += 1
    return decided


class StopNeeds(HasConfig, HasStore, HasChat, Protocol):
    """The release records and their messages."""


async def stop_waiting(services: StopNeeds, release: Release, why: str) -> None:
    """A candidate nobody will promote any more (cancelled, superseded) stops waiting for CI:
    its waiting CI gates fail with `why`, rather than show "waiting" for ever. Not a failure
    of what runs there (nothing is marked failed in the environment)."""
    ci_gates = {g.id for g in services.config.gates if g.check == "github"}
    detail = f"not waited for any more: {why}"
    store = services.store
    for gate in release.gates:
        if gate.id not in ci_gates or gate.status != "running":
            continue
        try:
            await store.update_release(
                release.version,
                partial(
                    releases.finish_gate,
                    gate_id=gate.id,
                    now=store.clock(),
                    ok=False,
                    detail=detail,
                ),
                BOT,
                "gate.finish",
                environment=gate.stage,
                outcome="failed",
                reason=f"{gate.id}: {detail}"[:500],
            )
        except TransitionError:
            continue  # decided meanwhile
        services.chat.refresh(release.version)
