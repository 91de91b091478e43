"""Deploy windows and freezes, applied (the rules are bot.domain.windows; the config's
[[environments.windows]], [[environments.freezes]], [[windows]] and [[freezes]]).

What a closed environment stops: a promotion (`/release final`, a hotfix's), a release deploy
(a queued one waits for the opening instead of starting), and a flag change that shows a feature
to more people (a ramp pauses, and goes on when it opens). What it never stops: a rollback and
a kill switch (they reduce risk), and the health monitoring."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from bot.blocks import release as messages
from bot.domain.config import Config
from bot.domain.windows import Rules, Verdict, describe_opening, may_start, zone
from bot.services.ports import HasClock, HasConfig, HasFreezeRecords


class WindowNeeds(HasConfig, HasClock, HasFreezeRecords, Protocol):
    """The config's windows and freezes, those set from Slack, and the clock (tests and the
    demo give their own)."""


def _zone(config: Config, rules: Rules) -> str:
    """The time zone for saying when it opens: its windows', else its freezes', else the
    team's ([freeze] timezone, which `--until` is read in)."""
    for window in rules.windows:
        return window.timezone
    for freeze in rules.freezes:
        key = getattr(freeze.start.tzinfo, "key", None)
        if isinstance(key, str):
            return key
    return config.freeze.timezone


async def rules_now(needs: WindowNeeds, environment: str) -> Rules:
    """The environment's windows and freezes: the config's and those set from Slack."""
    rules = needs.config.rules_for(environment)
    set_from_slack = await needs.freeze_records.active(environment, needs.clock())
    if not set_from_slack:
        return rules
    # Kept in UTC; said in the team's zone, the one their `--until` was typed in.
    tz = zone(needs.config.freeze.timezone)
    local = (
        replace(freeze, start=freeze.start.astimezone(tz), until=freeze.until.astimezone(tz))
        for _, freeze in set_from_slack
    )
    return Rules(rules.windows, (*rules.freezes, *local))


async def closed(
    needs: WindowNeeds, environment: str, *, overridden: bool = False
) -> Verdict | None:
    """Why `environment` may not change now, or None when it may (`overridden`: an approved
    EMERGENCY override covers this change; bot.domain.windows.may_start)."""
    return closed_by(await rules_now(needs, environment), needs.clock(), overridden=overridden)


def closed_by(rules: Rules, at: float, *, overridden: bool = False) -> Verdict | None:
    if not rules.windows and not rules.freezes:
        return None
    return may_start(rules, datetime.fromtimestamp(at, UTC), overridden=overridden)


def when_open(config: Config, environment: str, found: Verdict, at: float) -> str:
    """When it opens, for people: "opens Monday 09:00 Europe/Berlin, in 2 days 14 h"."""
    if found.opens_at is None:
        return "does not open within the next 400 days"
    rules = config.rules_for(environment)
    return describe_opening(found.opens_at, datetime.fromtimestamp(at, UTC), _zone(config, rules))


def why_shown(found: Verdict) -> str:
    """`found.why` for Slack: the freeze reasons people typed shown as text (no mention, link
    or broadcast of theirs), who set a freeze a mention."""
    return "; ".join(
        [
            *(freeze.describe(messages.escape) for freeze in found.freezes),
            *(messages.escape(reason) for reason in found.window_reasons),
        ]
    )


def closed_text(needs: WindowNeeds, environment: str, found: Verdict) -> str:
    """*production* is closed: why; when it opens."""
    return (
        f"*{environment}* is closed for changes: {why_shown(found)}. It "
        f"{when_open(needs.config, environment, found, needs.clock())}."
    )
