"""The Waive form: a reason is required; the waiver is asked and told privately."""

from __future__ import annotations

import asyncio
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext

from bot.runtime.container import STORE_UNREACHABLE
from bot.services import decide
from handlers.answers import AFTER_ACK_BUDGET, CLICK_STORE_DOWN
from handlers.views.reason_form import answer_privately, take_form


async def waive_submitted(
    ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
) -> None:
    services = context["services"]
    taken = await take_form(
        ack, body, view, services, "waive", "Say why it may go on although it failed."
    )
    if taken is None:
        return
    reason, form, actor = taken
    try:
        answer = await asyncio.wait_for(
            decide.ask_waiver(
                services, actor, form["v"], form["g"], reason, (form["channel"], form["ts"])
            ),
            AFTER_ACK_BUDGET,
        )
    except STORE_UNREACHABLE:
        answer = CLICK_STORE_DOWN
    await answer_privately(context, actor, answer)
