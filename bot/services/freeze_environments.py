"""Freezing environments from Slack (`/release freeze`, `/release unfreeze`), audited and told
to the channel. The freezes go to the FreezeRecords port; every window check reads them
(bot.services.deploy_windows).

Who may: a freeze only stops changes, so anyone may set one, at once, when [freeze] required
is 0 (above 0 a freeze is a request that waits for approvals: bot.services.approve_freezes).
Ending one early lets changes through again, so it is for whoever set it or one of [freeze]
approvers (none listed: anyone); someone else who unfreezes ends only their own. Freezes of
the config file are not ended from Slack: the file says when they end.

A freeze that ends by itself (its `until` passes) is told once in the channel by the
scheduler (announce_ended), with when the environment opens."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.blocks import release as messages
from bot.domain.actors import Actor
from bot.domain.outbox import Reply
from bot.domain.windows import Freeze, describe_opening, next_open
from bot.services.approvers import GroupNotRead, is_named
from bot.services.deploy_windows import WindowNeeds, rules_now
from bot.services.ports import (
    FreezeEndNews,
    HasChat,
    HasClock,
    HasConfig,
    HasFreezeRecords,
    HasStore,
    HasUserDirectory,
)


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
    timezone = needs.config.freeze.timezone

    def listed(ending: list[tuple[str, Freeze]], escape: bool) -> str:
        return "; ".join(
            f"{messages.mention(f.who)}'s until {messages.local_time(f.until, timezone)} "
            f"({messages.escape(f.reason) if escape else f.reason})"
            for _, f in ending
        )

    # Read, decide, end: again when a freeze read went meanwhile (it ended by itself, or
    # someone else unfroze), so that what is said and audited is what ended.
    while True:
        ending = await _may_end(needs, actor, environment, reason, now)
        done = await needs.freeze_records.end_early(
            environment,
            [freeze_id for freeze_id, _ in ending],
            actor,
            f"{reason + ': ' if reason else ''}ended {listed(ending, escape=False)}"[:1000],
        )
        if done:
            break
    opening = await opening_of(needs, environment, now)
    why = f": {messages.escape(reason)}" if reason else ""
    return FreezeOutcome(
        answer=f"☀️ *{environment}* is unfrozen{why}. It {opening}.",
        announcement=(
            f"☀️ {messages.mention(actor.user_id)} unfroze *{environment}*{why} "
            f"(ended {listed(ending, escape=True)}). It {opening}."
        ),
    )


async def _may_end(
    needs: FreezeNeeds, actor: Actor, environment: str, reason: str, now: datetime
) -> list[tuple[str, Freeze]]:
    """The freezes set from Slack on `environment` that `actor` may end now; FreezeRefused
    (audited) when none."""
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
    return ending


class FreezeEndNeeds(WindowNeeds, HasChat, Protocol):
    """The freezes (the file's and Slack's), the clock, and the channel to tell."""


# A freeze of the file that ended longer ago than this is not told (a bot started after a
# long stop does not announce old ends); its told-marker outlives it, so it is told once.
CONFIG_END_LOOKBACK_SECONDS = 3600.0


def config_freeze_marker(freeze: Freeze) -> str:
    """Which freeze of the file it is, by what it is: the same freeze in the next version
    of the file is the same marker; a freeze moved or reworded is another one."""
    what = f"{freeze.start.timestamp():.0f}|{freeze.until.timestamp():.0f}|{freeze.reason}"
    return hashlib.sha256(what.encode()).hexdigest()[:16]


async def announce_ended(needs: FreezeEndNeeds) -> int:
    """Tells the release channel, once, of each freeze that ended by itself (its `until`
    passed): set from Slack (removed then, in the same transaction), or in the file (ended
    within CONFIG_END_LOOKBACK_SECONDS), and when its environment opens. Audited as
    `freeze.end` by the bot. Any number of replicas may run it at once: each end is told by
    exactly one (FreezeRecords.end_once, config_end_once). Returns how many this one told."""
    config = needs.config
    now_ts = needs.clock()
    now = datetime.fromtimestamp(now_ts, UTC)
    since = now - timedelta(seconds=CONFIG_END_LOOKBACK_SECONDS)
    names = [env.name for env in config.environments]
    from_slack: dict[str, list[tuple[str, Freeze]]] = {}
    for environment, freeze_id, freeze in await needs.freeze_records.ended(names, now_ts):
        from_slack.setdefault(environment, []).append((freeze_id, freeze))
    told = 0
    for environment in names:
        from_file = [f for f in config.rules_for(environment).freezes if since < f.until <= now]
        if not from_file and environment not in from_slack:
            continue
        # After the ends: what holds it still (another freeze, a deny window) says when.
        opening = await opening_of(needs, environment, now)
        for freeze_id, freeze in from_slack.get(environment, []):
            news = _end_news(needs, environment, freeze, opening)
            told += await needs.freeze_records.end_once(environment, freeze_id, news)
        for freeze in from_file:
            news = _end_news(needs, environment, freeze, opening)
            told += await needs.freeze_records.config_end_once(
                environment,
                config_freeze_marker(freeze),
                news,
                keep_seconds=2 * CONFIG_END_LOOKBACK_SECONDS,
            )
    if told:
        needs.chat.wake([config.slack.channel])
    return told


def _end_news(
    needs: FreezeEndNeeds, environment: str, freeze: Freeze, opening: str
) -> FreezeEndNews:
    shown = messages.local_time(freeze.until, needs.config.freeze.timezone)
    by = f"set by {messages.mention(freeze.who)}" if freeze.who else "of the config file"
    text = f"☀️ *{environment}*'s freeze ({messages.escape(freeze.reason)}) ended; it {opening}."
    return FreezeEndNews(
        environment=environment,
        reason=f"ended at {shown} ({by}): {freeze.reason}"[:1000],
        channel=needs.config.slack.channel,
        entry=Reply("", tuple(messages.note(text)), text),
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
