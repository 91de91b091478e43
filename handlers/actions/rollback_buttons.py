"""The Rollback button of a live release, and Approve on a rollback request."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond
from slack_sdk.errors import SlackApiError

from bot import messages, rollback_jobs
from bot.services import Services
from bot.store import Actor


def actor_of(body: dict[str, Any]) -> Actor:
    user = body.get("user") or {}
    return Actor(str(user.get("id", "")), str(user.get("username") or user.get("name") or ""),
                 str((body.get("channel") or {}).get("id", "")))


def _value(body: dict[str, Any]) -> dict[str, str]:
    try:
        value = json.loads(body["actions"][0]["value"])
    except (KeyError, IndexError, TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


async def rollback_clicked(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext,
                           respond: AsyncRespond) -> None:
    await ack()
    services: Services = context["services"]
    value = _value(body)
    env, version = value.get("e", ""), value.get("v", "")
    current = (await services.store.environment_versions([env])).get(env, {}) if env else {}
    if not env or current.get("version") != version:
        text = (f"*{env or 'That environment'}* no longer runs `{version}`, so this button "
                "would roll back something else; use `/release rollback` instead.")
        await respond(response_type="ephemeral", replace_original=False, text=text,
                      blocks=messages.problem(text))
        return
    actor = actor_of(body)
    try:
        await context.client.views_open(trigger_id=body["trigger_id"],
                                        view=messages.rollback_view(env, version,
                                                                    actor.channel))
    except SlackApiError as exc:
        await respond(response_type="ephemeral", replace_original=False,
                      text=f"Slack would not open the form ({exc.response.get('error')}).")


async def approve_rollback_clicked(ack: AsyncAck, body: dict[str, Any],
                                   context: AsyncBoltContext, respond: AsyncRespond) -> None:
    await ack()
    services: Services = context["services"]
    request_id = _value(body).get("r", "")
    answer = await rollback_jobs.approve_rollback(services, actor_of(body), request_id)
    await respond(response_type="ephemeral", replace_original=False, text=answer,
                  blocks=messages.note(answer))
