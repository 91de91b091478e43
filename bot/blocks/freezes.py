"""Block Kit for a freeze request ([freeze] required above 0): who asks to freeze what until
when and why, its approvals, and Approve / Reject while it waits (no buttons once decided)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bot.blocks.actions import FREEZE_APPROVE, FREEZE_REJECT
from bot.blocks.release import (
    Block,
    confirm_dialog,
    context,
    escape,
    local_time,
    mention,
    mention_all,
    section,
)
from bot.domain.approval_policy import approvals_text
from bot.domain.config import ApprovalPolicy
from bot.domain.freeze_requests import FreezeRequest, missing


def when(at: float, timezone: str) -> str:
    """Like "2026-12-27 09:00 Europe/Berlin", in the team's zone ([freeze] timezone)."""
    return local_time(datetime.fromtimestamp(at, UTC), timezone)


def request_text(request: FreezeRequest, timezone: str) -> str:
    """The request's headline, also the message's fallback text."""
    return (
        f"🧊 {mention(request.requester)} asks to freeze *{request.environment}* until "
        f"{when(request.until, timezone)}: {escape(request.reason)}"
    )


def request_message(
    request: FreezeRequest, policy: ApprovalPolicy, timezone: str
) -> tuple[str, list[Block]]:
    """The request's message and its text: what it waits for and its buttons while it waits;
    how it ended, without buttons, once it did."""
    text = request_text(request, timezone)
    blocks: list[Block] = [section(text)]
    approved = ", ".join(mention(a.user_id) for a in request.approvals)
    if request.status == "waiting":
        who = mention_all(policy.approvers) or "anyone"
        lines = [
            f"Needs {approvals_text(missing(request, policy), more=True)} from {who}"
            + (f" · approved by {approved}" if approved else "")
            + ".",
            f"Unapproved, it expires at {when(request.expires_at, timezone)}.",
        ]
        blocks.append(context(" ".join(lines)))
        value = json.dumps({"r": request.id})
        blocks.append(
            {
                "type": "actions",
                "block_id": f"freeze:{request.id}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": FREEZE_APPROVE,
                        "style": "primary",
                        "text": {"type": "plain_text", "text": "Approve freeze"},
                        "value": value,
                        "confirm": confirm_dialog(
                            "Approve this freeze?",
                            f"Promotions, release deploys and flag rollouts to "
                            f"{request.environment} wait until {when(request.until, timezone)}.",
                            "Approve",
                        ),
                    },
                    {
                        "type": "button",
                        "action_id": FREEZE_REJECT,
                        "style": "danger",
                        "text": {"type": "plain_text", "text": "Reject"},
                        "value": value,
                        "confirm": confirm_dialog(
                            "Reject this freeze?",
                            f"{request.environment} is not frozen, and this request ends.",
                            "Reject",
                        ),
                    },
                ],
            }
        )
        return text, blocks
    decided = when(request.decided_at or request.requested_at, timezone)
    if request.status == "set":
        outcome = f"✅ In effect since {decided}, approved by {approved}."
    elif request.status == "rejected":
        outcome = f"❌ Rejected by {mention(request.decided_by)} at {decided}; not frozen."
    else:
        outcome = (
            f"⌛ Expired at {when(request.expires_at, timezone)} without its approvals"
            + (f" (approved by {approved})" if approved else "")
            + "; not frozen."
        )
    blocks.append(context(outcome))
    return f"{text} · {outcome}", blocks


def waiting_line(request: FreezeRequest, missing_now: int, timezone: str) -> str:
    """⏳ *production* freeze until …, asked by @alice: why — needs 1 more approval,
    unapproved it expires at …: a request in `/release status`."""
    return (
        f"⏳ *{request.environment}* freeze until {when(request.until, timezone)} asked by "
        f"{mention(request.requester)}: {escape(request.reason)} — needs "
        f"{approvals_text(missing_now, more=True)}, unapproved it expires at "
        f"{when(request.expires_at, timezone)}"
    )
