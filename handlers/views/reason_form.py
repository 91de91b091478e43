"""What the Reject and Rollback forms share: a required reason, the click that opened the form
(its ticket), who sent it, and a private answer in the channel the form was opened from."""

from __future__ import annotations

import contextlib
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext
from slack_sdk.errors import SlackApiError

from bot.blocks import release as messages
from bot.commands.release import CommandError, check_text
from bot.domain.actors import Actor
from bot.runtime.container import STORE_UNREACHABLE, Services
from bot.services import clicks
from handlers.answers import STORE_DOWN, before_ack
from handlers.payloads import click_actor, form_metadata

NOT_OURS = (
    "This form was not opened for you by releasebot, or it was sent already, so "
    "nothing was done. Click the button on the message again."
)


async def take_form(
    ack: AsyncAck,
    body: dict[str, Any],
    view: dict[str, Any],
    services: Services,
    kind: str,
    why: str,
) -> tuple[str, dict[str, str], Actor] | None:
    """The reason, what the form is about (from the ticket of the click that opened it) and
    who sent it from where; or None, after telling the sender in the form what is wrong."""
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
    sender = click_actor(body, channel="")
    meta = form_metadata(view) or {}
    try:
        form = await before_ack(clicks.take_form(services, meta.get("t", ""), sender.user_id, kind))
    except STORE_UNREACHABLE:
        await ack(response_action="update", view=messages.notice_view("Not sent", STORE_DOWN))
        return None
    if form is None:
        await ack(response_action="update", view=messages.notice_view("Not sent", NOT_OURS))
        with contextlib.suppress(*STORE_UNREACHABLE):  # answered already
            await clicks.refused(
                services,
                sender,
                f"form.{kind}",
                "a form the bot did not open for this person, or sent twice",
                NOT_OURS,
            )
        return None
    await ack()
    return reason, form, Actor(sender.user_id, sender.user_name, form.get("channel", ""))


async def answer_privately(context: AsyncBoltContext, actor: Actor, text: str) -> None:
    if actor.channel:
        # A courtesy: the thread already says what happened.
        with contextlib.suppress(SlackApiError):
            await context.client.chat_postEphemeral(
                channel=actor.channel, user=actor.user_id, text=text
            )
