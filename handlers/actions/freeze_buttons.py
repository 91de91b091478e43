"""Approve and Reject on a freeze request ([freeze] required above 0): ack at once, then the
use case records the click (bound to the request's own message) and answers privately."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond

from bot.runtime.container import Services
from bot.services import approve_freezes, clicks
from handlers.answers import answer_click
from handlers.payloads import button_value, click_actor, clicked_message


async def approve_freeze_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, approve(context["services"], body))


async def approve(services: Services, body: dict[str, Any]) -> str:
    actor, value = click_actor(body), button_value(body)
    if value is None or "r" not in value:
        return await clicks.refused(
            services, actor, "freeze.approve", "damaged button", "This button is damaged."
        )
    return await approve_freezes.approve(services, actor, value["r"], clicked_message(body))


async def reject_freeze_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, reject(context["services"], body))


async def reject(services: Services, body: dict[str, Any]) -> str:
    actor, value = click_actor(body), button_value(body)
    if value is None or "r" not in value:
        return await clicks.refused(
            services, actor, "freeze.reject", "damaged button", "This button is damaged."
        )
    return await approve_freezes.reject(services, actor, value["r"], clicked_message(body))
