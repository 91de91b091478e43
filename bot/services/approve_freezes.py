"""Freezes that wait for approvals: `/release freeze` when [freeze] required is above 0.

The request is recorded (audited `freeze.ask`), the asker's own approval counted if they are
a [freeze] approver (a freeze only stops changes, so that is safe, as for rollbacks), and,
unless that was enough, a request message with Approve / Reject posted in the release channel.
The freeze holds from the approval that completes the policy until its `until` (that approval
writes it, atomically with the request and its audit entries: bot.adapters.redis.
freeze_requests). A Reject by an approver (or the asker) ends the request; unapproved, it
expires at its time (a job queued for then; a click after it finds it expired too).

A click counts only from someone the policy names, on the request's own message, once; every
other click is answered privately and audited as refused, and changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Protocol

from bot.blocks import freezes as freeze_messages
from bot.blocks import release as messages
from bot.domain import freeze_requests
from bot.domain.actors import BOT, Actor
from bot.domain.approval_policy import approvals_text
from bot.domain.approvals import NoChange, Refusal
from bot.domain.config import ApprovalPolicy
from bot.domain.freeze_requests import Audited, Expired, FreezeRequest, TimeLeft
from bot.services.approvers import MembershipNotChecked, approver_without_asking, is_approver
from bot.services.clicks import Where, same_message
from bot.services.freeze_environments import opening_of
from bot.services.ports import (
    HasAuditLog,
    HasChat,
    HasClock,
    HasConfig,
    HasFreezeRecords,
    HasFreezeRequests,
    HasQueue,
    HasUserDirectory,
)

log = logging.getLogger(__name__)

EXPIRE = "freeze_request_expire"  # the job that expires a request at its time


class FreezeRequestNeeds(
    HasConfig,
    HasClock,
    HasFreezeRequests,
    HasFreezeRecords,
    HasUserDirectory,
    HasChat,
    HasQueue,
    HasAuditLog,
    Protocol,
):
    """The requests, the freezes (to say when the environment opens), who approves
    ([freeze]), the release channel, the queue (a request's expiry), the audit trail."""


@dataclass(frozen=True)
class Asked:
    """The answer to whoever asked, and what is done after the ack (Slack's Web API is never
    called before one)."""

    text: str
    after: Callable[[], Awaitable[None]] | None = None


def _zone(needs: FreezeRequestNeeds) -> str:
    return needs.config.freeze.timezone


def _until(needs: FreezeRequestNeeds, request: FreezeRequest) -> str:
    return freeze_messages.when(request.until, _zone(needs))


async def ask(
    needs: FreezeRequestNeeds,
    actor: Actor,
    environment: str,
    until: datetime,
    reason: str,
    response_url: str | None,
) -> Asked:
    """Record a request to freeze `environment` until `until` (aware, in the future: the
    parser's `freeze_until`). Redis only before the ack; UnknownEnvironment for a name that
    is none."""
    needs.config.check_environment(environment)
    request = freeze_requests.new_request(
        environment=environment,
        until=until.timestamp(),
        reason=reason,
        requester=actor.user_id,
        requester_name=actor.user_name,
        now=needs.clock(),
        request_hours=needs.config.freeze.request_hours,
    )
    shown = _until(needs, request)
    await needs.freeze_requests.create(
        request, actor, Audited("freeze.ask", f"until {shown}: {reason}")
    )
    policy = freeze_requests.freeze_policy(needs.config)
    approves = approver_without_asking(policy, actor.user_id)
    if approves is None:
        # Only a user group can say whether the asker's approval counts, and Slack may take
        # longer than an ack can wait: that, and the rest, after the ack.
        return Asked(
            f"🧊 Freeze of *{environment}* until {shown} asked. I am checking whether your own "
            "approval counts (an approver user group); then it holds, or its request is "
            f"posted in {messages.channel_ref(needs.config.slack.channel)} for the approvals "
            "it still needs.",
            after=partial(_own_after_ack, needs, request, actor, response_url),
        )
    return await _own_then_answer(needs, request, actor, approves, response_url)


async def _own_after_ack(
    needs: FreezeRequestNeeds,
    request: FreezeRequest,
    actor: Actor,
    response_url: str | None,
) -> None:
    try:
        approves = await is_approver(
            needs, freeze_requests.freeze_policy(needs.config), actor.user_id
        )
    except MembershipNotChecked as exc:
        # Not counted (audited as refused); the request waits for the approvals it needs.
        await needs.audit_log.audit(
            actor,
            "freeze.approve",
            environment=request.environment,
            outcome="refused",
            reason=str(exc)[:500],
        )
        approves = False
    asked = await _own_then_answer(needs, request, actor, approves, response_url)
    await needs.chat.answer(response_url, messages.note(asked.text), asked.text)
    if asked.after is not None:
        await asked.after()


async def _own_then_answer(
    needs: FreezeRequestNeeds,
    request: FreezeRequest,
    actor: Actor,
    approves: bool,
    response_url: str | None,
) -> Asked:
    policy = freeze_requests.freeze_policy(needs.config)
    shown, env = _until(needs, request), request.environment
    if approves:
        done = await needs.freeze_requests.update(
            request.id, _approval(needs, policy, actor, is_approver=True), actor
        )
        if done is not None:
            request = done[0]
    if request.status == "set":
        announcement = await _set_announcement(needs, request)
        return Asked(
            f"🧊 *{env}* is frozen until {shown}: {messages.escape(request.reason)} (your "
            "approval was the one it needed). Promotions, release deploys and flag rollouts "
            f"to it wait; `/release unfreeze {env}` ends it early.",
            after=partial(_tell_channel, needs, announcement),
        )
    mine = " (yours counts)" if approves else ""
    return Asked(
        f"🧊 Asked to freeze *{env}* until {shown}. It waits for "
        f"{approvals_text(policy.required)} of [freeze] approvers{mine}, "
        f"{freeze_requests.missing(request, policy)} more to go, on the request in "
        f"{messages.channel_ref(needs.config.slack.channel)}; it holds only once they are in. "
        "Unapproved, it expires at "
        f"{freeze_messages.when(request.expires_at, _zone(needs))}.",
        after=partial(_post, needs, request, response_url),
    )


async def _post(
    needs: FreezeRequestNeeds, request: FreezeRequest, response_url: str | None
) -> None:
    """The request's message in the release channel, where it is recorded (its buttons
    count only there), and its expiry queued for its time. When Slack will not take it,
    nobody could approve it: it ends at once, and the asker is told."""
    text, blocks = _rendered(needs, request)
    channel = needs.config.slack.channel
    posted = await needs.chat.post(channel, blocks, text)
    if not posted or not posted.get("ts"):
        with contextlib.suppress(NoChange):
            await needs.freeze_requests.update(
                request.id, partial(freeze_requests.unposted, now=needs.clock()), BOT
            )
        told = (
            f"Slack would not take the freeze request's message in "
            f"{messages.channel_ref(channel)}, so nobody could approve it: it is withdrawn and "
            f"*{request.environment}* is not frozen. Ask again in a minute."
        )
        await needs.chat.answer(response_url, messages.problem(told), told)
        return
    await needs.freeze_requests.update(
        request.id,
        partial(
            freeze_requests.placed,
            channel=str(posted.get("channel") or channel),
            ts=str(posted["ts"]),
        ),
        BOT,
    )
    await _queue_expiry(needs, request.id, int(request.expires_at) + 1)


async def _queue_expiry(needs: FreezeRequestNeeds, request_id: str, at: int) -> None:
    await needs.queue.enqueue(
        EXPIRE,
        request_id=request_id,
        key=f"freeze-expire-{request_id}-{at}",
        scheduled=at,
        retries=1,
        timeout=60,
    )


def _rendered(
    needs: FreezeRequestNeeds, request: FreezeRequest
) -> tuple[str, list[messages.Block]]:
    return freeze_messages.request_message(
        request, freeze_requests.freeze_policy(needs.config), _zone(needs)
    )


async def _redraw(needs: FreezeRequestNeeds, request: FreezeRequest) -> None:
    if request.ts:
        text, blocks = _rendered(needs, request)
        await needs.chat.update(request.channel, request.ts, blocks, text)


async def _tell_channel(needs: FreezeRequestNeeds, text: str) -> None:
    # Through the channel's outbox: kept until Slack takes it, never dropped after retries.
    await needs.chat.reply(needs.config.slack.channel, "", messages.note(text), text)


async def _set_announcement(needs: FreezeRequestNeeds, request: FreezeRequest) -> str:
    now = datetime.fromtimestamp(needs.clock(), UTC)
    opening = await opening_of(needs, request.environment, now)
    approved = ", ".join(messages.mention(a.user_id) for a in request.approvals)
    return (
        f"🧊 *{request.environment}* is frozen until {_until(needs, request)}: "
        f"{messages.escape(request.reason)} (asked by {messages.mention(request.requester)}, "
        f"approved by {approved}). It {opening}."
    )


# --- clicks on the request's message ---------------------------------------------------------


async def _refused(
    needs: FreezeRequestNeeds,
    actor: Actor,
    action: str,
    request: FreezeRequest | None,
    reason: str,
    answer: str,
    outcome: str = "refused",
) -> str:
    """Audit a click that changed nothing; returns the answer for the person."""
    await needs.audit_log.audit(
        actor,
        action,
        environment=request.environment if request is not None else "",
        outcome=outcome,
        reason=reason[:500],
    )
    return answer


async def _clicked(
    needs: FreezeRequestNeeds, actor: Actor, action: str, request_id: str, where: Where
) -> FreezeRequest | str:
    """The request a click on `where` acts on, or the answer that it acts on none."""
    request = await needs.freeze_requests.load(request_id)
    if request is None:
        return await _refused(
            needs,
            actor,
            action,
            None,
            f"{request_id}: unknown",
            "That freeze request is gone (it ended a while ago); nothing changed.",
        )
    if not request.ts:
        return await _refused(
            needs,
            actor,
            action,
            request,
            f"{request_id}: its message is being posted",
            "That freeze request's message is still being posted; click again in a moment.",
        )
    if not same_message(where, request.channel, request.ts):
        return await _refused(
            needs,
            actor,
            action,
            request,
            f"{request_id}: not on the request's message",
            "This button is not on the freeze request's message; nothing changed. Use the one "
            "there.",
        )
    return request


async def approve(needs: FreezeRequestNeeds, actor: Actor, request_id: str, where: Where) -> str:
    """Approve on the freeze request's message at `where`; returns the private answer. The
    approval that completes [freeze]'s count sets the freeze."""
    found = await _clicked(needs, actor, "freeze.approve", request_id, where)
    if isinstance(found, str):
        return found
    policy = freeze_requests.freeze_policy(needs.config)
    try:
        # Asked before the atomic update: it may wait for Slack, and nothing else may then.
        eligible = await is_approver(needs, policy, actor.user_id)
    except MembershipNotChecked as exc:
        return await _refused(needs, actor, "freeze.approve", found, str(exc), f"{exc}.")
    request = await _decide(
        needs,
        actor,
        "freeze.approve",
        found,
        _approval(needs, policy, actor, is_approver=eligible),
    )
    if isinstance(request, str):
        return request
    if request.status == "set":
        await _tell_channel(needs, await _set_announcement(needs, request))
        return (
            f"You approved: *{request.environment}* is frozen now, until {_until(needs, request)}."
        )
    return (
        f"You approved the freeze of *{request.environment}*; it needs "
        f"{approvals_text(freeze_requests.missing(request, policy), more=True)}."
    )


async def reject(needs: FreezeRequestNeeds, actor: Actor, request_id: str, where: Where) -> str:
    """Reject on the freeze request's message at `where`: an approver (or who asked) ends
    it, with no freeze; returns the private answer."""
    found = await _clicked(needs, actor, "freeze.reject", request_id, where)
    if isinstance(found, str):
        return found
    try:
        may = actor.user_id == found.requester or await is_approver(
            needs, freeze_requests.freeze_policy(needs.config), actor.user_id
        )
    except MembershipNotChecked as exc:
        return await _refused(needs, actor, "freeze.reject", found, str(exc), f"{exc}.")
    request = await _decide(
        needs,
        actor,
        "freeze.reject",
        found,
        partial(freeze_requests.reject, user_id=actor.user_id, now=needs.clock(), may=may),
    )
    if isinstance(request, str):
        return request
    await _tell_channel(
        needs,
        f"❌ {messages.mention(actor.user_id)} rejected the freeze of *{request.environment}* "
        f"asked by {messages.mention(request.requester)}; it is not frozen.",
    )
    return f"You rejected the freeze of *{request.environment}*; it is not frozen."


def _approval(
    needs: FreezeRequestNeeds, policy: ApprovalPolicy, actor: Actor, *, is_approver: bool
) -> Callable[[FreezeRequest], list[Audited]]:
    """`actor`'s approval, now, as the transition the request's update applies: the asker's
    own when they ask, or a click."""
    return partial(
        freeze_requests.approve,
        policy=policy,
        user_id=actor.user_id,
        user_name=actor.user_name,
        now=needs.clock(),
        is_approver=is_approver,
    )


async def _decide(
    needs: FreezeRequestNeeds,
    actor: Actor,
    action: str,
    found: FreezeRequest,
    change: Callable[[FreezeRequest], list[Audited]],
) -> FreezeRequest | str:
    """`actor`'s click (`action`: freeze.approve or freeze.reject) applied to the request
    atomically, its message redrawn; or, when it changed nothing, the private answer why
    (audited as refused, or as duplicate when the request was decided already)."""
    verb = action.removeprefix("freeze.")
    try:
        done = await needs.freeze_requests.update(found.id, change, actor)
    except Expired:
        return await _expired_click(needs, actor, action, found)
    except NoChange as exc:
        return await _refused(
            needs, actor, action, found, str(exc), f"Nothing changed: {exc}.", "duplicate"
        )
    except Refusal as exc:
        return await _refused(
            needs, actor, action, found, str(exc), f"You cannot {verb} this: {exc}."
        )
    if done is None:
        return "That freeze request is gone (it ended a while ago); nothing changed."
    request, _ = done
    await _redraw(needs, request)
    return request


async def _expired_click(
    needs: FreezeRequestNeeds, actor: Actor, action: str, request: FreezeRequest
) -> str:
    """A click that found the request's time up: the request expires now (if the job has not
    done it yet), and the click counts for nothing."""
    await expire(needs, request.id)
    return await _refused(
        needs,
        actor,
        action,
        request,
        f"{request.id}: expired",
        f"This freeze request expired at {freeze_messages.when(request.expires_at, _zone(needs))} "
        f"before it had its approvals, so *{request.environment}* was not frozen and nothing "
        "changed. Ask again with `/release freeze` if it is still needed.",
    )


async def expire(needs: FreezeRequestNeeds, request_id: str) -> bool:
    """The request's time is up: it ends unapproved (audited as the bot's), its message loses
    its buttons, and the channel is told. False when it had ended otherwise, or has time
    left (the job ran early: its clock is not the bot's; it is queued again for then)."""
    try:
        done = await needs.freeze_requests.update(
            request_id, partial(freeze_requests.expire, now=needs.clock()), BOT
        )
    except TimeLeft:
        request = await needs.freeze_requests.load(request_id)
        if request is not None:
            # What is left by the bot's clock, from now by the queue's (the two may differ).
            left = max(1.0, request.expires_at - needs.clock())
            await _queue_expiry(needs, request_id, int(time.time() + left) + 1)
        return False
    except NoChange:
        return False
    if done is None:
        return False
    request, _ = done
    await _redraw(needs, request)
    await _tell_channel(
        needs,
        f"⌛ The freeze of *{request.environment}* asked by "
        f"{messages.mention(request.requester)} expired without its approvals; it is not "
        "frozen.",
    )
    return True
