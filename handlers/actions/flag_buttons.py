"""Approve on a flag change request."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond

from bot import flag_jobs, messages
from bot.services import Services
from handlers.actions.rollback_buttons import actor_of


async def approve_flag_clicked(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext,
                               respond: AsyncRespond) -> None:
    await ack()
    services: Services = context["services"]
    try:
        request_id = str(json.loads(body["actions"][0]["value"])["r"])
    except (KeyError, IndexError, TypeError, ValueError):
        request_id = ""
    answer = await flag_jobs.approve(services, actor_of(body), request_id) if request_id \
        else "This button is damaged."
    await respond(response_type="ephemeral", replace_original=False, text=answer,
                  blocks=messages.note(answer))
