"""Block Kit for feature flags: the list, and the message of one change request."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from bot.blocks.actions import FLAG_CANCEL
from bot.blocks.release import (
    Block,
    confirm_dialog,
    context,
    escape,
    mention,
    needs_text,
    section,
    sections,
    slack_time,
)
from bot.domain.approval_policy import approvals_text
from bot.domain.config import Config
from bot.domain.flags import Flag

if TYPE_CHECKING:
    from bot.domain.flag_requests import FlagRequest

STATUS_ICONS = {
    "awaiting approval": "🕒",
    "approved": "⏳",
    "applying": "⏳",
    "ramping": "📈",
    "done": "✅",
    "failed": "❌",
    "cancelled": "🚫",
    "voided": "🚫",
    "conflict": "⚠️",
    "stopped": "⏹",
}


def note(text: str) -> list[Block]:
    return [section(text)]


def problem(text: str) -> list[Block]:
    return [section(f":warning: {text}")]


def duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def change_words(request: FlagRequest) -> str:
    if request.operation == "ramp":
        steps = ", ".join(f"{p}%" for p in request.steps)
        return f"ramp {request.name} {steps}, every {duration(request.every_seconds)}"
    if request.operation == "set":
        return f"set {request.name} to {request.percentage}%"
    return f"{request.operation} {request.name}"


def waiting_line(request: FlagRequest, missing: int) -> str:
    """🚩 enable new-checkout, asked by @alice …: why — needs 2 more approvals: a flag change
    in `/release status`."""
    why = f": {escape(request.description)}" if request.description else ""
    return (
        f"🚩 {escape(change_words(request))}, asked by {mention(request.requester)} "
        f"{slack_time(request.created_at)}{why} — {needs_text(missing)}"
    )


def request_text(request: FlagRequest) -> str:
    return f"🚩 {change_words(request)} ({request.status})"


def request_message(request: FlagRequest, config: Config) -> list[Block]:
    icon = STATUS_ICONS.get(request.status, "🚩")
    lines = [
        f"🚩 *{escape(change_words(request))}* · {icon} {request.status}",
        f"Requested by {mention(request.requester)} · was {request.before or '—'}"
        + (f" · now {request.after}" if request.after else ""),
    ]
    if request.description:
        lines.append(escape(request.description))
    blocks: list[Block] = [section("\n".join(lines))]
    policy = config.flags.policy
    if request.approvals:
        who = ", ".join(mention(a.user_id) for a in request.approvals)
        blocks.append(context(f"Approved by {who}"))
    if request.status == "awaiting approval":
        missing = policy.required - len(request.approvals)
        blocks.append(
            context(
                f"Needs {approvals_text(missing, more=True)} from "
                + (
                    ", ".join(
                        mention(a) if not a.startswith("S") else f"<!subteam^{a}>"
                        for a in policy.approvers
                    )
                    if policy.approvers
                    else "anyone but the requester"
                )
            )
        )
        blocks.append(
            {
                "type": "actions",
                "block_id": f"flag:{request.id}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "flag_approve",
                        "style": "primary",
                        "text": {"type": "plain_text", "text": "Approve"},
                        "value": json.dumps({"r": request.id}),
                        "confirm": confirm_dialog(
                            "Approve this flag change?",
                            f"{change_words(request)} in {config.flags_environment.name}.",
                            "Approve",
                        ),
                    },
                    {
                        "type": "button",
                        "action_id": FLAG_CANCEL,
                        "text": {"type": "plain_text", "text": "Cancel"},
                        "value": json.dumps({"r": request.id}),
                    },
                ],
            }
        )
    # The outcome in the message itself, not only in its thread: the kill switch's message is
    # posted once it is over, with no thread before it.
    outcome = [f"Commit `{request.commit[:10]}`"] if request.commit else []
    if request.detail:
        outcome.append(escape(request.detail))
    elif request.commit:
        outcome.append("details in the thread")
    if outcome:
        blocks.append(context(" · ".join(outcome)))
    return blocks


def list_message(flags: dict[str, Flag], path: str, sha: str) -> list[Block]:
    if not flags:
        return [
            section(f'No flags in `{path}` yet; `/flag create NAME --description "…"` makes one.')
        ]
    lines = [
        f"{'🟢' if f.enabled else '⚪'} `{f.name}` — {'on' if f.enabled else 'off'}, "
        f"{f.rollout_percentage}%" + (f" · {escape(f.description)}" if f.description else "")
        for f in sorted(flags.values(), key=lambda f: f.name)
    ]
    return [*sections(lines)[:49], context(f"`{path}` at `{sha[:10]}`")]
