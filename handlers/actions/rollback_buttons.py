"""The Rollback button of a live release (or of an incident), and Approve on a rollback
request."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond
from slack_sdk.errors import SlackApiError

from bot.blocks import release as messages
from bot.runtime.container import Services
from bot.services import clicks, roll_back
from handlers.answers import answer_click
from handlers.button_clicks import on_one
from handlers.payloads import button_value, click_actor, clicked_message, of_service

ON_REQUEST = "That button is damaged; use the one on the request."


async def rollback_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, open_rollback_form(context["services"], body, context))


async def open_rollback_form(
    services: Services, body: dict[str, Any], context: AsyncBoltContext
) -> str:
    actor, value, where = click_actor(body), button_value(body), clicked_message(body)
    if value is None or "e" not in value or "v" not in value:
        return await clicks.refused(
            services,
            actor,
            "rollback.request",
            "damaged button",
            "That button is damaged; use `/release rollback` instead.",
        )
    env, version = value["e"], value["v"]
    refusal = await roll_back.may_roll_back_from(services, env, version, where)
    if refusal is not None:
        return await clicks.refused(services, actor, "rollback.request", refusal, refusal)
    ticket = await clicks.open_form(
        services,
        actor,
        "rollback",
        {"e": env, "v": version, "channel": where[0], "ts": where[1]},
        environment=env,
    )
    try:
        await context.client.views_open(
            trigger_id=body["trigger_id"],
            view=of_service(messages.rollback_view(env, version, ticket), services.config.service),
        )
    except SlackApiError as exc:
        return f"Slack would not open the form ({exc.response.get('error')}); click again."
    return ""  # the form is the answer


async def approve_rollback_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, approve(context["services"], body))


async def approve(services: Services, body: dict[str, Any]) -> str:
    return await on_one(
        services, body, "rollback.approve", roll_back.approve_rollback, damaged=ON_REQUEST
    )


async def cancel_rollback_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, cancel(context["services"], body))


async def cancel(services: Services, body: dict[str, Any]) -> str:
    return await on_one(
        services, body, "rollback.cancel", roll_back.cancel_rollback, damaged=ON_REQUEST
    )
