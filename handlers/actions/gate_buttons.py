"""The buttons of a release message's gates (Approve, Reject, Re-run, Waive, Approve waiver):
ack at once, then act and answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond
from slack_sdk.errors import SlackApiError

from bot.blocks import release as messages
from bot.domain.actors import Actor
from bot.domain.releases import Gate, Release
from bot.runtime.container import Services
from bot.services import clicks, decide, deploy_release
from handlers.answers import answer_click
from handlers.payloads import button_value, click_actor, clicked_message, of_service

DAMAGED = "That button is damaged; use the buttons on the release message."


async def approve_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, approve(context["services"], body))


async def approve(services: Services, body: dict[str, Any]) -> str:
    actor, value = click_actor(body), button_value(body)
    if value is None or "v" not in value or "g" not in value:
        return await clicks.refused(services, actor, "gate.approve", "damaged button", DAMAGED)
    return await decide.approve(services, actor, value["v"], value["g"], clicked_message(body))


async def reject_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, open_reject_form(context["services"], body, context))


async def open_reject_form(
    services: Services, body: dict[str, Any], context: AsyncBoltContext
) -> str:
    actor, value, where = click_actor(body), button_value(body), clicked_message(body)
    if value is None or "v" not in value or "g" not in value:
        return await clicks.refused(services, actor, "gate.reject", "damaged button", DAMAGED)
    version, gate_id = value["v"], value["g"]
    refusal = await decide.may_decide(services, actor, version, gate_id, where)
    release = await services.store.get_release(version)
    if refusal is not None or release is None:
        return await clicks.refused(
            services,
            actor,
            "gate.reject",
            f"{gate_id}: {refusal}",
            f"You cannot reject this: {refusal}.",
        )
    return await _open_gate_form(
        services, actor, body, context, "reject", release, gate_id, messages.reject_view
    )


async def rerun_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, rerun(context["services"], body))


async def rerun(services: Services, body: dict[str, Any]) -> str:
    actor, value = click_actor(body), button_value(body)
    if value is None or "v" not in value or "g" not in value:
        return await clicks.refused(services, actor, "gate.rerun", "damaged button", DAMAGED)
    return await deploy_release.rerun_gate(
        services, actor, value["v"], value["g"], clicked_message(body)
    )


async def waive_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, open_waive_form(context["services"], body, context))


async def open_waive_form(
    services: Services, body: dict[str, Any], context: AsyncBoltContext
) -> str:
    actor, value = click_actor(body), button_value(body)
    if value is None or "v" not in value or "g" not in value:
        return await clicks.refused(services, actor, "gate.waive", "damaged button", DAMAGED)
    version, gate_id = value["v"], value["g"]
    release = await services.store.get_release(version)
    if release is None or not any(g.id == gate_id for g in release.gates):
        return await clicks.refused(
            services, actor, "gate.waive", f"{version}: {gate_id}: gone", DAMAGED
        )
    return await _open_gate_form(
        services, actor, body, context, "waive", release, gate_id, messages.waive_view
    )


async def approve_waiver_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, approve_waiver(context["services"], body))


async def approve_waiver(services: Services, body: dict[str, Any]) -> str:
    actor, value = click_actor(body), button_value(body)
    if value is None or "v" not in value or "g" not in value:
        return await clicks.refused(
            services, actor, "gate.waive-approve", "damaged button", DAMAGED
        )
    return await decide.approve_waiver(
        services, actor, value["v"], value["g"], clicked_message(body)
    )


async def _open_gate_form(
    services: Services,
    actor: Actor,
    body: dict[str, Any],
    context: AsyncBoltContext,
    kind: Literal["reject", "waive"],
    release: Release,
    gate_id: str,
    view: Callable[[Release, Gate, str], dict[str, Any]],
) -> str:
    """Opens the Reject or Waive form of a gate: its ticket remembers the message clicked, so
    the submission is bound to it as the click was."""
    where = clicked_message(body)
    ticket = await clicks.open_form(
        services,
        actor,
        kind,
        {"v": release.version, "g": gate_id, "channel": where[0], "ts": where[1]},
        release=release.version,
    )
    try:
        await context.client.views_open(
            trigger_id=body["trigger_id"],
            view=of_service(view(release, release.gate(gate_id), ticket), services.config.service),
        )
    except SlackApiError as exc:
        return (
            f"Slack would not open the form ({exc.response.get('error')}); click "
            f"{kind.capitalize()} again."
        )
    return ""  # the form is the answer
