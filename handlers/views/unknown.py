"""A form this bot does not know: answered in the form and audited, never dropped."""

from __future__ import annotations

import contextlib
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext

from bot.blocks import release as messages
from bot.runtime.container import STORE_UNREACHABLE
from bot.runtime.logs import loggable
from bot.services import clicks
from handlers.payloads import click_actor

TEXT = "I do not know this form, so nothing was done."


async def unknown_submitted(
    ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
) -> None:
    await ack(response_action="update", view=messages.notice_view("Not sent", TEXT))
    with contextlib.suppress(*STORE_UNREACHABLE):  # answered already; the log keeps the rest
        await clicks.refused(
            context["services"],
            click_actor(body, channel=""),
            "form",
            f"unknown form {loggable(view.get('callback_id', ''), 80)}",
            TEXT,
        )
