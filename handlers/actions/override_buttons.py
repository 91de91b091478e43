"""Approve emergency override on a release message: ack at once, then record the approval
(and promote once the override's policy is met) and answer privately."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond

from bot.runtime.container import Services
from bot.services import emergency
from handlers.answers import answer_click
from handlers.button_clicks import on_one


async def approve_override_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, approve_override(context["services"], body))


async def approve_override(services: Services, body: dict[str, Any]) -> str:
    return await on_one(services, body, "override.approve", emergency.approve, field="v")
