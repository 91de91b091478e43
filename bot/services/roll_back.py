"""Asking for, approving and running rollbacks (the worker job redeploys an earlier tag)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from bot.blocks import release as messages
from bot.domain import releases, rollbacks
from bot.domain.actors import BOT, Actor
from bot.domain.approval_policy import approvals_text
from bot.domain.approvals import NoChange, Refusal
from bot.domain.changes import Changeset, summary_line
from bot.domain.config import ApprovalPolicy
from bot.domain.releases import TransitionError
from bot.domain.rollbacks import RollbackRequest
from bot.domain.versions import is_final_tag
from bot.services import deploy_engine, monitor_health, release_changes
from bot.services.approvers import MembershipNotChecked, approver_without_asking, is_approver
from bot.services.clicks import Where, refused, same_message
from bot.services.deploy_engine import EngineNeeds
from bot.services.monitor_health import MonitorNeeds
from bot.services.ports import (
    GitError,
    HasFormTickets,
    HasQueue,
    HasStore,
    HasUserDirectory,
)

log = logging.getLogger(__name__)

# The longest a rollback's command waits for the note of what it takes away (a fetch, at worst).
WHAT_GOES_SECONDS = 15.0


class RollbackNeeds(
    EngineNeeds,
    MonitorNeeds,
    HasStore,
    HasQueue,
    HasFormTickets,
    HasUserDirectory,
    Protocol,
):
    """Asking for, approving and running a rollback (through MonitorNeeds, the version index:
    a final tag the bot never deployed may be rolled back to)."""


ROLLBACK = "rollback"


@dataclass(frozen=True)
class RollbackAnswer:
    """The answer for the person who asked, and the request's message to post after the ack
    (Slack's Web API is never called before an ack)."""

    text: str
    post: Callable[[], Awaitable[None]] | None = None


async def _final_tag(services: RollbackNeeds, to: str | None, prefix: str) -> dict[str, str]:
    """`to` as a final tag of the repository, with its commit, read from the version index
    (Redis: nothing before an ack waits for git); {} if it is none."""
    if to is None:
        return {}
    tag = to if prefix and to.startswith(prefix) else f"{prefix}{to}"
    if not is_final_tag(tag, prefix):
        return {}
    sha = await services.versions.commit_of(tag)
    return {tag: sha} if sha else {}


async def request_rollback(
    services: RollbackNeeds,
    actor: Actor,
    environment: str,
    to: str | None,
    reason: str,
    now: float,
    expect_from: str | None = None,
) -> RollbackAnswer:
    """Record the request; start it when its approvals are complete. `expect_from` is the
    version a Roll back button showed: if the environment runs another by now, nothing is
    done (the person asked to roll back what they saw, not whatever runs there now)."""
    store, config = services.store, services.config
    prefix = config.repository.tag_prefix
    history = await store.environment_history(environment)
    ran = rollbacks.deploys(history)
    if expect_from is not None and (not ran or ran[0]["version"] != expect_from):
        now_runs = f"`{ran[0]['tag']}`" if ran else "nothing the bot deployed"
        shown = f"{config.repository.tag_prefix}{expect_from}"
        text = (
            f"*{environment}* no longer runs `{shown}` (it runs {now_runs}), so I "
            "did not roll it back; use `/release rollback` if it is still needed."
        )
        await store.audit(
            actor, "rollback.request", environment=environment, outcome="refused", reason=text[:500]
        )
        return RollbackAnswer(text)
    try:
        target = rollbacks.choose_target(
            history, environment, to, prefix, await _final_tag(services, to, prefix)
        )
    except Refusal as exc:
        await store.audit(
            actor, "rollback.request", environment=environment, outcome="refused", reason=str(exc)
        )
        return RollbackAnswer(f"No rollback: {exc}.")
    locked = await services.locks.holder(environment)
    if locked is not None:
        # Answered now, not with "Rolling back…" and a "busy" post after it: nothing may
        # deploy to a held environment, a rollback included.
        text = (
            f"No rollback: *{environment}* is held, so nothing can deploy to it now.\n"
            f"{messages.lock_line(environment, locked)}\nWhen it is free (`/release unlock "
            f"{environment}` if the hold is no longer needed), ask again: it would go to "
            f"`{target.entry['tag']}`."
        )
        await store.audit(
            actor,
            "rollback.request",
            environment=environment,
            outcome="refused",
            reason=f"{environment} held by {locked.holder}",
        )
        return RollbackAnswer(text)
    current = ran[0]
    request = RollbackRequest(
        id=secrets.token_hex(6),
        environment=environment,
        to_version=target.entry["version"],
        to_tag=target.entry["tag"],
        to_sha=target.entry["sha"],
        why=target.why,
        from_version=current["version"],
        from_tag=current["tag"],
        to_release=target.entry.get("release", ""),
        from_release=current.get("release", ""),
        reason=reason,
        requester=actor.user_id,
        requester_name=actor.user_name,
        requested_at=now,
    )
    await store.create_rollback(request, actor)
    policy = rollbacks.rollback_policy(config, environment)
    approves = approver_without_asking(policy, actor.user_id)
    if approves is None:
        # Only a user group can say whether the requester's own approval counts, and asking
        # Slack may take longer than an ack can wait: the rest is done after the ack.
        return RollbackAnswer(
            f"Rollback of *{environment}* to `{request.to_tag}` asked. I am checking whether "
            "your own approval counts (an approver user group), then I start it, or post it "
            "in the channel for the approvals it still needs.",
            post=partial(_approve_then_go, services, request, policy, actor, now),
        )
    return await _approve_then_answer(services, request, policy, actor, now, approves)


async def _approve_then_go(
    services: RollbackNeeds,
    request: RollbackRequest,
    policy: ApprovalPolicy,
    actor: Actor,
    now: float,
) -> None:
    """After the ack: the requester's group membership decides their own approval; then the
    rollback starts, or its request is posted."""
    try:
        approves = await is_approver(services, policy, actor.user_id)
    except MembershipNotChecked as exc:
        # Their own approval is not counted (audited as refused); the request is posted for
        # the approvals it needs, as for anyone who is not an approver.
        await services.store.audit(
            actor,
            "rollback.approve",
            environment=request.environment,
            outcome="refused",
            reason=str(exc),
        )
        approves = False
    answer = await _approve_then_answer(services, request, policy, actor, now, approves)
    if answer.post is not None:
        await answer.post()


async def _approve_then_answer(
    services: RollbackNeeds,
    request: RollbackRequest,
    policy: ApprovalPolicy,
    actor: Actor,
    now: float,
    approves: bool,
) -> RollbackAnswer:
    store, environment = services.store, request.environment
    if approves:
        request, _ = await store.update_rollback(
            request.id,
            partial(
                rollbacks.approve,
                user_id=actor.user_id,
                user_name=actor.user_name,
                now=now,
                eligible=True,
            ),
            actor,
            "rollback.approve",
        )
    if rollbacks.ready(request, policy):
        await _start(services, request, actor)
        return RollbackAnswer(
            f"⏪ Rolling back *{environment}* from `{request.from_shown}` to `{request.to_tag}`"
            f"…{_why(request)}"
        )
    return RollbackAnswer(
        f"Rollback of *{environment}* to `{request.to_tag}` asked; it needs "
        f"{approvals_text(rollbacks.missing(request, policy), more=True)} in the channel."
        f"{_why(request)}",
        post=partial(_post_request, services, request, policy.required),
    )


def _why(request: RollbackRequest) -> str:
    return f"\n_Why `{request.to_tag}`: {request.why}._" if request.why else ""


async def may_roll_back_from(
    services: RollbackNeeds, environment: str, version: str, where: Where
) -> str | None:
    """Why a Roll back button on the message at `where` may not open its form (None if it
    may): the environment must still run `version`, and the button must be on the message of
    the release running there or of an incident open there."""
    if environment not in [e.name for e in services.config.environments]:
        return "This button names no environment I know; use `/release rollback` instead."
    current = (await services.store.environment_versions([environment]))[environment]
    if current.get("version") != version:
        return (
            f"*{environment}* no longer runs `{version}`, so this button would roll back "
            "something else; use `/release rollback` instead."
        )
    places: list[tuple[str | None, str | None]] = [
        (i.channel, i.ts) for i in await monitor_health.open_incidents(services, environment)
    ]
    if current.get("release"):
        release = await services.store.get_release(current["release"])
        if release is not None:
            places.append((release.channel, release.message_ts))
    if not any(same_message(where, channel, ts) for channel, ts in places):
        return (
            f"This button is not on the message of what runs in *{environment}*; use "
            "`/release rollback` instead."
        )
    return None


async def _post_request(services: RollbackNeeds, request: RollbackRequest, required: int) -> None:
    text, blocks = messages.rollback_request(request, required)
    release = (
        await services.store.get_release(request.from_release) if request.from_release else None
    )
    if release and release.channel and release.message_ts:
        posted = await services.chat.post(
            release.channel, blocks, text, thread_ts=release.message_ts
        )
    else:
        posted = await services.chat.post(services.config.slack.channel, blocks, text)
    if posted and posted.get("ts"):
        await services.store.update_rollback(
            request.id,
            partial(
                rollbacks.placed,
                channel=str(posted.get("channel", "")),
                message_ts=str(posted["ts"]),
            ),
            BOT,
            "rollback.posted",
        )


async def _placed(services: RollbackNeeds, request: RollbackRequest) -> RollbackRequest:
    """The request once its message's place is recorded (just after it was posted: a click
    that comes at once waits for it, up to a second, instead of being told it is elsewhere)."""
    for _ in range(20):
        if request.message_ts:
            break
        await asyncio.sleep(0.05)
        request = await services.store.get_rollback(request.id) or request
    return request


async def cancel_rollback(
    services: RollbackNeeds, actor: Actor, request_id: str, where: Where
) -> str:
    """The Cancel click on a rollback request's message at `where`: who asked for it, or an
    approver of it, calls it off while it waits; returns the private answer."""
    store = services.store
    request = await store.get_rollback(request_id)
    if request is not None:
        request = await _placed(services, request)
    if request is None or not same_message(where, request.channel, request.message_ts):
        return await refused(
            services,
            actor,
            "rollback.cancel",
            f"{request_id}: not on the request's message",
            "This button is not on the rollback request's message; use the one there.",
        )
    policy = rollbacks.rollback_policy(services.config, request.environment)
    try:
        may = actor.user_id == request.requester or await is_approver(
            services, policy, actor.user_id
        )
        request, _ = await store.update_rollback(
            request_id,
            partial(rollbacks.cancel, user_name=actor.user_name, now=store.clock(), may=may),
            actor,
            "rollback.cancel",
        )
    except NoChange as exc:
        return f"Nothing changed: {exc}."
    except TransitionError as exc:
        await store.audit(
            actor,
            "rollback.cancel",
            release=request.releases,
            environment=request.environment,
            outcome="refused",
            reason=str(exc),
        )
        return f"You cannot cancel this rollback: {exc}."
    text, blocks = messages.rollback_cancelled(request)
    await services.chat.update(request.channel, request.message_ts, blocks, text)
    return f"You cancelled the rollback of *{request.environment}* to `{request.to_tag}`."


async def approve_rollback(
    services: RollbackNeeds, actor: Actor, request_id: str, where: Where
) -> str:
    """An Approve click on the request's message at `where`; returns the private answer."""
    store = services.store
    request = await store.get_rollback(request_id)
    if request is None:
        return await refused(
            services,
            actor,
            "rollback.approve",
            f"{request_id}: unknown",
            "That rollback request is gone.",
        )
    request = await _placed(services, request)
    if not same_message(where, request.channel, request.message_ts):
        return await refused(
            services,
            actor,
            "rollback.approve",
            f"{request_id}: not on the request's message",
            "This button is not on the rollback request's message; use the one there.",
        )
    policy = rollbacks.rollback_policy(services.config, request.environment)
    try:
        eligible = await is_approver(services, policy, actor.user_id)
        request, _ = await store.update_rollback(
            request_id,
            partial(
                rollbacks.approve,
                user_id=actor.user_id,
                user_name=actor.user_name,
                now=store.clock(),
                eligible=eligible,
            ),
            actor,
            "rollback.approve",
        )
    except NoChange as exc:
        await store.audit(
            actor,
            "rollback.approve",
            release=request.releases,
            environment=request.environment,
            outcome="duplicate",
            reason=str(exc),
        )
        return f"Nothing changed: {exc}."
    except TransitionError as exc:
        await store.audit(
            actor,
            "rollback.approve",
            release=request.releases,
            environment=request.environment,
            outcome="refused",
            reason=str(exc),
        )
        return f"You cannot approve this rollback: {exc}."
    if rollbacks.ready(request, policy):
        await _start(services, request, actor)
        return f"You approved; rolling back *{request.environment}* to `{request.to_tag}`."
    return "You approved the rollback; it needs more approvals."


async def _start(services: RollbackNeeds, request: RollbackRequest, actor: Actor) -> None:
    policy = rollbacks.rollback_policy(services.config, request.environment)
    try:
        await services.store.update_rollback(
            request.id, partial(rollbacks.start, policy=policy), actor, "rollback.start"
        )
    except TransitionError:
        return  # another click started it
    env = services.config.environment(request.environment)
    await services.queue.enqueue(
        ROLLBACK,
        request_id=request.id,
        actor=actor.__dict__,
        key=f"rollback-{request.id}",
        retries=1,
        timeout=deploy_engine.job_timeout(services.config, env.timeout_seconds),
        heartbeat=deploy_engine.job_heartbeat(services.config),
    )


async def _say(
    services: RollbackNeeds, request: RollbackRequest, blocks: list[messages.Block], text: str
) -> None:
    if request.from_release:
        release = await services.store.get_release(request.from_release)
        if release is not None and release.message_ts:
            await services.chat.thread(request.from_release, blocks, text)
            return
    # Through the channel's outbox: kept until Slack takes it, never dropped after retries.
    await services.chat.reply(services.config.slack.channel, "", blocks, text)


async def run_rollback(
    services: RollbackNeeds, request_id: str, actor: Actor, job: Any = None
) -> None:
    store, config = services.store, services.config
    request = await store.get_rollback(request_id)
    if request is None or request.status != "running":
        return
    env = config.environment(request.environment)
    target = deploy_engine.Target(
        kind="rollback",
        deploy_id=f"rollback:{request_id}",
        environment=env,
        subject=request_id,
        holder=actor.user_id,
        reason=f"rolling back to {request.to_tag}",
        on_stopped=partial(
            report_lost,
            services,
            request_id,
            message=f"The worker rolling back *{env.name}* to "
            f"`{request.to_tag}` was stopped; the deploy command was "
            f"killed and the rollback is marked *failed*. Check "
            f"*{env.name}* and ask again if needed.",
        ),
    )
    try:
        async with deploy_engine.deploying(services, target, job) as running:
            await _roll_back(services, request, running, actor)
    except deploy_engine.EnvironmentBusy as exc:
        await _not_started(services, request, actor, "blocked", f"held by {exc.info.holder}")
        await _say(
            services, request, messages.environment_busy(env.name, exc.info), f"{env.name} is busy"
        )
    except deploy_engine.GivenUp as exc:
        await _not_started(services, request, actor, "given up", str(exc))
        text = (
            f"The rollback of *{env.name}* to `{request.to_tag}` was not run: {exc}. "
            "Ask again if it is still wanted."
        )
        await _say(services, request, messages.problem(text), text)


async def _what_goes(services: RollbackNeeds, request: RollbackRequest) -> Changeset | None:
    running = (await services.store.environment_versions([request.environment]))[
        request.environment
    ]
    current = running.get("sha", "")
    if not current or not request.to_sha or current == request.to_sha:
        return None
    read = partial(
        release_changes.changes_between, services, request.to_sha, current, f"`{request.to_tag}`"
    )
    try:
        return await read()
    except GitError:
        # The clone had the target, so the checkout fetched nothing, but not what runs now:
        # another worker deployed it after this clone was last fetched.
        await services.git.sync_tags()
        return await read()


async def _say_what_goes(services: RollbackNeeds, request: RollbackRequest) -> None:
    """Before its command runs, the thread hears what the rollback takes away: the changes of
    what runs now that the target does not have. Read once the target is checked out, so the
    clone has its commits: read before, a worker that had no clone yet (its first job since it
    started) could not say. Best effort, and never longer than WHAT_GOES_SECONDS."""
    try:
        gone = await asyncio.wait_for(_what_goes(services, request), WHAT_GOES_SECONDS)
    except Exception as exc:  # the rollback goes ahead all the same
        log.warning("reading what the rollback of %s removes failed: %s", request.environment, exc)
        return
    if gone is None or not gone.total:
        return
    titles = "; ".join(messages.escape(change.title)[:80] for change in gone.changes[:5])
    more = f"; and {gone.total - 5:,} more" if gone.total > 5 else ""
    text = (
        f"⏪ Rolling back *{request.environment}* to `{request.to_tag}` takes away "
        f"{summary_line(gone)}: {titles}{more}."
    )
    await _say(services, request, messages.note(text), "What the rollback takes away")


async def _not_started(
    services: RollbackNeeds, request: RollbackRequest, actor: Actor, outcome: str, reason: str
) -> None:
    store = services.store
    with contextlib.suppress(TransitionError):
        await store.update_rollback(
            request.id,
            partial(rollbacks.finish, ok=False, now=store.clock()),
            actor,
            "rollback.finish",
            outcome=outcome,
            reason=reason,
        )


async def _roll_back(
    services: RollbackNeeds, request: RollbackRequest, running: deploy_engine.Deploy, actor: Actor
) -> None:
    store = services.store
    env = running.target.environment
    try:
        await running.checkout(request.to_tag, request.to_sha)
    except GitError as exc:
        result = deploy_engine.checkout_failed(request.to_tag, exc)
    else:
        await _say_what_goes(services, request)

        async def say(text: str) -> None:
            await _say(services, request, messages.note(text), text)

        result = await running.deploy(
            {
                "RELEASE_VERSION": request.to_version,
                "RELEASE_TAG": request.to_tag,
                "RELEASE_SHA": request.to_sha,
                "RELEASE_ENV": env.name,
                "RELEASE_ROLLBACK": "1",
            },
            say=say,
        )
    finished_at = store.clock()
    took = finished_at - request.requested_at
    try:
        request, _ = await deploy_engine.durably(
            services,
            f"the outcome of rollback {request.id}",
            store.update_rollback,
            request.id,
            partial(rollbacks.finish, ok=result.ok, now=finished_at),
            actor,
            "rollback.finish",
            outcome="succeeded" if result.ok else "failed",
            reason=f"{result.summary()}; {took:.1f}s from request to deploy finished",
        )
    except deploy_engine.NotRecorded as exc:
        text = (
            f"The rollback of *{env.name}* to `{request.to_tag}` "
            f"{'succeeded' if result.ok else 'failed'}, but I could not record it: {exc}. "
            f"Check *{env.name}*."
        )
        await _say(services, request, messages.problem(text), text)
        return
    except TransitionError:
        return  # its record moved on meanwhile
    if result.ok:
        await store.set_environment_version(
            env.name,
            request.to_version,
            request.to_tag,
            request.to_sha,
            # The release rolled back to is the one running: its thread hears the incidents.
            release=request.to_release,
            deployed_at=finished_at,
            rolled_back_from=request.from_version,
        )
        await monitor_health.deploy_finished(
            services,
            env.name,
            request.to_version,
            request.from_release,
            request.from_version,
            rollback=True,
        )
        reason = f"rolled back from {request.from_shown} to {request.to_tag}: {request.reason}"
        if await running.hold():
            await running.hand_over("releasebot", reason, "rollback")
        if request.from_release:
            with contextlib.suppress(TransitionError):
                await store.update_release(
                    request.from_release,
                    partial(releases.mark_rolled_back, to_tag=request.to_tag),
                    actor,
                    "release.rolled-back",
                    environment=env.name,
                    reason=request.reason,
                )
        await store.audit(
            BOT, "lock.take", release=request.releases, environment=env.name, reason=reason
        )
        await _say(
            services,
            request,
            messages.note(
                f"⏪ Rolled back *{env.name}* from `{request.from_shown}` to "
                f"`{request.to_tag}` in {messages.seconds(took)} (from the request to the "
                f"deploy finished). 🔒 *{env.name}* stays locked: "
                f"{messages.escape(request.reason)}. `/release unlock {env.name}` when it is "
                "fixed."
            ),
            f"Rolled back {env.name}",
        )
    else:
        await _say(
            services,
            request,
            messages.deploy_outcome(request.to_tag, env.name, result),
            "Rollback failed",
        )
        await monitor_health.deploy_failed(
            services,
            env.name,
            request.from_release,
            request.to_tag,
            f"rollback: {result.summary()}",
        )
    if request.from_release:
        services.chat.refresh(request.from_release)


async def report_lost(
    services: RollbackNeeds, request_id: str, detail: str, *, message: str = ""
) -> bool:
    """The worker running this rollback died (or is shutting down): say so; never re-run it
    behind anyone's back. False if it finished meanwhile."""
    store = services.store
    try:
        request, _ = await store.update_rollback(
            request_id,
            partial(rollbacks.report_lost, now=store.clock()),
            BOT,
            "rollback.finish",
            outcome="failed",
            reason=detail,
        )
    except TransitionError:
        return False
    text = message or (
        f"The worker rolling back *{request.environment}* to "
        f"`{request.to_tag}` stopped responding; the rollback is marked "
        f"*failed*. Check *{request.environment}* and ask again if needed."
    )
    await _say(services, request, messages.problem(text), "Rollback lost")
    return True
