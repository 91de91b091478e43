"""Deploying a release to an environment and running its automatic gates, through the one
deploy engine (bot.services.deploy_engine); a lost deploy is reported in its thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from functools import partial
from typing import Any, Protocol

from bot.blocks import release as messages
from bot.domain import approvals, releases
from bot.domain.actors import BOT, Actor
from bot.domain.command_results import CommandResult
from bot.domain.config import Config, GateConfig
from bot.domain.releases import Release, TransitionError
from bot.services import (
    change_flags,
    ci_gates,
    deploy_engine,
    deploy_windows,
    monitor_health,
    permissions,
)
from bot.services.clicks import Where, refused, same_message
from bot.services.deploy_engine import EngineNeeds
from bot.services.monitor_health import MonitorNeeds
from bot.services.ports import (
    GitError,
    HasCi,
    HasFreezeRecords,
    HasQueue,
    HasStore,
    HasUserDirectory,
)

log = logging.getLogger(__name__)


class DeployNeeds(EngineNeeds, MonitorNeeds, HasStore, HasQueue, HasCi, HasFreezeRecords, Protocol):
    """A release's deploy: the engine, its record, its thread, the queue, the CI's checks
    (and, through MonitorNeeds, the version index, for the flags-ready gate to learn what
    production runs)."""


DEPLOY = "deploy"


async def enqueue_deploy(
    services: DeployNeeds, release: Release, environment: str, actor: Actor, *, retry: bool = False
) -> str:
    """Record a queued deploy on the release and put its job on the queue; with `retry`, the
    failed deploy of that environment again, if approvals.retry_refusal allows it (raises
    TransitionError otherwise, and nothing is queued)."""
    deploy_id = f"{release.version}@{environment}#{secrets.token_hex(4)}"
    now = services.store.clock()
    await services.store.update_release(
        release.version,
        partial(
            approvals.retry_deploy,
            environment=environment,
            deploy_id=deploy_id,
            config=services.config,
            now=now,
        )
        if retry
        else partial(releases.queue_deploy, environment=environment, deploy_id=deploy_id, now=now),
        actor,
        "deploy.retry" if retry else "deploy.queue",
        environment=environment,
    )
    try:
        await _queue_deploy_job(services, release.version, environment, deploy_id, actor)
    except Exception:
        # Recorded as queued but no job carries it: never leave it "queued" for ever.
        with contextlib.suppress(Exception):
            await services.store.update_release(
                release.version,
                partial(
                    releases.block_deploy,
                    deploy_id=deploy_id,
                    now=services.store.clock(),
                    detail="it could not be queued",
                ),
                actor,
                "deploy.start",
                environment=environment,
                outcome="blocked",
                reason="could not be queued",
            )
        raise
    services.chat.refresh(release.version)
    return deploy_id


class RetryNeeds(DeployNeeds, HasUserDirectory, Protocol):
    """A retried deploy; one to the last environment is for `deployers` only."""


# A click is answered within AFTER_ACK_BUDGET (handlers.answers): a user group's members
# may be waited for this long of it.
RETRY_MEMBERSHIP_SECONDS = 3.0


async def _queue_deploy_job(
    services: DeployNeeds,
    version: str,
    environment: str,
    deploy_id: str,
    actor: Actor,
    *,
    key: str = "",
    **when: int,
) -> None:
    """The job of a deploy recorded as queued (`key`: another job for the same deploy, like
    one queued again for its environment's opening; `when`: saq's `scheduled`)."""
    env = services.config.environment(environment)
    gate_time = sum(
        g.timeout_seconds for g in services.config.gates_for(environment) if g.automatic
    )
    await services.queue.enqueue(
        DEPLOY,
        version=version,
        environment=environment,
        deploy_id=deploy_id,
        actor=asdict(actor),
        key=key or deploy_id,
        retries=1,
        timeout=deploy_engine.job_timeout(services.config, env.timeout_seconds + gate_time),
        # Never retried (retries=1): a lost deploy is reported in its thread by our reaper.
        heartbeat=deploy_engine.job_heartbeat(services.config),
        **when,
    )


async def retry_deploy(
    services: RetryNeeds, actor: Actor, version: str, environment: str, where: Where
) -> str:
    """The Retry deploy button on the message at `where`: the failed deploy of `version` to
    `environment` again (its gates run again after it); returns the private answer."""
    release = await services.store.get_release(version)
    if release is None or not same_message(where, release.channel, release.message_ts):
        return await refused(
            services,
            actor,
            "deploy.retry",
            f"{version}@{environment}: not on the release's message",
            "This button is not on the release's message; use the one there.",
        )
    last = services.config.last_environment.name
    _, tag = release.tag_for(environment, last)
    if environment == last:
        # A deploy to the last environment, as the promotion that started it was.
        not_theirs = await permissions.refusal(
            services,
            permissions.to_deploy_last(services.config, "deploy.retry"),
            actor,
            release=version,
            environment=environment,
            wait=RETRY_MEMBERSHIP_SECONDS,
        )
        if not_theirs is not None:
            return f"{not_theirs} I did not retry the deploy of `{tag}`."
    try:
        await enqueue_deploy(services, release, environment, actor, retry=True)
    except TransitionError as exc:
        return await refused(
            services,
            actor,
            "deploy.retry",
            f"{version}@{environment}: {exc}",
            f"I did not retry the deploy of `{tag}` to *{environment}*: {exc}.",
        )
    await services.chat.thread(
        version,
        messages.note(
            f"🔁 {messages.mention(actor.user_id)} retried the deploy of `{tag}` to "
            f"*{environment}*."
        ),
        f"{actor.user_name} retried the deploy to {environment}",
    )
    return f"Retrying the deploy of `{tag}` to *{environment}*; follow it in the thread."


# A Re-run's id carries this: its job runs gates only, and a lost one fails its gates.
GATES_RUN = "#gates-"


async def rerun_gate(
    services: DeployNeeds, actor: Actor, version: str, gate_id: str, where: Where
) -> str:
    """The Re-run button of a failed automatic gate on the message at `where`: the gate (and
    any other unfinished one of its environment) runs again against what the environment runs,
    under its lock; returns the private answer."""
    release = await services.store.get_release(version)
    if release is None or not same_message(where, release.channel, release.message_ts):
        return await refused(
            services,
            actor,
            "gate.rerun",
            f"{version}: {gate_id}: not on the release's message",
            "This button is not on the release's message; use the one there.",
        )
    last = services.config.last_environment.name
    try:
        release, gate = await services.store.update_release(
            version,
            partial(releases.rerun_gate, gate_id=gate_id, last_environment=last),
            actor,
            "gate.rerun",
            reason=gate_id,
        )
    except TransitionError as exc:
        return await refused(
            services,
            actor,
            "gate.rerun",
            f"{version}: {gate_id}: {exc}",
            f"I did not re-run it: {exc}.",
        )
    run_id = f"{version}@{gate.stage}{GATES_RUN}{secrets.token_hex(4)}"
    env = services.config.environment(gate.stage)
    gate_time = sum(g.timeout_seconds for g in services.config.gates_for(env.name) if g.automatic)
    try:
        await services.queue.enqueue(
            DEPLOY,
            version=version,
            environment=env.name,
            deploy_id=run_id,
            actor=asdict(actor),
            gates_only=True,
            key=run_id,
            retries=1,
            timeout=deploy_engine.job_timeout(services.config, gate_time),
            heartbeat=deploy_engine.job_heartbeat(services.config),
        )
    except Exception:
        with contextlib.suppress(Exception):
            await _fail_unfinished_gates(services, version, env.name, actor, "could not be queued")
        raise
    services.chat.refresh(version)
    await services.chat.thread(
        version,
        messages.note(
            f"🔁 {messages.mention(actor.user_id)} re-runs *{messages.escape(gate.name)}* in "
            f"*{env.name}*."
        ),
        f"{actor.user_name} re-runs {gate.name}",
    )
    return f"Re-running {gate.name} of `{release.tag}` in *{env.name}*; follow it in the thread."


async def _fail_unfinished_gates(
    services: DeployNeeds, version: str, environment: str, actor: Actor, detail: str
) -> None:
    await services.store.update_release(
        version,
        partial(
            releases.fail_unfinished_gates,
            environment=environment,
            now=services.store.clock(),
            detail=detail,
        ),
        actor,
        "gate.finish",
        environment=environment,
        outcome="failed",
        reason=detail,
    )
    services.chat.refresh(version)


async def _gates_locked(
    services: DeployNeeds, release: Release, running: deploy_engine.Deploy, actor: Actor
) -> None:
    """A Re-run under the environment's lock: the gates check what the environment runs, so
    they run only while it still runs this release."""
    env = running.target.environment
    _, tag = release.tag_for(env.name, services.config.last_environment.name)
    why = None
    if not await _still_runs(services, env.name, release.version):
        why = f"*{env.name}* runs another release now"
    else:
        try:
            await running.checkout(tag, release.sha)
        except GitError as exc:
            why = f"`{tag}` could not be checked out: {exc}"
    if why is not None:
        await _fail_unfinished_gates(services, release.version, env.name, actor, f"not run: {why}")
        await services.chat.thread(
            release.version,
            messages.problem(f"The gates were not re-run: {why}."),
            "Gates not re-run",
        )
        return
    await _run_gates(services, release, env.name, running, actor)


# A running deploy's message shows its elapsed time and latest output line, redrawn this often
# at most (Slack's chat.update allows about one a second per message; people need less).
PROGRESS_SECONDS = 10.0


@contextlib.asynccontextmanager
async def _progress_shown(
    services: DeployNeeds, version: str, environment: str
) -> AsyncIterator[Callable[[str], None]]:
    """While the block runs: every PROGRESS_SECONDS, the latest line it was given is kept in
    Redis and the release message redrawn with it; yields what takes each line."""
    latest = [""]

    def seen(line: str) -> None:
        latest[0] = line

    async def show() -> None:
        while True:
            await asyncio.sleep(PROGRESS_SECONDS)
            try:
                await services.store.note_progress(version, environment, latest[0])
            except Exception:  # shown, not recorded: a Redis blip costs one redraw
                log.warning("could not keep the progress of %s in %s", version, environment)
                continue
            services.chat.show_progress(version)

    task = asyncio.create_task(show())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _command_env(release: Release, environment: str, config: Config) -> dict[str, str]:
    version, tag = release.tag_for(environment, config.last_environment.name)
    return {
        "RELEASE_VERSION": version,
        "RELEASE_TAG": tag,
        "RELEASE_SHA": release.sha,
        "RELEASE_ENV": environment,
    }


async def run_deploy(
    services: DeployNeeds,
    version: str,
    environment: str,
    deploy_id: str,
    actor: Actor = BOT,
    job: Any = None,
    *,
    gates_only: bool = False,
) -> None:
    """Deploy on behalf of `actor` (who asked for it: the audit entries name them); with
    `gates_only`, run the environment's pending automatic gates again (Re-run) against what
    it runs, under the same lock, without deploying."""
    store, config = services.store, services.config
    env = config.environment(environment)
    release = await store.get_release(version)
    if release is None:
        log.warning("deploy %s: no release %s", deploy_id, version)
        return
    _, tag = release.tag_for(environment, services.config.last_environment.name)
    target = deploy_engine.Target(
        kind="release",
        deploy_id=deploy_id,
        environment=env,
        subject=version,
        holder=release.requester,
        reason=f"deploying {tag}",
        on_stopped=partial(
            report_lost_deploy,
            services,
            version,
            deploy_id,
            environment,
            message=f"The worker was stopped while deploying `{tag}` to "
            f"*{environment}*; the deploy was stopped (its command killed, or its GitHub "
            "run cancelled; the environment stays locked if that could not be done) and is "
            f"marked *failed*. Check *{environment}* before deploying again.",
        ),
    )
    if not gates_only and await _waits_for_window(services, release, environment, deploy_id, actor):
        return
    try:
        async with deploy_engine.deploying(services, target, job) as running:
            if gates_only:
                await _gates_locked(services, release, running, actor)
                live = None
            else:
                live = await _deploy_locked(services, release, running, actor)
        if live is not None:
            # After the lock is released: whoever reads "live" (and rolls back at once) finds
            # the environment free.
            await _go_live(services, live, environment, actor)
    except deploy_engine.EnvironmentBusy as exc:
        holder = exc.info
        await _not_started(
            services,
            version,
            deploy_id,
            environment,
            actor,
            detail=f"locked by {holder.holder}",
            reason=f"{environment} held by {holder.holder}: {holder.reason}",
            blocks=messages.environment_busy(environment, holder),
            text=f"{environment} is busy",
        )
    except deploy_engine.GivenUp as exc:
        text = (
            f"The deploy of `{tag}` to *{environment}* was not run: {exc}. It was "
            "reported to you as failed or stuck meanwhile, so it is not run late; deploy "
            "again if it is still wanted."
        )
        await _not_started(
            services,
            version,
            deploy_id,
            environment,
            actor,
            detail=str(exc),
            reason=str(exc),
            blocks=messages.problem(text),
            text=text,
        )


async def _waits_for_window(
    services: DeployNeeds, release: Release, environment: str, deploy_id: str, actor: Actor
) -> bool:
    """A deploy whose environment is closed (a deny window, a freeze, outside its allow
    windows) does not start: it waits, queued again for the moment it opens, and the thread
    says so. True when it waits (or, never opening, was blocked)."""
    override = release.override
    # An approved EMERGENCY override goes through the last environment's closure.
    overridden = (
        override is not None
        and override.granted
        and environment == services.config.last_environment.name
    )
    shut = await deploy_windows.closed(services, environment, overridden=overridden)
    if shut is None:
        return False
    _, tag = release.tag_for(environment, services.config.last_environment.name)
    text = deploy_windows.closed_text(services, environment, shut)
    if shut.opens_at is None:
        await _not_started(
            services,
            release.version,
            deploy_id,
            environment,
            actor,
            detail="closed: " + shut.why,
            reason=text[:500],
            blocks=messages.problem(f"The deploy of `{tag}` was not started: {text}"),
            text=f"{environment} is closed",
        )
        return True
    opens = shut.opens_at.timestamp()
    await _queue_deploy_job(
        services,
        release.version,
        environment,
        deploy_id,
        actor,
        key=f"{deploy_id}~{int(opens)}",
        scheduled=int(opens) + 1,
    )
    await services.store.audit(
        actor,
        "deploy.wait",
        release=release.version,
        environment=environment,
        outcome="waiting",
        reason=text[:500],
    )
    await services.chat.thread(
        release.version,
        messages.note(f"⏸ The deploy of `{tag}` waits: {text} It starts then, by itself."),
        f"Deploy to {environment} waits",
    )
    return True


async def _not_started(
    services: DeployNeeds,
    version: str,
    deploy_id: str,
    environment: str,
    actor: Actor,
    *,
    detail: str,
    reason: str,
    blocks: list[messages.Block],
    text: str,
) -> None:
    store = services.store
    with contextlib.suppress(TransitionError):
        if GATES_RUN in deploy_id:
            await _fail_unfinished_gates(
                services, version, environment, actor, f"not run: {detail}"
            )
        else:
            await store.update_release(
                version,
                partial(
                    releases.block_deploy, deploy_id=deploy_id, now=store.clock(), detail=detail
                ),
                actor,
                "deploy.start",
                environment=environment,
                outcome="blocked",
                reason=reason,
            )
    await services.chat.thread(version, blocks, text)
    services.chat.refresh(version)


def _finish(
    release: Release, *, deploy_id: str, now: float, result: CommandResult
) -> tuple[releases.Deploy, bool]:
    """The worker's outcome, and whether it corrects a "worker lost" report made meanwhile."""
    was_lost = releases.find_deploy(release, deploy_id).lost
    deploy = releases.finish_deploy(release, deploy_id, now, ok=result.ok, detail=result.summary())
    return deploy, was_lost


