"""A click on a button this bot does not know (an old message, another app's id, a forged
payload): answered and audited, never dropped."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond

from bot.runtime.container import Services
from bot.runtime.logs import loggable
from bot.services import clicks
from handlers.answers import answer_click
from handlers.payloads import action_id, click_actor


async def unknown_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, refuse(context["services"], body))


async def refuse(services: Services, body: dict[str, Any]) -> str:
    name = loggable(action_id(body), 80)
    return await clicks.refused(
        services,
        click_actor(body),
        "click",
        f"unknown button {name}",
        "I do not know this button, so nothing was done. Use the "
        "buttons on the bot's newest messages, or `/release help`.",
    )
