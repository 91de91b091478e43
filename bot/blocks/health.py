"""Block Kit for health monitoring: incidents, reminders, window summaries, /release health."""

from __future__ import annotations

import json
import time
from typing import Any

from bot.blocks.actions import INCIDENT_ACK, INCIDENT_GROUP_ACK, ROLLBACK_START
from bot.blocks.release import (
    Block,
    confirm_dialog,
    context,
    escape,
    fields,
    header,
    mention,
    section,
    sections,
    slack_time,
)
from bot.domain.health.checks import Result
from bot.domain.health.incidents import OUTAGE_CHECK, SHOWN, Incident
from bot.domain.health.summaries import WindowSummary
from bot.domain.locks import format_age
from bot.domain.outbox import GroupLine

SEVERITY_ICONS = {"critical": "🔴", "warning": "🟠"}
VERDICT_ICONS = {"healthy": "✅", "degraded": "🟠", "rolled back": "⏪"}


def oncall_mentions(oncall: tuple[str, ...]) -> str:
    return " ".join(f"<!subteam^{who}>" if who.startswith("S") else mention(who) for who in oncall)


def incident_title(incident: Incident) -> str:
    return f"{incident.severity.upper()} · {incident.environment} · {incident.subject}"


def outage_lines(incident: Incident, now: float) -> list[str]:
    """An outage's checks, one line each (the worst first, as many as its news carries), and
    those that recovered meanwhile."""
    shown = list(incident.failing.items())[:SHOWN]  # a news copy holds no more; this is sure
    lines = [
        f"{SEVERITY_ICONS.get(t.severity, '🔴')} `{escape(name)}` since "
        f"{format_age(now - t.since)}: {escape(t.problem)[:300]}"
        for name, t in shown
    ]
    if incident.failing_count > len(shown):
        lines.append(f"…and {incident.failing_count - len(shown)} more failing")
    if incident.recovered_count and not incident.resolved_at:
        names = ", ".join(f"`{escape(n)}`" for n in incident.recovered)
        more = incident.recovered_count - len(incident.recovered)
        lines.append(f"✅ Recovered meanwhile: {names}" + (f" and {more} more" if more else ""))
    return lines


def incident_message(
    incident: Incident, oncall: tuple[str, ...], deployed_version: str, now: float | None = None
) -> list[Block]:
    """The one message of an incident, redrawn as it goes on."""
    now = time.time() if now is None else now
    if incident.resolved_at:
        return [
            section(
                f"✅ ~{escape(incident_title(incident))}~ *resolved* after "
                f"{format_age(incident.duration(now))}."
            ),
            context(
                f"Was: {escape(_was(incident))} · opened {slack_time(incident.opened_at)}"
                f" · {incident.failures} failing result(s)"
            ),
        ]
    icon = SEVERITY_ICONS.get(incident.severity, "🔴")
    lines = [f"{icon} *{escape(incident_title(incident))}*"]
    if incident.check == OUTAGE_CHECK and incident.failing:
        lines += outage_lines(incident, now)
    else:
        lines.append(escape(incident.problem))
    if incident.critical and oncall:
        lines.append(f"On call: {oncall_mentions(oncall)}")
    blocks: list[Block] = [
        *sections(lines),
        fields(
            [
                (
                    "Since",
                    f"{slack_time(incident.opened_at)} ({format_age(incident.duration(now))})",
                ),
                ("Failing results", str(incident.failures)),
                (
                    "Running",
                    f"`{deployed_version}`" if deployed_version else "nothing deployed yet",
                ),
                (
                    "Acknowledged",
                    f"by {mention(incident.acknowledged_by)}"
                    if incident.acknowledged_by
                    else "not yet",
                ),
            ]
        ),
    ]
    buttons: list[dict[str, Any]] = []
    if not incident.acknowledged_by:
        buttons.append(
            {
                "type": "button",
                "action_id": INCIDENT_ACK,
                "text": {"type": "plain_text", "text": "Acknowledge"},
                "value": json.dumps(
                    {"e": incident.environment, "c": incident.check, "i": incident.id}
                ),
            }
        )
    if deployed_version and incident.critical:
        env = incident.environment
        buttons.append(
            {
                "type": "button",
                "action_id": ROLLBACK_START,
                "style": "danger",
                "text": {"type": "plain_text", "text": f"Roll back {env}"[:75]},
                "value": json.dumps({"e": env, "v": deployed_version}),
                "confirm": confirm_dialog(
                    f"Roll back {env}?",
                    f"{env} goes back to the version "
                    f"before {deployed_version}, and stays locked until "
                    "someone unlocks it. You will be asked why.",
                    "Roll back",
                ),
            }
        )
    if buttons:
        blocks.append(
            {"type": "actions", "block_id": f"incident:{incident.id}", "elements": buttons}
        )
    return blocks


