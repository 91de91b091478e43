"""Feature flag changes from Slack: approval when a change shows a feature to more people, a
commit to the flags file in the released repository (retried on top of someone else's push,
never over their change to the same flag), the flag deploy, and a check that the site reports
the new state. Ramps raise a flag step by step while the environment has no critical alert.

A change is a request (bot.domain.flag_requests, kept by the flag-requests port) with one
message in the channel; everything that happens to it goes into that message's thread and the
audit trail. This module reaches Redis and Slack only through the ports its needs name.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from bot.blocks import flags as flag_messages
from bot.blocks.release import escape
from bot.domain import flag_requests
from bot.domain.actors import Actor
from bot.domain.approval_policy import approvals_text
from bot.domain.command_results import CommandResult
from bot.domain.config import CheckConfig
from bot.domain.flag_requests import FlagRequest, Ramp, describe, needs_approval
from bot.domain.flags import (
    Flag,
    FlagChange,
    FlagsError,
    apply,
    check_request,
    new_flags_ready,
    raises_exposure,
    read_flags,
    site_report,
)
from bot.services import approvers, deploy_windows
from bot.services import deploy_engine as deploys
from bot.services import monitor_health as monitor
from bot.services.adopt_version import LearnNeeds, last_environment_version
from bot.services.clicks import Where, same_message
from bot.services.deploy_engine import EngineNeeds
from bot.services.monitor_health import MonitorNeeds
from bot.services.ports import (
    GitError,
    HasClock,
    HasFlagRequests,
    HasFreezeRecords,
    HasQueue,
    HasRunningReleases,
    HasUserDirectory,
    PushRejected,
)

log = logging.getLogger(__name__)

APPLY = "flag_apply"
REQUEST = "flag_request"
APPROVE_ACTION = "flag_approve"
PUSH_ATTEMPTS = 4


class FlagNeeds(
    EngineNeeds,
    MonitorNeeds,
    HasQueue,
    HasFlagRequests,
    HasUserDirectory,
    HasFreezeRecords,
    Protocol,
):
    """A flag change from the command to the site that runs it: the requests, the approvers,
    the repository, the deploy engine, the queue, the channel, and the monitor (a ramp pauses
    on a critical alert; the site's /flags is read with the health probe)."""


class FlagsReadyNeeds(LearnNeeds, HasClock, HasRunningReleases, Protocol):
    """The "Feature flags ready" gate, run inside a release's deploy."""


# --- reading the flags ---------------------------------------------------------------------


@dataclass(frozen=True)
class FlagsAt:
    sha: str  # the head of the release branch they were read at
    text: str
    flags: dict[str, Flag]


async def read_current(needs: FlagNeeds) -> FlagsAt:
    """The flags file at the head of the release branch, fetched now."""
    snapshot = await needs.git.sync(needs.config.repository.branch)
    text = await needs.git.read_file(snapshot.head_sha, needs.config.flags.path) or ""
    return FlagsAt(snapshot.head_sha, text, read_flags(text, needs.config.flags.path))


# --- a request, from the command to the decision -------------------------------------------


async def start_request(needs: FlagNeeds, request: FlagRequest) -> None:
    """Read the flags, check the request against them, then apply it or ask for approval."""
    actor = request.requested_by
    try:
        current = await read_current(needs)
        flag = current.flags.get(request.name)
        if request.ramp:
            flag_requests.check_ramp(request, flag)
        else:
            check_request(current.text, request.change, needs.config.flags.path)
    except (FlagsError, GitError) as exc:
        await needs.audit_log.audit(
            actor,
            f"flag.{request.operation}",
            outcome="refused",
            reason=f"{request.name}: {exc}"[:1000],
        )
        await needs.chat.answer(request.response_url, flag_messages.problem(str(exc)), str(exc))
        return
    request.before = describe(flag)
    env = needs.config.flags_environment.name
    if request.ramp or raises_exposure(flag, request.change):
        # Showing a feature to more people is a change a closed environment does not take;
        # switching off and lowering (the kill switch) always go through.
        shut = await deploy_windows.closed(needs, env)
        if shut is not None:
            text = deploy_windows.closed_text(needs, env, shut)
            await needs.audit_log.audit(
                actor,
                f"flag.{request.operation}",
                outcome="refused",
                reason=f"{request.name}: {text}"[:1000],
            )
            answer = f"⏸ {text} `{request.name}` was not changed; switching it off still goes."
            await needs.chat.answer(request.response_url, flag_messages.note(answer), answer)
            return
    asks = needs_approval(needs.config, request, flag)
    request.status = "awaiting approval" if asks else "approved"
    if not asks and request.operation == "disable":
        await _kill_switch(needs, request)
        return
    # Recorded before its message (and Approve button) can be seen: a click the moment it
    # shows finds it. Then only where the message is, atomically (a save would overwrite an
    # approval made meanwhile).
    await needs.flag_requests.save(request)
    await _post(needs, request)
    await needs.flag_requests.update(
        request.id, partial(flag_requests.place, channel=request.channel, ts=request.ts)
    )
    await needs.audit_log.audit(
        actor,
        f"flag.{request.operation}",
        outcome=request.status,
        reason=f"{request.name}: {flag_messages.change_words(request)}"[:1000],
    )
    if not asks:
        await go(needs, request)


async def _kill_switch(needs: FlagNeeds, request: FlagRequest) -> None:
    """Switch the flag off before any Slack call: committed and deployed first, then the
    outcome posted through the channel's outbox (paced, kept until Slack takes it), so a
    throttled or unreachable Slack never holds a kill switch back, nor loses its message."""
    await needs.audit_log.audit(
        request.requested_by,
        "flag.disable",
        outcome=request.status,
        reason=f"{request.name}: {flag_messages.change_words(request)}"[:1000],
    )
    await needs.flag_requests.save(request)
    # Before the change: whatever was asked of this flag until now (an approval pending, a
    # ramp going) is void, so nothing turns the flag back on behind the kill switch.
    await needs.flag_requests.mark_killed(request.name, needs.clock())
    if await needs.flag_requests.end_ramp(request.name) is not None:
        await needs.audit_log.audit(
            request.requested_by, "flag.ramp-stop", reason=f"{request.name}: the kill switch"
        )
    await go(needs, request)
    done = await needs.flag_requests.load(request.id) or request
    await needs.chat.reply(
        needs.config.slack.channel,
        "",
        flag_messages.request_message(done, needs.config),
        flag_messages.request_text(done),
    )


async def go(needs: FlagNeeds, request: FlagRequest) -> None:
    """An approved request: a ramp starts, a change is applied (the kill switch right here,
    anything else through the queue)."""
    if request.ramp:
        await start_ramp(needs, request)
    elif request.operation == "disable":
        await apply_request(needs, request.id)
    else:
        config = needs.config
        await needs.queue.enqueue(
            APPLY,
            request_id=request.id,
            key=f"flag-{request.id}",
            retries=1,
            timeout=deploys.job_timeout(
                config, config.flags_environment.timeout_seconds + config.flags.verify_seconds
            ),
            heartbeat=deploys.job_heartbeat(config),
        )


async def approve(needs: FlagNeeds, actor: Actor, request_id: str, where: Where) -> str:
    """Someone clicked Approve on the flag request's message at `where`; returns the private
    answer. Every click is audited, also the ones that change nothing."""
    policy = flag_requests.flag_policy(needs.config)
    found = await needs.flag_requests.load(request_id)
    if found is None:
        return await _refused(needs, actor, f"{request_id}: unknown", "That flag request is gone.")
    if not found.ts:
        return await _refused(
            needs,
            actor,
            f"{request_id}: its message is being posted",
            "That flag request's message is still being posted; click again in a moment.",
        )
    if not same_message(where, found.channel, found.ts):
        return await _refused(
            needs,
            actor,
            f"{request_id}: not on the request's message",
            "This button is not on the flag request's message; use the one there.",
        )
    if (void := await _voided(needs, found)) is not None:
        return await _refused(needs, actor, f"{found.name}: voided by the kill switch", f"{void}")
    # Asked before the atomic update: it may wait for Slack, and nothing else may then.
    try:
        eligible = await approvers.is_approver(needs, policy, actor.user_id)
    except approvers.MembershipNotChecked as exc:
        return await _refused(needs, actor, f"{request_id}: {exc}", f"{exc}.")
    decided = await needs.flag_requests.update(
        request_id,
        partial(
            flag_requests.approve,
            policy=policy,
            user_id=actor.user_id,
            user_name=actor.user_name,
            now=needs.clock(),
            is_approver=eligible,
        ),
    )
    if decided is None:
        return await _refused(needs, actor, f"{request_id}: unknown", "That flag request is gone.")
    request, verdict = decided
    if verdict.refused == "not open":
        return await _refused(
            needs,
            actor,
            f"{request.name}: {request.status}",
            f"That request is {request.status} already; nothing to approve.",
        )
    if verdict.refused == "own request":
        return await _refused(
            needs,
            actor,
            f"{request.name}: own request",
            "You asked for this change; someone else has to approve it.",
        )
    if verdict.refused == "not an approver":
        return await _refused(
            needs,
            actor,
            f"{request_id}: not an approver",
            "You are not one of the approvers of flag changes.",
        )
    if verdict.refused == "already approved":
        await needs.audit_log.audit(
            actor, "flag.approve", outcome="duplicate", reason=f"{request.name}: approved already"
        )
        return "You approved it already."
    await needs.audit_log.audit(
        actor,
        "flag.approve",
        reason=f"{request.name}: {flag_messages.change_words(request)}"[:1000],
    )
    await _redraw(needs, request)
    await _thread(needs, request, f"👍 approved by <@{actor.user_id}>.")
    if verdict.met:
        await go(needs, request)
        return f"Approved; {flag_messages.change_words(request)} is going ahead."
    return f"Approved; {approvals_text(verdict.missing, more=True)} needed."


async def cancel(needs: FlagNeeds, actor: Actor, request_id: str, where: Where) -> str:
    """The Cancel click on a flag request's message at `where`: who asked for it, or an
    approver of flag changes, calls it off while it waits; returns the private answer."""
    found = await needs.flag_requests.load(request_id)
    if found is None or not same_message(where, found.channel, found.ts):
        return await _refused(
            needs, actor, f"{request_id}: not on its message", "That flag request is gone."
        )
    try:
        may = actor.user_id == found.requester or await approvers.is_approver(
            needs, needs.config.flags.policy, actor.user_id
        )
    except approvers.MembershipNotChecked as exc:
        return await _refused(needs, actor, f"{found.name}: {exc}", f"{exc}.")
    decided = await needs.flag_requests.update(
        request_id, partial(flag_requests.cancel, user_name=actor.user_name, may=may)
    )
    if decided is None:
        return await _refused(needs, actor, f"{request_id}: unknown", "That flag request is gone.")
    request, refusal = decided
    if refusal is not None:
        await needs.audit_log.audit(
            actor, "flag.cancel", outcome="refused", reason=f"{request.name}: {refusal}"
        )
        return f"You cannot cancel this: {refusal}."
    await needs.audit_log.audit(actor, "flag.cancel", reason=f"{request.name}: cancelled")
    await _redraw(needs, request)
    return f"You cancelled the request to {flag_messages.change_words(request)}."


async def _voided(needs: FlagNeeds, request: FlagRequest) -> str | None:
    """Why `request` may no longer go out: the kill switch turned its flag off after it was
    asked (a ramp's step counts from its ramp's request); None if it may."""
    if request.operation == "disable":
        return None
    killed = await needs.flag_requests.killed_at(request.name)
    asked = request.created_at
    if request.parent:
        parent = await needs.flag_requests.load(request.parent)
        asked = parent.created_at if parent is not None else asked
    if not flag_requests.voided(request, killed, asked):
        return None
    return (
        f"This was voided: the kill switch turned `{request.name}` off after it was asked. "
        "Ask again if it is still wanted."
    )


async def _refused(needs: FlagNeeds, actor: Actor, reason: str, answer: str) -> str:
    """Audit an Approve click that was not acted on; returns the answer for the person."""
    await needs.audit_log.audit(actor, "flag.approve", outcome="refused", reason=reason[:500])
    return answer


# --- applying a change ---------------------------------------------------------------------


class Conflict(Exception):
    pass


async def commit_change(
    needs: FlagNeeds, request: FlagRequest, actor: Actor, based_on: FlagsAt | None = None
) -> tuple[str, str]:
    """Commit the change and push it; returns (commit sha, the new file text).

    A push that loses the race is retried on top of the newer commit, unless that commit
    changed this very flag: then Conflict, and their change stands."""
    flags_cfg, repo = needs.config.flags, needs.config.repository
    current = based_on or await read_current(needs)
    base = current.flags.get(request.name)
    author = (actor.user_name or actor.user_id, f"{actor.user_id}@slack.invalid")
    for attempt in range(PUSH_ATTEMPTS):
        if attempt:
            current = await read_current(needs)
            if current.flags.get(request.name) != base:
                now = describe(current.flags.get(request.name))
                raise Conflict(
                    f"someone changed `{request.name}` meanwhile (it is {now} "
                    "now), so I did not overwrite it"
                )
        text = apply(current.text, request.change, flags_cfg.path)
        if request.enable:
            text = apply(text, FlagChange("enable", request.name), flags_cfg.path)
        message = (
            f"Flag {request.name}: {flag_messages.change_words(request)}\n\n"
            f"Requested in Slack by {actor.user_name} ({actor.user_id}) via releasebot"
            + "".join(f"\nApproved-by: <{a.user_id}>" for a in request.approvals)
        )
        try:
            sha = await needs.git.commit_file(
                repo.branch, current.sha, flags_cfg.path, text, message, author
            )
        except PushRejected:
            log.info("flag push lost the race (attempt %d); retrying on top", attempt + 1)
            continue
        return sha, text
    raise GitError(f"the push kept losing to newer commits ({PUSH_ATTEMPTS} tries)")


async def apply_request(needs: FlagNeeds, request_id: str, job: Any = None) -> bool:
    """Commit, deploy and verify an approved request. True when it is live. `job` is the saq
    job it runs in, if any (the kill switch and ramp steps run without one)."""
    request = await needs.flag_requests.load(request_id)
    if request is None or request.status not in ("approved", "ramping"):
        return False
    request.status = "applying"
    await needs.flag_requests.save(request)
    try:
        return await _apply(needs, request, request.requested_by, job)
    except Exception as exc:  # never leave a request "applying" without a word
        return await _unexpected(needs, request, exc)


async def _apply(needs: FlagNeeds, request: FlagRequest, actor: Actor, job: Any) -> bool:
    environment = needs.config.flags_environment.name
    if (void := await _voided(needs, request)) is not None:
        return await _fail(needs, request, actor, void, "voided")
    try:
        sha, text = await commit_change(needs, request, actor)
    except (Conflict, FlagsError, GitError) as exc:
        return await _fail(
            needs,
            request,
            actor,
            f"I did not change the flag: {exc}.",
            "conflict" if isinstance(exc, Conflict) else "failed",
        )
    request.commit = sha
    expected = read_flags(text, needs.config.flags.path)[request.name]
    request.after = expected.summary
    await needs.audit_log.audit(
        actor,
        "flag.commit",
        environment=environment,
        reason=f"{request.name}: {request.before} → {request.after} in {sha[:10]}",
    )
    await _thread(
        needs,
        request,
        f"📝 Committed `{sha[:10]}`: `{request.name}` {request.before} → {request.after}.",
    )
    result = await deploy_flags(needs, request, text, job)
    latest = await deploys.durably(
        needs, f"flag request {request.id}", needs.flag_requests.load, request.id
    )
    if latest is not None and latest.lost:
        await _thread(
            needs,
            request,
            "↩️ The deploy was reported lost while its worker "
            "was cut off from Redis; the worker is back, and "
            "what follows is what really happened.",
        )
    if not result.ok:
        return await _fail(
            needs,
            request,
            actor,
            f"The flag deploy {escape(result.summary())}; the commit is in the "
            "repository and goes out with the next deploy.",
            "failed",
        )
    verified = await verify(needs, request.name, expected)
    request.status = "done"
    request.detail = verified
    await needs.flag_requests.save(request)
    await needs.audit_log.audit(
        actor,
        "flag.deploy",
        environment=environment,
        outcome="succeeded",
        reason=f"{request.name}: {request.after}; {verified}",
    )
    await _thread(
        needs, request, f"✅ Deployed to *{environment}* in {result.duration:.1f}s. {verified}"
    )
    await _redraw(needs, request)  # last: a message that says "done" has its details
    return True


async def _fail(
    needs: FlagNeeds, request: FlagRequest, actor: Actor, text: str, status: str
) -> bool:
    request.status, request.detail = status, text
    await needs.flag_requests.save(request)
    await needs.audit_log.audit(
        actor, "flag.apply", outcome=status, reason=f"{request.name}: {text}"[:1000]
    )
    await _thread(needs, request, f"⚠️ {text}")
    await _redraw(needs, request)
    return False


async def deploy_flags(
    needs: FlagNeeds, request: FlagRequest, text: str, job: Any = None
) -> CommandResult:
    """The flag deploy: by default the environment's deploy of the version it runs, with the
    new flags file; `flags.deploy_command` instead, in a checkout of the flag commit."""
    config = needs.config
    env = config.flags_environment
    running_now = (await needs.running_releases.environment_versions([env.name]))[env.name]
    custom = config.flags.deploy_command
    ref = request.commit if custom or not running_now.get("tag") else running_now["tag"]

    async def stopped(detail: str) -> None:
        await report_lost(needs, request.id, detail)

    target = deploys.Target(
        kind="flags",
        deploy_id=f"flags:{request.id}",
        environment=env,
        subject=request.id,
        holder=request.requester,
        reason=f"flag {request.name}: {request.after}",
        on_stopped=stopped,
    )
    command_env = {
        "RELEASE_ENV": env.name,
        "RELEASE_VERSION": running_now.get("version", ""),
        "RELEASE_TAG": running_now.get("tag", ""),
        "RELEASE_SHA": running_now.get("sha", request.commit),
        "FLAG_NAME": request.name,
        "FLAG_STATE": request.after,
        "FLAGS_COMMIT": request.commit,
    }
    try:
        async with deploys.deploying(needs, target, job) as running:
            try:
                await running.checkout_with_file(ref, config.flags.path, text)
            except GitError as exc:
                return deploys.checkout_failed(ref, exc)
            if not custom:
                return await running.deploy(command_env)
            # Its own deploy command gets [flags]'s env on top of the environment's.
            given = env.command_env + config.flags.command_env
            return await running.run(custom, command_env, given, env.timeout_seconds)
    except deploys.EnvironmentBusy as exc:
        return CommandResult(
            exit_code=None,
            timed_out=False,
            duration=0.0,
            tail="",
            error=f"could not start: {env.name} is held by {exc.info.holder} ({exc.info.reason})",
        )
    except deploys.GivenUp as exc:
        return CommandResult(
            exit_code=None, timed_out=False, duration=0.0, tail="", error=f"not run: {exc}"
        )


async def report_lost(needs: FlagNeeds, request_id: str, detail: str) -> bool:
    """The worker deploying this flag change died (or is shutting down): the request failed,
    in its thread and the audit trail; never re-run. False if it is not being applied."""
    request = await needs.flag_requests.load(request_id)
    if request is None or request.status != "applying":
        return False
    request.status, request.lost = "failed", True
    request.detail = (
        f"The flag deploy did not finish ({detail}); the commit "
        f"`{request.commit[:10]}` is in the repository and goes out with the next "
        "deploy."
    )
    await needs.flag_requests.save(request)
    await needs.audit_log.audit(
        request.requested_by,
        "flag.deploy",
        environment=needs.config.flags_environment.name,
        outcome="failed",
        reason=f"{request.name}: {detail}"[:1000],
    )
    await _thread(needs, request, f"⚠️ {request.detail}")
    await _redraw(needs, request)
    return True


async def verify(needs: FlagNeeds, name: str, expected: Flag) -> str:
    """Ask the site's /flags whether it runs the new state (for a while: it may restart)."""
    env, cfg = needs.config.flags_environment, needs.config.flags
    if not env.url:
        return "(No url for the environment, so its /flags was not checked.)"
    check = CheckConfig(name="flags", url=env.url.rstrip("/") + cfg.endpoint, timeout_seconds=5.0)
    deadline = needs.clock() + cfg.verify_seconds
    while True:
        observed = (await needs.health_probe.observe_all([check]))[0]
        if observed.status is None:
            seen = f"no answer ({observed.error})"
        else:
            try:
                seen, matches = site_report(observed.body, name, expected)
            except ValueError as exc:
                seen = f"no answer ({type(exc).__name__})"
            else:
                if matches:
                    return f"{cfg.endpoint} reports `{name}` {seen}."
        if needs.clock() >= deadline:
            return (
                f"⚠️ {cfg.endpoint} still reports {seen} after "
                f"{cfg.verify_seconds:g}s; expected {expected.summary}."
            )
        await asyncio.sleep(min(1.0, cfg.verify_seconds / 10))


# --- ramps ---------------------------------------------------------------------------------


async def start_ramp(needs: FlagNeeds, request: FlagRequest) -> None:
    ramp = flag_requests.ramp_of(request, needs.clock())
    request.status = "ramping"
    await needs.flag_requests.save(request)
    await needs.flag_requests.start_ramp(ramp)
    await _redraw(needs, request)
    await _thread(
        needs,
        request,
        f"📈 Ramp started: {_steps(ramp)}, one step every "
        f"{flag_messages.duration(ramp.every_seconds)}, while "
        f"*{needs.config.flags_environment.name}* has no "
        "critical alert.",
    )


def _steps(ramp: Ramp) -> str:
    return " → ".join(
        f"*{p}%*" if i == ramp.next_step else f"{p}%" for i, p in enumerate(ramp.steps)
    )


async def stop_ramp(needs: FlagNeeds, actor: Actor, name: str) -> str:
    ramp = await needs.flag_requests.end_ramp(name)
    if ramp is None:
        return f"`{name}` has no ramp going."
    await needs.audit_log.audit(
        actor,
        "flag.ramp-stop",
        reason=f"{name} before step {ramp.next_step + 1} of {len(ramp.steps)}",
    )
    request = await needs.flag_requests.load(ramp.request)
    if request is not None:
        request.status = "stopped"
        await needs.flag_requests.save(request)
        await _redraw(needs, request)
        await _thread(needs, request, f"⏹ <@{actor.user_id}> stopped the ramp.")
    return f"Stopped the ramp of `{name}`; it stays where it is."


async def critical_alert(needs: FlagNeeds, environment: str) -> str:
    """An open critical incident in `environment`, in words, or ""."""
    for incident in await monitor.open_incidents(needs, environment):
        if incident.critical:
            return f"CRITICAL · {environment} · {incident.problem}"
    return ""


async def advance_ramps(needs: FlagNeeds) -> None:
    """The scheduler's tick: each ramp that is due takes its next step, unless the flag's
    environment has a critical alert (the ramp pauses, and says so) or someone changed the
    flag by hand (the ramp stops: people decide now)."""
    ramps = needs.flag_requests
    env = needs.config.flags_environment.name
    for name in await ramps.ramp_names():
        ramp = await ramps.ramp(name)  # fresh: a stop may have come meanwhile
        if ramp is None:
            continue
        now = needs.clock()
        if now < ramp.next_at:
            continue
        request = await ramps.load(ramp.request)
        if request is None:
            await ramps.end_ramp(name)
            continue
        alert = await critical_alert(needs, env)
        shut = await deploy_windows.closed(needs, env)
        if shut is not None and not alert:
            # A closed environment takes no step that shows the feature to more people.
            alert = deploy_windows.closed_text(needs, env, shut)
        if alert:
            if ramp.paused_by != alert:
                ramp.paused_by = alert
                if await ramps.save_ramp(ramp):
                    await _thread(
                        needs,
                        request,
                        f"⏸ Ramp paused before {ramp.steps[ramp.next_step]}%: {alert}",
                    )
            continue
        if ramp.paused_by:
            ramp.paused_by = ""
            await _thread(needs, request, "▶️ What paused it is over; the ramp goes on.")
        current = (await read_current(needs)).flags.get(ramp.name)
        if current is None or current.summary != ramp.expect:
            await ramps.end_ramp(name)
            await _thread(
                needs,
                request,
                f"⏹ Ramp stopped: `{ramp.name}` was changed by "
                f"hand (it is {describe(current)}, the ramp "
                f"left it {ramp.expect}).",
            )
            continue
        step = flag_requests.next_step(ramp, request, now=now, before=current.summary)
        await ramps.save(step)
        ok = await apply_request(needs, step.id)
        latest = await ramps.load(step.id)
        if not ok or latest is None:
            await ramps.end_ramp(name)
            await _thread(needs, request, "⏹ Ramp stopped: that step did not go out.")
            continue
        ramp.expect = request.after = latest.after
        await ramps.save(request)
        await _redraw(needs, request)
        ramp.next_step += 1
        ramp.next_at = needs.clock() + ramp.every_seconds
        if ramp.next_step >= len(ramp.steps):
            await ramps.end_ramp(name)
            request.status = "done"
            request.after = latest.after
            await ramps.save(request)
            await _redraw(needs, request)
            await _thread(needs, request, f"🏁 Ramp finished: `{ramp.name}` is {latest.after}.")
        elif await ramps.save_ramp(ramp):  # not stopped meanwhile
            await _thread(
                needs,
                request,
                f"📈 Next: {_steps(ramp)} in {flag_messages.duration(ramp.every_seconds)}.",
            )


# --- the "Feature flags ready" gate ---------------------------------------------------------


async def flags_ready(needs: FlagsReadyNeeds, worktree: Path) -> CommandResult:
    """New flags in the candidate start off, at 0% (compared with what production runs)."""
    config, started = needs.config, needs.clock()
    path = config.flags.path
    candidate_file = worktree / path
    candidate_text = await asyncio.to_thread(
        lambda: candidate_file.read_text("utf-8") if candidate_file.exists() else ""
    )
    live = await last_environment_version(needs)
    live_text = await _flags_file_at(needs, live["tag"], path) if live.get("tag") else ""
    try:
        problems = new_flags_ready(
            read_flags(candidate_text, path), read_flags(live_text or "", path)
        )
    except FlagsError as exc:
        problems = [str(exc)]
    took = needs.clock() - started
    if problems:
        return CommandResult(exit_code=1, timed_out=False, duration=took, tail="\n".join(problems))
    return CommandResult(
        exit_code=0, timed_out=False, duration=took, tail="every new flag starts off, at 0%"
    )


async def _flags_file_at(needs: FlagsReadyNeeds, ref: str, path: str) -> str:
    """The flags file as production has it: at `path`, or, if it was elsewhere then (a
    repository moved `data/` to `packages/site/data/`), the one file of that name there."""
    text = await needs.git.read_file(ref, path)
    if text is not None:
        return text
    elsewhere = await needs.git.paths_named(ref, path.rsplit("/", 1)[-1])
    if len(elsewhere) == 1:
        return await needs.git.read_file(ref, elsewhere[0]) or ""
    return ""


# --- messages ------------------------------------------------------------------------------


async def _post(needs: FlagNeeds, request: FlagRequest) -> None:
    channel = needs.config.slack.channel
    posted = await needs.chat.post(
        channel,
        flag_messages.request_message(request, needs.config),
        flag_messages.request_text(request),
    )
    request.channel = str((posted or {}).get("channel", channel))
    request.ts = str((posted or {}).get("ts", ""))


async def _redraw(needs: FlagNeeds, request: FlagRequest) -> None:
    if not request.ts or request.parent:  # a ramp's step: the ramp's message is redrawn
        return
    # A failure is logged by the chat port; the thread still tells.
    await needs.chat.update(
        request.channel,
        request.ts,
        flag_messages.request_message(request, needs.config),
        flag_messages.request_text(request),
    )


async def _thread(needs: FlagNeeds, request: FlagRequest, text: str) -> None:
    if request.ts:
        # Through the channel's outbox (paced, kept until Slack takes it), like every reply.
        await needs.chat.reply(request.channel, request.ts, flag_messages.note(text), text)


async def _unexpected(needs: FlagNeeds, request: FlagRequest, exc: Exception) -> bool:
    log.exception("flag request %s failed", request.id, exc_info=exc)
    return await _fail(
        needs,
        request,
        request.requested_by,
        f"Something went wrong ({type(exc).__name__}: {exc}); check the "
        "repository before trying again.",
        "failed",
    )


async def enqueue_request(needs: FlagNeeds, request: FlagRequest, request_key: str) -> None:
    await needs.queue.enqueue(
        REQUEST, request=request.to_dict(), key=f"flagreq-{request_key}", timeout=3600, retries=1
    )