async def _deploy_locked(
    services: DeployNeeds, release: Release, running: deploy_engine.Deploy, actor: Actor
) -> Release | None:
    """The deploy and its gates under the lock; returns the release if it is now to be
    marked live (a promoted release in the last environment)."""
    store, notifier, config = services.store, services.chat, services.config
    env, deploy_id = running.target.environment, running.target.deploy_id
    version, tag = release.tag_for(env.name, services.config.last_environment.name)
    try:
        release, _ = await store.update_release(
            release.version,
            partial(releases.start_deploy, deploy_id=deploy_id, now=store.clock()),
            actor,
            "deploy.start",
            environment=env.name,
        )
    except TransitionError as exc:
        # Not queued any more (a re-delivered job, or reported lost): never run it again.
        log.warning("deploy %s not started: %s", deploy_id, exc)
        return None
    notifier.refresh(release.version)
    how = f" with {env.deploy.what}" if env.deploy is not None else ""
    await notifier.thread(
        release.version,
        messages.note(f"⏳ Deploying `{tag}` to *{env.name}*{how}…"),
        f"Deploying to {env.name}",
    )
    try:
        await running.checkout(tag, release.sha)
    except GitError as exc:
        result = deploy_engine.checkout_failed(tag, exc)
    else:

        async def say(text: str) -> None:
            await notifier.thread(release.version, messages.note(text), text)

        async with _progress_shown(services, release.version, env.name) as seen:
            result = await running.deploy(
                _command_env(release, env.name, config), on_line=seen, say=say
            )
    finished_at = store.clock()
    outcome = "succeeded" if result.ok else "failed"
    try:
        release, (deploy, corrected) = await deploy_engine.durably(
            services,
            f"the outcome of deploy {deploy_id}",
            store.update_release,
            release.version,
            partial(_finish, deploy_id=deploy_id, now=finished_at, result=result),
            actor,
            "deploy.finish",
            environment=env.name,
            outcome=outcome,
            reason=result.summary(),
        )
    except releases.NoChange:
        # Written by an attempt whose reply was lost on the way back.
        release = await store.get_release(release.version) or release
        deploy, corrected = releases.find_deploy(release, deploy_id), False
    except deploy_engine.NotRecorded as exc:
        await _outcome_not_recorded(services, release, env.name, tag, result, str(exc))
        return None
    except TransitionError as exc:
        log.warning("deploy %s finished, but its record moved on: %s", deploy_id, exc)
        return None
    if corrected:
        await notifier.thread(
            release.version,
            messages.note(
                f"↩️ The deploy to *{env.name}* was reported lost while its worker was not "
                "answering (frozen, or cut off from Redis); the worker is back, and this is what "
                f"really happened: it {outcome}."
            ),
            f"Deploy to {env.name}: the real outcome",
        )
    if result.ok:
        before = (await store.environment_versions([env.name]))[env.name]
        if await store.set_environment_version(
            env.name, version, tag, release.sha, release.version, deployed_at=finished_at
        ):
            await monitor_health.deploy_finished(
                services, env.name, version, release.version, before.get("version", "")
            )
    else:
        await monitor_health.deploy_failed(
            services, env.name, release.version, tag, result.summary()
        )
    await notifier.thread(
        release.version,
        messages.deploy_outcome(tag, env.name, result),
        f"Deploy to {env.name} {deploy.status}",
    )
    notifier.refresh(release.version)
    if not result.ok:
        return None
    if not await running.hold() or not await _still_runs(services, env.name, release.version):
        await notifier.thread(
            release.version,
            messages.problem(
                f"The gates of `{tag}` in *{env.name}* were not run: the worker lost the "
                f"environment lock while Redis was unreachable, and *{env.name}* has moved on. "
                "Deploy again to run them."
            ),
            "Gates not run",
        )
        return None
    await _run_gates(services, release, env.name, running, actor)
    last = services.config.last_environment.name
    return release if release.final_tag and env.name == last else None


