"""Acknowledge on an incident message, and Acknowledge all on a summary of many: reminders
stop, and every click is audited."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond

from bot.runtime.container import Services
from bot.services import clicks, monitor_health
from handlers.answers import answer_click
from handlers.payloads import button_value, click_actor, clicked_message


async def acknowledge_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, acknowledge(context["services"], body))


async def acknowledge(services: Services, body: dict[str, Any]) -> str:
    actor, value = click_actor(body), button_value(body)
    if value is None or not {"e", "c", "i"} <= set(value):
        return await clicks.refused(
            services,
            actor,
            "incident.ack",
            "damaged button",
            "This button is damaged; use `/release health` to see the incident.",
        )
    return await monitor_health.acknowledge(
        services, actor, value["e"], value["c"], value["i"], clicked_message(body)
    )


async def acknowledge_all_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, acknowledge_all(context["services"], body))


async def acknowledge_all(services: Services, body: dict[str, Any]) -> str:
    actor, value = click_actor(body), button_value(body)
    if value is None or not isinstance(value.get("g"), str):
        return await clicks.refused(
            services,
            actor,
            "incident.ack",
            "damaged button",
            "This button is damaged; use `/release health` to see the incidents.",
        )
    return await monitor_health.acknowledge_group(
        services, actor, value["g"], clicked_message(body)
    )
