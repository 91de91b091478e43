"""What `/release status` shows: environments, releases in flight, locks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from bot.blocks import flags as flag_messages
from bot.blocks import freezes as freeze_messages
from bot.blocks import release as messages
from bot.domain import approval_policy, flag_requests, freeze_requests, rollbacks
from bot.domain.approvals import Refusal
from bot.domain.config import DEPLOY_CHECK, OUTAGE_CHECK, Config
from bot.domain.locks import parse_lock
from bot.domain.windows import (
    Freeze,
    Rules,
    Verdict,
    freezes_change,
    next_change,
    rules_change,
    verdict,
)
from bot.services.deploy_windows import when_open
from bot.services.ports import (
    HasClock,
    HasConfig,
    HasFreezeRecords,
    HasFreezeRequests,
    HasMonitorState,
    HasStatusReader,
    Status,
    StatusSummary,
)


class StatusNeeds(
    HasConfig, HasStatusReader, HasFreezeRecords, HasFreezeRequests, HasClock, Protocol
):
    """What `/release status` reads: the store's status, the config's freezes and those set
    from Slack (the service's own FreezeRecords, the one every window check reads), and the
    freezes that wait for their approvals."""


@dataclass(frozen=True)
class StatusView:
    """A service's `/release status`, and until when what it shows of freezes is right."""

    blocks: list[messages.Block]
    # The next instant (the service's clock) what it shows changes by the clock alone (a
    # freeze shown ends or one of the file starts, a window opens or closes, a waiting freeze
    # request expires): a snapshot of this view is not served from then on (bot.runtime.
    # shared_read).
    changes_at: float | None = None

    def fresh(self, now: float) -> bool:
        return self.changes_at is None or now < self.changes_at


async def status_view(needs: StatusNeeds) -> StatusView:
    config = needs.config
    names = [env.name for env in config.environments]
    status = await needs.status_reader.status(names)
    now = needs.clock()
    set_from_slack = await needs.freeze_records.active_of(names, now)
    slack_freezes = {name: [f for _, f in found] for name, found in set_from_slack.items()}
    freezes = freezes_holding(config, slack_freezes, now)
    closed = closed_by_windows(config, slack_freezes, now)
    changes = [line_changes_at(config, slack_freezes, now)]
    # Requests exist only where freezes wait for approvals; elsewhere, no read for them.
    asked = await needs.freeze_requests.waiting(now) if config.freeze.required > 0 else []
    policy = freeze_requests.freeze_policy(config)
    waiting = [
        freeze_messages.waiting_line(r, freeze_requests.missing(r, policy), config.freeze.timezone)
        for r in asked
    ]
    changes += [r.expires_at for r in asked]
    return StatusView(
        render_status(status, config, freezes, closed, waiting),
        min((c for c in changes if c is not None), default=None),
    )


def closed_by_windows(
    config: Config, set_from_slack: Mapping[str, Sequence[Freeze]], now: float
) -> dict[str, tuple[tuple[str, ...], str]]:
    """The environments a window closes at `now` (a deny window holds, or none of its allow
    windows does): why, and when it opens, freezes counted (they are listed on their own)."""
    closed: dict[str, tuple[tuple[str, ...], str]] = {}
    for env in config.environments:
        rules = config.rules_for(env.name)
        if not rules.windows:
            continue
        every = Rules(rules.windows, (*rules.freezes, *set_from_slack.get(env.name, ())))
        found = closed_verdict(every, now)
        if found is not None and found.window_reasons:
            closed[env.name] = (found.window_reasons, when_open(config, env.name, found, now))
    return closed


def line_changes_at(
    config: Config, set_from_slack: Mapping[str, Sequence[Freeze]], now: float
) -> float | None:
    """When a service's line next changes by the clock alone: a freeze on it ends (or one of
    the file starts), or a window opens or closes."""
    changes = [freezes_change_at(config, set_from_slack, now), windows_change_at(config, now)]
    return min((c for c in changes if c is not None), default=None)


# Closed verdicts by the rules they are of, with the span of time they hold for: rules that
# open late (or never: 400 days looked through) cost milliseconds to judge, and every status
# read of every service judges them, while they change only when a window or freeze does.
_CLOSED: dict[Rules, tuple[float, float, Verdict]] = {}
_CLOSED_KEPT = 1024


def closed_verdict(rules: Rules, now: float) -> Verdict | None:
    """`verdict(rules)` at `now` when it is closed, else None; a closed one is kept until the
    rules next change by the clock (a window opens or closes, a freeze starts or ends)."""
    kept = _CLOSED.get(rules)
    if kept is not None and kept[0] <= now < kept[1]:
        return kept[2]
    at = datetime.fromtimestamp(now, UTC)
    found = verdict(rules, at)
    if found.open:
        return None  # cheap to judge again: nothing is looked for ahead
    change = rules_change(rules, at)
    if len(_CLOSED) >= _CLOSED_KEPT:
        _CLOSED.clear()
    _CLOSED[rules] = (now, float("inf") if change is None else change.timestamp(), found)
    return found


def windows_change_at(config: Config, now: float) -> float | None:
    """When a window of some environment next opens or closes: what `closed_by_windows`
    says can change only then."""
    at = datetime.fromtimestamp(now, UTC)
    windows = [w for env in config.environments for w in config.rules_for(env.name).windows]
    change = next_change(windows, at)
    return None if change is None else change.timestamp()


def freezes_holding(
    config: Config, set_from_slack: Mapping[str, Sequence[Freeze]], now: float
) -> dict[str, list[Freeze]]:
    """The freezes holding each environment at `now`: the config's, then Slack's."""
    at = datetime.fromtimestamp(now, UTC)
    holding: dict[str, list[Freeze]] = {}
    for env in config.environments:
        found = [*config.rules_for(env.name).freezes, *set_from_slack.get(env.name, ())]
        if now_holding := [f for f in found if f.holds(at)]:
            holding[env.name] = now_holding
    return holding


def freezes_change_at(
    config: Config, set_from_slack: Mapping[str, Sequence[Freeze]], now: float
) -> float | None:
    """When what `freezes_holding` says next changes by the clock alone: the first end of
    one holding, or start of one to come (a freeze set from Slack starts when it is set, and
    that request drops the snapshots itself)."""
    every = [
        f
        for env in config.environments
        for f in (*config.rules_for(env.name).freezes, *set_from_slack.get(env.name, ()))
    ]
    change = freezes_change(every, datetime.fromtimestamp(now, UTC))
    return None if change is None else change.timestamp()


def render_status(
    status: Status,
    config: Config,
    freezes: dict[str, list[Freeze]] | None = None,
    closed: dict[str, tuple[tuple[str, ...], str]] | None = None,
    freeze_requests: Sequence[str] = (),
) -> list[messages.Block]:
    locks = {
        name: info
        for name, raw in status.raw_locks.items()
        if (info := parse_lock(raw)) is not None
    }
    rollbacks_to = {
        name: rollback_line(history, name, config.repository.tag_prefix)
        for name, history in status.histories.items()
        if rollbacks.deploys(history)
    }
    return messages.status_message(
        config,
        status.versions,
        status.in_flight,
        locks,
        rollbacks_to,
        freezes,
        closed,
        freeze_requests,
        waiting_lines(status, config),
    )


WAITING_SHOWN = 10  # of each kind


def waiting_lines(status: Status, config: Config) -> list[str]:
    """The rollbacks and flag changes that wait for approvals, with how many each needs."""
    # Only what a click can still decide: a request whose message was never posted has no
    # buttons, one of an environment since removed waits for nothing, and one the kill switch
    # voided is refused to every click.
    configured = {env.name for env in config.environments}
    rollback_lines = [
        messages.waiting_rollback_line(
            r, rollbacks.missing(r, rollbacks.rollback_policy(config, r.environment))
        )
        for r in status.waiting_rollbacks
        if r.message_ts and r.environment in configured
    ]
    policy = flag_requests.flag_policy(config)
    flag_lines = [
        flag_messages.waiting_line(r, approval_policy.missing(policy, r.approvals, r.created_at))
        for r in status.waiting_flag_requests
        if r.ts and not flag_requests.voided(r, status.flag_kills.get(r.name))
    ]
    return [
        *messages.at_most(rollback_lines, WAITING_SHOWN, "rollback", "rollbacks"),
        *messages.at_most(flag_lines, WAITING_SHOWN, "flag change", "flag changes"),
    ]


def rollback_line(history: list[dict[str, str]], environment: str, prefix: str) -> str:
    """Where `/release rollback` of `environment` would go now, and why (or why nowhere)."""
    try:
        target = rollbacks.choose_target(history, environment, None, prefix)
    except Refusal as exc:
        return f"No rollback: {exc}."
    return f"A rollback would go to `{target.entry['tag']}`: {target.why}."


class LineNeeds(StatusNeeds, HasMonitorState, Protocol):
    """A service's line read on its own: its status, freezes and open incidents."""


async def service_line(needs: LineNeeds) -> str:
    """A service's line in the status of a bot of several, read on its own."""
    config = needs.config
    names = [env.name for env in config.environments]
    status = await needs.status_reader.status(names)
    now = needs.clock()
    set_from_slack = await needs.freeze_records.active_of(names, now)
    # An environment's open incidents: its outage (all its failing checks) and a failed deploy.
    pairs = [(name, check) for name in names for check in (OUTAGE_CHECK, DEPLOY_CHECK)]
    states = await needs.monitor_state.check_states(pairs)
    open_incidents = sum(1 for state in states if state.incident is not None)
    slack_freezes = {name: [f for _, f in found] for name, found in set_from_slack.items()}
    return render_line(status.summary(open_incidents, slack_freezes), config, now)


def render_line(status: StatusSummary, config: Config, now: float) -> str:
    """One service in `/release status` of a bot of several: what runs where, what is in
    flight, which environments are locked, frozen or closed by a window at `now`, how many
    incidents are open."""
    names = [env.name for env in config.environments]
    where = " · ".join(f"{name} `{status.tags.get(name) or '—'}`" for name in names)
    flying = ", ".join(f"`{tag}`" for tag in status.in_flight[:5]) or "nothing"
    more = f" and {len(status.in_flight) - 5} more" if len(status.in_flight) > 5 else ""
    locks = [
        f"🔒 {name} ({messages.escape(info.holder)})"
        for name in names
        if name in status.raw_locks and (info := parse_lock(status.raw_locks[name])) is not None
    ]
    locked = f" · {', '.join(locks)}" if locks else ""
    timezone = config.freeze.timezone
    frozen = "".join(
        f" · {messages.short_freeze(name, found, timezone)}"
        for name, found in freezes_holding(config, status.freezes, now).items()
    )
    shut = "".join(
        f" · ⏸ {name} closed, {opening}"
        for name, (_, opening) in closed_by_windows(config, status.freezes, now).items()
    )
    alerting = f" · 🚨 {status.open_incidents} open incident(s)" if status.open_incidents else ""
    return (
        f"*{config.service}* ({messages.channel_ref(config.slack.channel)}): {where} · "
        f"in flight: {flying}{more}{locked}{frozen}{shut}{alerting}"
    )


def all_services_blocks(lines: list[str]) -> list[messages.Block]:
    """`/release status` of a bot of several services: a line each (or why there are none)."""
    header = f"{len(lines)} services · `/release status NAME` for one in full"
    return [messages.context(header), *messages.sections(lines)]
