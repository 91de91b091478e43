"""Approve and Cancel on a flag change request."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond

from bot.runtime.container import Services
from bot.services import change_flags
from handlers.answers import answer_click
from handlers.button_clicks import on_one


async def approve_flag_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, approve(context["services"], body))


async def approve(services: Services, body: dict[str, Any]) -> str:
    return await on_one(services, body, "flag.approve", change_flags.approve)


async def cancel_flag_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, cancel(context["services"], body))


async def cancel(services: Services, body: dict[str, Any]) -> str:
    return await on_one(services, body, "flag.cancel", change_flags.cancel)
