"""Retry deploy on a release message: ack at once, then queue the deploy again and answer."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond

from bot.runtime.container import Services
from bot.services import clicks, deploy_release
from handlers.answers import answer_click
from handlers.payloads import button_value, click_actor, clicked_message


async def retry_clicked(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    await ack()
    await answer_click(respond, retry(context["services"], body))


async def retry(services: Services, body: dict[str, Any]) -> str:
    actor, value = click_actor(body), button_value(body)
    if value is None or "v" not in value or "e" not in value:
        return await clicks.refused(
            services, actor, "deploy.retry", "damaged button", "This button is damaged."
        )
    if value["e"] not in {env.name for env in services.config.environments}:
        return await clicks.refused(
            services,
            actor,
            "deploy.retry",
            f"unknown environment {value['e']!r}",
            "This button names an environment the config no longer has.",
        )
    return await deploy_release.retry_deploy(
        services, actor, value["v"], value["e"], clicked_message(body)
    )
