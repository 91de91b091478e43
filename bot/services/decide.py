"""People's decisions on a release's gates: approve and reject, each one atomic and audited.

The rules are in bot.domain.approvals; this applies them through the store (so a double click or two
replicas receiving one click make one change), resolves who is an approver, and reports in the
release's thread. Every click is audited: applied, duplicate, or refused with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from bot.blocks import release as messages
from bot.domain import approvals
from bot.domain.actors import Actor
from bot.domain.approval_policy import approvals_text
from bot.domain.approvals import NoChange, Refusal
from bot.domain.releases import Gate, Release, TransitionError
from bot.services.approvers import is_approver
from bot.services.clicks import Where, same_message
from bot.services.ports import HasChat, HasConfig, HasStore, HasUserDirectory


class DecisionNeeds(HasConfig, HasStore, HasChat, HasUserDirectory, Protocol):
    """Approve/Reject on a gate."""


async def _target(
    services: DecisionNeeds, version: str, gate_id: str, where: Where
) -> tuple[Release, Gate, str]:
    release = await services.store.get_release(version)
    if release is None:
        raise Refusal(f"there is no release {version} any more")
    if not same_message(where, release.channel, release.message_ts):
        # A decision counts only from the buttons of the release's own message.
        raise Refusal(
            f"this button is not on the release message of {release.tag}; use the buttons there"
        )
    gate = release.gate(gate_id)
    nxt = services.config.next_environment(gate.stage)
    return release, gate, nxt.name if nxt else gate.stage


async def may_decide(
    services: DecisionNeeds, actor: Actor, version: str, gate_id: str, where: Where
) -> str | None:
    """Why `actor` may not decide on this gate now (None if they may): checked before a
    Reject form is opened, so nobody fills one in for nothing."""
    try:
        release, gate, _ = await _target(services, version, gate_id, where)
        policy = services.config.release_policy(release.kind, gate.stage)
        approvals.reject(
            Release.from_json(release.to_json()),
            gate_id,
            user_id=actor.user_id,
            user_name=actor.user_name,
            now=0.0,
            reason="",
            policy=policy,
            is_approver=await is_approver(services, policy, actor.user_id),
        )
    except TransitionError as exc:
        return str(exc)
    return None


async def _decide(
    services: DecisionNeeds,
    actor: Actor,
    version: str,
    gate_id: str,
    verb: str,
    decision: Callable[..., Gate],
    where: Where,
    **details: Any,
) -> tuple[Release, Gate, str] | str:
    """Apply `decision` (approvals.approve or .reject) atomically; a string is the answer to a
    refused or duplicate click, already audited."""
    store = services.store
    action = f"gate.{verb}"
    try:
        release, gate, target = await _target(services, version, gate_id, where)
        policy = services.config.release_policy(release.kind, gate.stage)
        eligible = await is_approver(services, policy, actor.user_id)
        release, gate = await store.update_release(
            version,
            partial(
                decision,
                gate_id=gate_id,
                user_id=actor.user_id,
                user_name=actor.user_name,
                now=store.clock(),
                policy=policy,
                is_approver=eligible,
                **details,
            ),
            actor,
            action,
            environment=target,
            outcome="rejected" if verb == "reject" else "ok",
            reason=f"{gate_id}: {details['reason']}" if "reason" in details else gate_id,
        )
    except NoChange as exc:
        await store.audit(
            actor, action, release=version, outcome="duplicate", reason=f"{gate_id}: {exc}"
        )
        return f"Nothing changed: {exc}."
    except TransitionError as exc:
        await store.audit(
            actor, action, release=version, outcome="refused", reason=f"{gate_id}: {exc}"
        )
        return f"You cannot {verb} this: {exc}."
    services.chat.refresh(version)
    return release, gate, target


async def approve(
    services: DecisionNeeds, actor: Actor, version: str, gate_id: str, where: Where
) -> str:
    """Approve from the button on the message at `where`; returns the private answer for the
    person who clicked."""
    done = await _decide(services, actor, version, gate_id, "approve", approvals.approve, where)
    if isinstance(done, str):
        return done
    release, gate, target = done
    await services.chat.thread(
        version,
        messages.note(
            f"✅ {messages.mention(actor.user_id)} approved *{messages.escape(gate.name)}*."
        ),
        f"{actor.user_name} approved {gate.name}",
    )
    return f"You approved {gate.name} of {release.tag} for {target}."


async def reject(
    services: DecisionNeeds, actor: Actor, version: str, gate_id: str, reason: str, where: Where
) -> str:
    done = await _decide(
        services, actor, version, gate_id, "reject", approvals.reject, where, reason=reason
    )
    if isinstance(done, str):
        return done
    release, gate, _ = done
    await services.chat.thread(
        version,
        messages.note(
            f"❌ {messages.mention(actor.user_id)} rejected *{messages.escape(gate.name)}*: "
            f"{messages.escape(reason)}\n{messages.mention(release.requester)}, {release.tag} "
            "will not be promoted; a new `/release rc` supersedes it."
        ),
        f"{actor.user_name} rejected {gate.name}",
    )
    return f"You rejected {gate.name} of {release.tag}."


# --- waivers -----------------------------------------------------------------------------


async def ask_waiver(
    services: DecisionNeeds,
    actor: Actor,
    version: str,
    gate_id: str,
    reason: str,
    where: Where,
) -> str:
    """The Waive form, sent: the waiver is asked, audited, shown with its Approve button and
    said in the thread; returns the private answer."""
    store = services.store
    try:
        release, gate, target = await _target(services, version, gate_id, where)
        release, gate = await store.update_release(
            version,
            partial(
                approvals.ask_waiver,
                gate_id=gate_id,
                user_id=actor.user_id,
                user_name=actor.user_name,
                now=store.clock(),
                reason=reason,
            ),
            actor,
            "gate.waive",
            environment=target,
            outcome="asked",
            reason=f"{gate_id}: {reason}",
        )
    except NoChange as exc:
        await store.audit(
            actor, "gate.waive", release=version, outcome="duplicate", reason=f"{gate_id}: {exc}"
        )
        return f"Nothing changed: {exc}."
    except TransitionError as exc:
        await store.audit(
            actor, "gate.waive", release=version, outcome="refused", reason=f"{gate_id}: {exc}"
        )
        return f"You cannot waive this: {exc}."
    services.chat.refresh(version)
    policy = services.config.waiver_policy(release.kind, gate.stage)
    await services.chat.thread(
        version,
        messages.note(
            f"☑️ {messages.mention(actor.user_id)} asks to waive *{messages.escape(gate.name)}*: "
            f"{messages.escape(reason)}. It needs {approvals_text(policy.required)} from someone "
            "else (the button on the release)."
        ),
        f"{actor.user_name} asks to waive {gate.name}",
    )
    return f"You asked to waive {gate.name} of {release.tag}; it needs someone else's approval."


async def approve_waiver(
    services: DecisionNeeds, actor: Actor, version: str, gate_id: str, where: Where
) -> str:
    """Approve a waiver from the button on the release message at `where`."""
    store = services.store
    try:
        release, gate, target = await _target(services, version, gate_id, where)
        policy = services.config.waiver_policy(release.kind, gate.stage)
        eligible = await is_approver(services, policy, actor.user_id)
        release, gate = await store.update_release(
            version,
            partial(
                approvals.approve_waiver,
                gate_id=gate_id,
                user_id=actor.user_id,
                user_name=actor.user_name,
                now=store.clock(),
                policy=policy,
                is_approver=eligible,
            ),
            actor,
            "gate.waive-approve",
            environment=target,
            reason=gate_id,
        )
    except NoChange as exc:
        await store.audit(
            actor,
            "gate.waive-approve",
            release=version,
            outcome="duplicate",
            reason=f"{gate_id}: {exc}",
        )
        return f"Nothing changed: {exc}."
    except TransitionError as exc:
        await store.audit(
            actor,
            "gate.waive-approve",
            release=version,
            outcome="refused",
            reason=f"{gate_id}: {exc}",
        )
        return f"You cannot approve this waiver: {exc}."
    services.chat.refresh(version)
    done = gate.status == "waived"
    await services.chat.thread(
        version,
        messages.note(
            f"☑️ {messages.mention(actor.user_id)} approved the waiver of "
            f"*{messages.escape(gate.name)}*" + (": it counts as passed." if done else ".")
        ),
        f"{actor.user_name} approved the waiver of {gate.name}",
    )
    if done:
        return f"You approved the waiver: {gate.name} of {release.tag} counts as passed."
    return f"You approved the waiver of {gate.name}; it needs more approvals."
