"""Freezing environments from Slack (`/release freeze`, `/release unfreeze`), audited and told
to the channel. The freezes go to the FreezeRecords port; every window check reads them
(bot.services.deploy_windows).

Who may: a freeze only stops changes, so anyone may set one, at once, when [freeze] required
is 0 (above 0 a freeze is a request that waits for approvals: bot.services.approve_freezes).
Ending one early lets changes through again, so it is for whoever set it or one of [freeze]
approvers (none listed: anyone); someone else who unfreezes ends only their own. Freezes of
the config file are not ended from Slack: the file says when they end."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from bot.blocks import release as messages
from bot.domain.actors import Actor
from bot.domain.windows import Freeze, describe_opening, next_open
from bot.services.approvers import GroupNotRead, is_named
from bot.services.deploy_windows import WindowNeeds, rules_now
from bot.services.ports import HasClock, HasConfig, HasFreezeRecords, HasStore, HasUserDirectory


class FreezeNeeds(HasConfig, HasStore, HasClock, HasFreezeRecords, HasUserDirectory, Protocol):
    """The freezes kept, the audit trail, the clock, and who may end them ([freeze])."""


class FreezeRefused(Exception):
    """Nothing was unfrozen; the message says why and who may."""


@dataclass(frozen=True)
class FreezeOutcome:
    answer: str  # to the person who asked
    announcement: str  # to the release channel


async def freeze(
    needs: FreezeNeeds, actor: Actor, environment: str, until: datetime, reason: str
) -> FreezeOutcome:
    """Freezes `environment` from now until `until` (aware, in the future: the parser's
    `freeze_until`), for `reason`. UnknownEnvironment for a name that is none."""
    needs.config.check_environment(environment)
    now = datetime.fromtimestamp(needs.clock(), UTC)
    await needs.freeze_records.add(
        environment, Freeze(start=now, until=until, reason=reason, who=actor.user_id)
    )
    timezone = needs.config.freeze.timezone
    shown = messages.local_time(until, timezone)
    await needs.store.audit(
        actor,
        "freeze.set",
        environment=environment,
        reason=f"until {shown}: {reason}",
    )
    opening = await opening_of(needs, environment, now)
    return FreezeOutcome(
        answer=(
            f"🧊 *{environment}* is frozen until {shown}: {messages.escape(reason)}. "
            "Promotions, release deploys and flag rollouts to it wait; "
            f"`/release unfreeze {environment}` ends it early."
        ),
        announcement=(
            f"🧊 {messages.mention(actor.user_id)} froze *{environment}* until {shown}: "
            f"{messages.escape(reason)}. It {opening}."
        ),
    )


async def unfreeze(
    needs: FreezeNeeds, actor: Actor, environment: str, reason: str
) -> FreezeOutcome:
    """Ends the freezes set from Slack on `environment` that `actor` may end: their own, or
    all of them for an approver. FreezeRefused when none (also when only a user group Slack
    could not read could make them an approver: they are told to try again)."""
    needs.config.check_environment(environment)
    now = datetime.fromtimestamp(needs.clock(), UTC)
    active = await needs.freeze_records.active(environment, now.timestamp())
    if not active:
        from_file = any(f.holds(now) for f in needs.config.rules_for(environment).freezes)
        raise FreezeRefused(
            f"*{environment}* has no freeze set from Slack"
            + ("; its freeze in the config file ends when the file says" if from_file else "")
        )
    mine = [(i, f) for i, f in active if f.who == actor.user_id]
    ending = mine
    unread: GroupNotRead | None = None
    if len(mine) < len(active):
        try:
            if await is_named(needs, needs.config.freeze.policy.approvers, actor.user_id):
                ending = active
        except GroupNotRead as exc:
            unread = exc  # their own freezes still end; the others' wait for Slack
    if not ending:
        setters = ", ".join(dict.fromkeys(messages.mention(f.who) for _, f in active))
        await needs.store.audit(
            actor,
            "freeze.end",
            environment=environment,
            outcome="refused",
            reason=(f"membership of {unread.group} unknown: {unread.why}" if unread else reason),
        )
        if unread is not None:
            raise FreezeRefused(
                f"*{environment}* was frozen by {setters}, and I could not check whether you "
                f"are in the [freeze] approver group <!subteam^{unread.group}> "
                f"({messages.escape(unread.why)}); "
                "nothing was unfrozen, try again in a minute"
            )
        raise FreezeRefused(
            f"*{environment}* was frozen by {setters}; only whoever set a freeze, or one of "
            "the approvers in [freeze], may end it early"
        )
    for freeze_id, _ in ending:
        await needs.freeze_records.remove(environment, freeze_id)
    timezone = needs.config.freeze.timezone

    def listed(escape: bool) -> str:
        return "; ".join(
            f"{messages.mention(f.who)}'s until {messages.local_time(f.until, timezone)} "
            f"({messages.escape(f.reason) if escape else f.reason})"
            for _, f in ending
        )

    ended = listed(escape=False)
    await needs.store.audit(
        actor,
        "freeze.end",
        environment=environment,
        reason=f"{reason + ': ' if reason else ''}ended {ended}"[:1000],
    )
    opening = await opening_of(needs, environment, now)
    why = f": {messages.escape(reason)}" if reason else ""
    return FreezeOutcome(
        answer=f"☀️ *{environment}* is unfrozen{why}. It {opening}.",
        announcement=(
            f"☀️ {messages.mention(actor.user_id)} unfroze *{environment}*{why} "
            f"(ended {listed(escape=True)}). It {opening}."
        ),
    )


async def opening_of(needs: WindowNeeds, environment: str, now: datetime) -> str:
    """When changes may go to `environment` again: "is open for changes now", or when it
    opens (other freezes and the deny windows may hold it longer), in the team's zone."""
    opens_at = next_open(await rules_now(needs, environment), now)
    if opens_at is None:
        return "does not open for changes within the next 400 days"
    if opens_at <= now:
        return "is open for changes now"
    return describe_opening(opens_at, now, needs.config.freeze.timezone)
