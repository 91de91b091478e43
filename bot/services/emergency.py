"""The EMERGENCY override: `/release final --emergency --reason TEXT` promotes through a closed
last environment (a freeze, a deny window), but only once the override's own approvals are in
(Config.override_policy: two, by the last environment's approvers, never the one who asked).
It is marked EMERGENCY in the release message, the final tag's annotation and the audit
trail, and the thread reminds people to review it once it is live."""

from __future__ import annotations

from functools import partial

from bot.blocks import release as messages
from bot.domain import approvals
from bot.domain.actors import Actor
from bot.domain.approvals import NoChange
from bot.domain.releases import Release, TransitionError
from bot.domain.windows import Verdict
from bot.services.approvers import is_approver
from bot.services.clicks import Where, refused, same_message
from bot.services.deploy_windows import why_shown
from bot.services.promote_release import FinalNeeds, FinalRequest, enqueue_promotion


async def ask(
    services: FinalNeeds, actor: Actor, release: Release, reason: str, closed: Verdict
) -> str:
    """Record the override asked for (`closed`: what closes the environment), audited, shown on
    the release message with its Approve button; returns the private answer."""
    store = services.store
    last = services.config.last_environment.name
    try:
        release, _ = await store.update_release(
            release.version,
            partial(
                approvals.ask_override,
                user_id=actor.user_id,
                user_name=actor.user_name,
                now=store.clock(),
                reason=reason,
            ),
            actor,
            "override.ask",
            environment=last,
            reason=f"EMERGENCY: {reason} (closed: {closed.why})"[:1000],
        )
    except NoChange as exc:
        return f"Nothing changed: {exc}; it waits for its approvals on the release message."
    except TransitionError as exc:
        return f"I did not ask for an override: {exc}."
    services.chat.refresh(release.version)
    policy = services.config.override_policy()
    await services.chat.thread(
        release.version,
        messages.note(
            f"🚨 {messages.mention(actor.user_id)} asks for an *EMERGENCY override* to promote "
            f"`{release.tag}` to *{last}* although it is closed "
            f"({why_shown(closed)}): "
            f"{messages.escape(reason)}. It needs {policy.required} approvals, never the "
            "asker's, with the button on the release message."
        ),
        f"EMERGENCY override asked for {release.tag}",
    )
    return (
        f"🚨 Asked for an EMERGENCY override of *{last}*'s closure for `{release.tag}`: it "
        f"needs {policy.required} approvals on the release message, then it is promoted."
    )


async def approve(services: FinalNeeds, actor: Actor, version: str, where: Where) -> str:
    """The Approve emergency override button on the release message at `where`; once the
    policy is met, the promotion goes (on behalf of whoever asked for the override)."""
    store = services.store
    release = await store.get_release(version)
    if release is None or not same_message(where, release.channel, release.message_ts):
        return await refused(
            services,
            actor,
            "override.approve",
            f"{version}: not on the release's message",
            "This button is not on the release's message; use the one there.",
        )
    policy = services.config.override_policy()
    try:
        eligible = await is_approver(services, policy, actor.user_id)
        release, override = await store.update_release(
            version,
            partial(
                approvals.approve_override,
                user_id=actor.user_id,
                user_name=actor.user_name,
                now=store.clock(),
                policy=policy,
                is_approver=eligible,
            ),
            actor,
            "override.approve",
            environment=services.config.last_environment.name,
        )
    except NoChange as exc:
        await store.audit(
            actor, "override.approve", release=version, outcome="duplicate", reason=str(exc)
        )
        return f"Nothing changed: {exc}."
    except TransitionError as exc:
        await store.audit(
            actor, "override.approve", release=version, outcome="refused", reason=str(exc)
        )
        return f"You cannot approve this override: {exc}."
    services.chat.refresh(version)
    if not override.granted:
        await services.chat.thread(
            version,
            messages.note(f"☑️ {messages.mention(actor.user_id)} approved the EMERGENCY override."),
            f"{actor.user_name} approved the override",
        )
        return "You approved the EMERGENCY override; it needs more approvals."
    names = ", ".join(messages.mention(a.user_id) for a in override.approvals)
    await services.chat.thread(
        version,
        messages.note(
            f"🚨 The EMERGENCY override is approved ({names}): promoting `{release.tag}` "
            "through the closure."
        ),
        "EMERGENCY override approved",
    )
    await enqueue_promotion(
        services,
        FinalRequest(
            version=version,
            user_id=override.user_id,
            user_name=override.user_name,
            channel_id=release.channel or "",
            response_url=None,
        ),
    )
    return f"You approved the EMERGENCY override: `{release.tag}` is being promoted."
