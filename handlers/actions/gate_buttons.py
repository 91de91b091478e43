"""Approve and Reject buttons on a release message: ack at once, then decide and answer."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond
from slack_sdk.errors import SlackApiError

from bot import decisions, messages
from bot.services import Services
from bot.store import Actor


def clicked(body: dict[str, Any]) -> tuple[Actor, str, str] | None:
    """Who clicked, and which release and gate the button was for (None if malformed)."""
    try:
        value = json.loads(body["actions"][0]["value"])
        version, gate_id = str(value["v"]), str(value["g"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    user = body.get("user") or {}
    channel = (body.get("channel") or {}).get("id", "")
    return Actor(str(user.get("id", "")), str(user.get("username") or user.get("name") or ""),
                 channel), version, gate_id


async def approve_clicked(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext,
                          respond: AsyncRespond) -> None:
    await ack()
    found = clicked(body)
    if found is None:
        await respond(response_type="ephemeral", replace_original=False,
                      text="That button is damaged; use the buttons on the release message.")
        return
    actor, version, gate_id = found
    services: Services = context["services"]
    answer = await decisions.approve(services, actor, version, gate_id)
    await respond(response_type="ephemeral", replace_original=False, text=answer,
                  blocks=messages.note(answer))


async def reject_clicked(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext,
                         respond: AsyncRespond) -> None:
    await ack()
    found = clicked(body)
    services: Services = context["services"]
    if found is None:
        await respond(response_type="ephemeral", replace_original=False,
                      text="That button is damaged; use the buttons on the release message.")
        return
    actor, version, gate_id = found
    refusal = await decisions.may_decide(services, actor, version, gate_id)
    release = await services.store.get_release(version)
    if refusal is not None or release is None:
        await services.store.audit(actor, "gate.reject", release=version, outcome="refused",
                                   reason=f"{gate_id}: {refusal}")
        text = f"You cannot reject this: {refusal}."
        await respond(response_type="ephemeral", replace_original=False, text=text,
                      blocks=messages.problem(text))
        return
    try:
        await context.client.views_open(
            trigger_id=body["trigger_id"],
            view=messages.reject_view(release, release.gate(gate_id), actor.channel))
    except SlackApiError as exc:
        text = (f"Slack would not open the form ({exc.response.get('error')}); click Reject "
                "again.")
        await respond(response_type="ephemeral", replace_original=False, text=text)
