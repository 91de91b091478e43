"""The Rollback form: a reason is required; then the rollback is asked for, as by command."""

from __future__ import annotations

import asyncio
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext

from bot.runtime.container import STORE_UNREACHABLE
from bot.services import roll_back
from handlers.answers import AFTER_ACK_BUDGET, CLICK_STORE_DOWN
from handlers.views.reason_form import answer_privately, take_form


async def rollback_submitted(
    ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
) -> None:
    services = context["services"]
    taken = await take_form(
        ack, body, view, services, "rollback", "Say why, so the team knows what to fix."
    )
    if taken is None:
        return
    reason, form, actor = taken
    try:
        answer = await asyncio.wait_for(
            roll_back.request_rollback(
                services,
                actor,
                form["e"],
                None,
                reason,
                services.store.clock(),
                expect_from=form["v"],
            ),
            AFTER_ACK_BUDGET,
        )
    except STORE_UNREACHABLE:
        await answer_privately(context, actor, CLICK_STORE_DOWN)
        return
    await answer_privately(context, actor, answer.text)
    if answer.post is not None:
        await answer.post()