def _was(incident: Incident) -> str:
    """What an incident that is over was about: an outage's checks, else its problem."""
    if incident.check != OUTAGE_CHECK:
        return incident.problem
    count, names = incident.checks
    more = f" and {count - len(names)} more" if count > len(names) else ""
    return f"{', '.join(names)}{more} failing"


def incident_text(incident: Incident) -> str:
    """The notification's words."""
    if incident.resolved_at:
        return f"Resolved: {incident_title(incident)}"
    count, names = incident.checks
    if incident.check == OUTAGE_CHECK and count > 1:
        return f"{incident_title(incident)} failing: {', '.join(names[:5])}…"[:300]
    if incident.check == OUTAGE_CHECK and len(incident.failing) == 1:
        [trouble] = incident.failing.values()
        return f"{incident_title(incident)}: {trouble.problem}"[:300]
    return f"{incident_title(incident)}: {incident.problem}"[:300]


def reminder(
    incident: Incident, oncall: tuple[str, ...], now: float, escalated: bool = False
) -> list[Block]:
    who = f" {oncall_mentions(oncall)}" if incident.critical and oncall else ""
    if escalated:
        text = (
            f"{SEVERITY_ICONS.get(incident.severity, '🔴')} Now *{incident.severity}*: "
            f"{escape(incident.problem)}{who}"
        )
    else:
        text = (
            f"🔔 Still failing after {format_age(incident.duration(now))}: "
            f"{escape(incident.problem)}{who}"
        )
    return [section(text)]


def resolved_reply(incident: Incident, now: float) -> list[Block]:
    return [
        section(
            f"✅ *{escape(incident_title(incident))}* resolved after "
            f"{format_age(incident.duration(now))}."
        )
    ]


def acknowledged_reply(incident: Incident, user: str) -> list[Block]:
    return [
        context(
            f"👀 {mention(user)} acknowledged {escape(incident_title(incident))}; "
            "no more reminders."
        )
    ]


# How a summary line says what happened to its checks.
GROUP_WORDS = {
    "open": ("🔴", "failing"),
    "escalate": ("🔴", "now critical"),
    "remind": ("🔔", "still failing"),
    "resolve": ("✅", "recovered"),
    "acknowledged": ("👀", "acknowledged"),
}


def group_line(line: GroupLine) -> str:
    icon, words = GROUP_WORDS[line.what]
    if line.what == "open" and not line.critical:
        icon = SEVERITY_ICONS["warning"]
    noun = "check" if line.count == 1 else "checks"
    names = ", ".join(f"`{escape(name)}`" for name in line.checks)
    more = f" and {line.count - len(line.checks)} more" if line.count > len(line.checks) else ""
    return f"{icon} *{line.count} {noun} {words} in {escape(line.environment)}*: {names}{more}"


def group_text(lines: list[GroupLine]) -> str:
    """The notification's words: the first line, without its markup."""
    first = lines[0]
    _, words = GROUP_WORDS[first.what]
    noun = "check" if first.count == 1 else "checks"
    others = f" (and {len(lines) - 1} more line(s))" if len(lines) > 1 else ""
    return f"{first.count} {noun} {words} in {first.environment}{others}"[:300]


def incident_summary(
    lines: list[GroupLine], oncall: tuple[str, ...], group_id: str, open_members: int
) -> list[Block]:
    """One message for many incident changes at once (a mass outage is one message, not a
    thousand); Acknowledge all stops the reminders of every incident it stands for."""
    blocks: list[Block] = sections([group_line(line) for line in lines])
    paging = any(line.critical and line.what != "resolve" for line in lines)
    notes = ["Each check's state: `/release health`."]
    if paging and oncall:
        notes.insert(0, f"On call: {oncall_mentions(oncall)}")
    blocks.append(context(" · ".join(notes)))
    if open_members:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"incidents:{group_id}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": INCIDENT_GROUP_ACK,
                        "text": {"type": "plain_text", "text": f"Acknowledge all {open_members}"},
                        "value": json.dumps({"g": group_id}),
                    }
                ],
            }
        )
    return blocks