async def _go_live(services: DeployNeeds, release: Release, environment: str, actor: Actor) -> None:
    _, tag = release.tag_for(environment, services.config.last_environment.name)
    with contextlib.suppress(TransitionError):
        await services.store.update_release(
            release.version, releases.go_live, actor, "release.live", environment=environment
        )
        services.chat.refresh(release.version)
        # Before the thread says so: once people read "live", /release status is already right.
        await _overtake_older(services, release, tag, actor)
        await services.chat.thread(
            release.version,
            messages.note(f"🎉 `{tag}` is live in *{environment}*."),
            f"{tag} is live",
        )
        override = release.override
        if override is not None and override.granted:
            await services.chat.thread(
                release.version,
                messages.note(
                    f"🚨 `{tag}` went live through *{environment}*'s closure on an EMERGENCY "
                    f"override ({messages.escape(override.reason)}): review it, as the team "
                    "reviews every change made in a freeze."
                ),
                "Review this EMERGENCY release",
            )


async def _overtake_older(services: DeployNeeds, live: Release, tag: str, actor: Actor) -> None:
    """Older promotions that never went live leave the releases in flight, so that neither
    they nor `/release status` and `/release final` (which read them all) pile up."""
    for older in await services.store.releases_in_flight():
        if older.version == live.version or older.created_at > live.created_at:
            continue
        if not older.final_tag:
            continue  # an open candidate: a newer candidate supersedes it, not a live release
        try:
            await services.store.update_release(
                older.version,
                partial(releases.overtake, newer=tag),
                actor,
                "release.overtake",
                reason=f"{tag} went live first",
            )
        except TransitionError:
            continue  # went live or was overtaken meanwhile
        services.chat.refresh(older.version)


