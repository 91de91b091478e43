"""Approve and Cancel on a flag change request."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond

from bot.runtime.container import Services
from bot.services import change_flags, clicks
from handlers.answers import answer_click
from handlers.payloads import button_value, click_actor, clicked_message


async def approve_flag_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, approve(context["services"], body))


async def approve(services: Services, body: dict[str, Any]) -> str:
    actor, value = click_actor(body), button_value(body)
    if value is None or "r" not in value:
        return await clicks.refused(
            services, actor, "flag.approve", "damaged button", "This button is damaged."
        )
    return await change_flags.approve(services, actor, value["r"], clicked_message(body))


async def cancel_flag_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, cancel(context["services"], body))


async def cancel(services: Services, body: dict[str, Any]) -> str:
    actor, value = click_actor(body), button_value(body)
    if value is None or "r" not in value:
        return await clicks.refused(
            services, actor, "flag.cancel", "damaged button", "This button is damaged."
        )
    return await change_flags.cancel(services, actor, value["r"], clicked_message(body))
