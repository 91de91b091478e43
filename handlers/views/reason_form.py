"""What the Reject and Rollback forms share: a required reason, who sent it, and a private
answer in the channel the form was opened from."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext
from slack_sdk.errors import SlackApiError

from bot.commands import CommandError, check_text
from bot.store import Actor


async def take_reason(ack: AsyncAck, view: dict[str, Any],
                      why: str) -> tuple[str, dict[str, Any]] | None:
    """The reason and the form's metadata, or None (after telling Slack what is wrong)."""
    values = view.get("state", {}).get("values", {})
    typed = str((values.get("reason", {}).get("reason", {}) or {}).get("value") or "")
    # The box is multi-line for typing comfort; the reason is kept as one line.
    reason = " ".join(typed.split())
    if len(reason) < 3:
        await ack(response_action="errors", errors={"reason": why})
        return None
    try:
        check_text("reason", reason)
    except CommandError as exc:
        await ack(response_action="errors", errors={"reason": str(exc)})
        return None
    await ack()
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return None  # not a form we made
    return (reason, meta) if isinstance(meta, dict) else None


def sender(body: dict[str, Any], channel: str) -> Actor:
    user = body.get("user") or {}
    return Actor(str(user.get("id", "")), str(user.get("username") or user.get("name") or ""),
                 channel)


async def answer_privately(context: AsyncBoltContext, actor: Actor, text: str) -> None:
    if actor.channel:
        # A courtesy: the thread already says what happened.
        with contextlib.suppress(SlackApiError):
            await context.client.chat_postEphemeral(channel=actor.channel,
                                                    user=actor.user_id, text=text)
