"""Acknowledge on an incident message: reminders stop, and the click is audited."""

from __future__ import annotations

import json
from typing import Any

from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond

from bot import messages, monitor
from bot.services import Services
from handlers.actions.rollback_buttons import actor_of


async def acknowledge_clicked(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext,
                              respond: AsyncRespond) -> None:
    await ack()
    services: Services = context["services"]
    try:
        value = json.loads(body["actions"][0]["value"])
        env, check, incident_id = str(value["e"]), str(value["c"]), str(value["i"])
    except (KeyError, IndexError, TypeError, ValueError):
        text = "This button is damaged; use `/release health` to see the incident."
        await respond(response_type="ephemeral", replace_original=False, text=text,
                      blocks=messages.problem(text))
        return
    try:
        answer = await monitor.acknowledge(services, actor_of(body), env, check, incident_id)
    except RedisError:
        answer = "I cannot reach my state store (Redis); nothing was recorded. Try again."
    await respond(response_type="ephemeral", replace_original=False, text=answer,
                  blocks=messages.note(answer))
