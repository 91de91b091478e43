"""Approve and Reject on a freeze request ([freeze] required above 0): ack at once, then the
use case records the click (bound to the request's own message) and answers privately."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond

from bot.runtime.container import Services
from bot.services import approve_freezes
from handlers.answers import answer_click
from handlers.button_clicks import on_one


async def approve_freeze_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, approve(context["services"], body))


async def approve(services: Services, body: dict[str, Any]) -> str:
    return await on_one(services, body, "freeze.approve", approve_freezes.approve)


async def reject_freeze_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, reject(context["services"], body))


async def reject(services: Services, body: dict[str, Any]) -> str:
    return await on_one(services, body, "freeze.reject", approve_freezes.reject)