def group_acknowledged_reply(user: str, count: int) -> list[Block]:
    noun = "incident" if count == 1 else "incidents"
    return [context(f"👀 {mention(user)} acknowledged {count} {noun}; no more reminders.")]


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def window_summary(summary: WindowSummary, minutes: float) -> list[Block]:
    icon = VERDICT_ICONS.get(summary.verdict, "")
    compare = f" (`{summary.previous_version}`: " if summary.previous_version else " ("
    return [
        section(
            f"{icon} *{summary.environment}* after {minutes:g} min of `{summary.version}`: "
            f"*{summary.verdict}*"
        ),
        fields(
            [
                ("Checks run", f"{summary.checks_run:,}"),
                ("Failures", f"{summary.failures:,} ({summary.error_rate:.1f}%)"),
                ("p50 latency", f"{_ms(summary.p50_ms)}{compare}{_ms(summary.previous_p50_ms)})"),
                ("p95 latency", f"{_ms(summary.p95_ms)}{compare}{_ms(summary.previous_p95_ms)})"),
            ]
        ),
        context(f"Latency over the window: {summary.sparkline or 'no answers'}"),
    ]


HEALTH_LINES = 40  # checks shown one per line; the rest are counted


def health_report(rows: list[dict[str, Any]], now: float) -> list[Block]:
    """`/release health`: one line per check, those in trouble first (`health_rows` sorts
    them so), the first HEALTH_LINES of them; the others are counted by how they are."""
    if not rows:
        return [
            section(
                "No health checks are configured. Add `[[environments.checks]]` to "
                "the config (see the README)."
            )
        ]
    blocks: list[Block] = [header("Health checks")]
    lines: list[str] = []
    for row in rows[:HEALTH_LINES]:
        last: Result | None = row["last"]
        incident: Incident | None = row["incident"]
        alerting: str = row.get("alerting", "")
        if incident is not None:
            state = (
                f"{SEVERITY_ICONS.get(incident.severity, '🔴')} {incident.severity} for "
                f"{format_age(incident.duration(now))}: {escape(incident.problem)}"
            )
        elif alerting and last is not None and not last.ok:
            state = (
                f"{SEVERITY_ICONS.get(alerting, '🔴')} {alerting}, failing "
                f"{row['failing']} in a row: {escape(last.problem)}"
            )
        elif alerting:
            state = f"↗️ recovering from {alerting} (its incident ends after good results)"
        elif last is None:
            state = "⬜ not run yet"
        elif last.ok:
            state = "✅ healthy"
        else:
            state = f"⚠️ failing ({row['failing']} in a row): {escape(last.problem)}"
        line = f"*{row['environment']}* · {row['check']} — {state}"
        if last is not None:
            line += (
                f"\n      p50 {_ms(row['p50'])} · p95 {_ms(row['p95'])} over "
                f"{row['samples']} · last {format_age(now - last.at)} ago"
            )
        failure: Result | None = row["last_failure"]
        if failure is not None:
            line += f"\n      last failure {slack_time(failure.at)}: {escape(failure.problem)}"
        lines.append(line)
    rest = rows[HEALTH_LINES:]
    if not rest:
        return [*blocks, *sections(lines)][:50]
    healthy = sum(
        1
        for r in rest
        if r["last"] is not None and r["last"].ok and not r["incident"] and not r.get("alerting")
    )
    unrun = sum(1 for r in rest if r["last"] is None)
    others = len(rest) - healthy - unrun
    counts = [f"{healthy} healthy"] if healthy else []
    counts += [f"{unrun} not run yet"] if unrun else []
    counts += [f"{others} failing"] if others else []
    note = context(
        f"…and {len(rest)} more checks ({', '.join(counts)}); "
        "`/release health ENVIRONMENT` shows one environment."
    )
    return [*[*blocks, *sections(lines)][:49], note]