async def _still_runs(services: DeployNeeds, environment: str, version: str) -> bool:
    """Whether `environment` still runs what release `version` deployed (nobody deployed
    since): the gates check what is there."""
    current = (await services.store.environment_versions([environment]))[environment]
    return current.get("release") == version


async def _outcome_not_recorded(
    services: DeployNeeds,
    release: Release,
    environment: str,
    tag: str,
    result: CommandResult,
    why: str,
) -> None:
    """Redis stayed away: say what happened where people look, from what this worker holds."""
    outcome = "succeeded" if result.ok else "failed"
    log.error(
        "deploy of %s to %s %s, but the outcome could not be recorded: %s",
        tag,
        environment,
        outcome,
        why,
    )
    if release.channel and release.message_ts:
        text = (
            f"The deploy of `{tag}` to *{environment}* {outcome} "
            f"({messages.escape(result.summary())}), "
            f"but I could not record it: {why}. What I show for this release may be "
            f"wrong until someone checks *{environment}*."
        )
        await services.chat.post(
            release.channel, messages.problem(text), text, thread_ts=release.message_ts
        )


async def report_lost_deploy(
    services: DeployNeeds,
    version: str,
    deploy_id: str,
    environment: str,
    detail: str,
    *,
    message: str,
) -> bool:
    """A deploy that did not end normally (its worker died, or is shutting down) is failed,
    in its thread and on the health page; never re-run. False if it finished meanwhile."""
    store = services.store
    if GATES_RUN in deploy_id:
        try:
            await _fail_unfinished_gates(services, version, environment, BOT, detail)
        except TransitionError:
            return False  # finished meanwhile
        await services.chat.thread(
            version, messages.problem(message), f"Gates in {environment} stopped"
        )
        services.chat.refresh(version)
        return True
    try:
        release, _ = await store.update_release(
            version,
            partial(releases.report_lost, deploy_id=deploy_id, now=store.clock(), detail=detail),
            BOT,
            "deploy.finish",
            environment=environment,
            outcome="failed",
            reason=detail,
        )
    except TransitionError:
        return False  # finished meanwhile, or already reported by another replica
    await monitor_health.deploy_failed(services, environment, version, release.tag, detail)
    await services.chat.thread(version, messages.problem(message), f"Deploy to {environment} lost")
    services.chat.refresh(version)
    return True


async def _run_gates(
    services: DeployNeeds,
    release: Release,
    environment: str,
    running: deploy_engine.Deploy,
    actor: Actor,
) -> None:
    store, notifier = services.store, services.chat
    gates: list[GateConfig] = [g for g in services.config.gates_for(environment) if g.automatic]
    for gate_cfg in gates:
        try:
            release, gate = await store.update_release(
                release.version,
                partial(releases.start_gate, gate_id=gate_cfg.id, now=store.clock()),
                actor,
                "gate.start",
                environment=environment,
                reason=gate_cfg.id,
            )
        except TransitionError:
            continue
        notifier.refresh(release.version)
        if gate_cfg.check == "github":
            # CI reports when it is done: a gate still waiting is left running, and the
            # scheduler looks again (ci_gates.recheck_waiting) instead of a worker waiting.
            verdict = await ci_gates.look(services, release, gate, gate_cfg)
            if verdict.outcome == "waiting":
                await notifier.thread(
                    release.version,
                    messages.ci_gate_waiting(gate, verdict.detail, gate_cfg.timeout_seconds),
                    f"{gate.name} waits for CI",
                )
            else:
                await ci_gates.finish(services, release, gate, verdict, environment)
            continue
        if gate_cfg.check == "flags-ready":
            assert running.worktree is not None
            result = await change_flags.flags_ready(services, running.worktree)
        else:
            assert gate_cfg.command is not None
            result = await running.run(
                gate_cfg.command,
                _command_env(release, environment, services.config),
                services.config.gate_env(gate_cfg),
                gate_cfg.timeout_seconds,
            )
        finished_at = store.clock()
        release, gate = await deploy_engine.durably(
            services,
            f"gate {gate_cfg.id} of {release.version}",
            store.update_release,
            release.version,
            partial(
                releases.finish_gate,
                gate_id=gate_cfg.id,
                now=finished_at,
                ok=result.ok,
                detail=result.summary(),
            ),
            actor,
            "gate.finish",
            environment=environment,
            outcome="passed" if result.ok else "failed",
            reason=gate_cfg.id,
        )
        if not result.ok:
            # It ran there and failed: a rollback of this environment never goes back to it
            # by itself (bot.domain.rollbacks.known_bad).
            # As the environment's history names what ran there: the final version in the
            # last environment once promoted.
            ran, ran_tag = release.tag_for(environment, services.config.last_environment.name)
            await deploy_engine.durably(
                services,
                f"the failure of {ran} in {environment}",
                store.mark_failed_in,
                environment,
                ran,
                ran_tag,
                f"gate {gate_cfg.id} failed",
            )
        notifier.refresh(release.version)
        await notifier.thread(
            release.version, messages.gate_outcome(gate, result), f"{gate.name} {gate.status}"
        )
        if result.error == deploy_engine.LOCK_LOST:
            break  # the environment is not ours any more: no further gate runs in it
