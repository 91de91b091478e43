"""The real bot as the scenario tests drive it: signed HTTP requests into its web server."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bot.adapters.redis.connect import target_from_env
from bot.devtools.slack_stand_in import SlackStandIn, validate_blocks
from bot.runtime.container import Services
from bot.runtime.settings import Settings
from bot.runtime.web import Bot
from tests.helpers.redis_server import REDIS_URL
from tests.helpers.signing import SIGNING_SECRET, sign
from tests.helpers.slack_requests import (
    Shown,
    click_payload,
    command_body,
    form_payload,
    interaction_body,
)

BOT_TOKEN = "xoxb-test"


def make_settings(
    prefix: str,
    slack: SlackStandIn,
    state_dir: Path,
    redis_url: str = REDIS_URL,
    post_interval: float = 0.05,
    tag_sync_interval: float = 60.0,
    redis_env: dict[str, str] | None = None,
) -> Settings:
    """`redis_env` (REDIS_SENTINELS and the like, read as `Settings.from_env` reads them)
    points the bot at a Redis of the test's own that `redis_url` cannot name alone."""
    target = target_from_env(redis_env) if redis_env else None
    return Settings(
        bot_token=BOT_TOKEN,
        signing_secret=SIGNING_SECRET,
        redis_url=(target.url or None) if target else redis_url,
        redis_sentinels=target.sentinels if target else (),
        redis_sentinel_master=target.master if target else "",
        redis_sentinel_tls=target.sentinel_tls if target else False,
        redis_tls_ca_file=target.ca_file if target else None,
        slack_api_url=slack.base_url,
        state_dir=state_dir,
        redis_prefix=prefix,
        update_delay=0.2,
        # Paced, but quicker than Slack's second: the pace itself is tested on its own.
        post_interval=post_interval,
        tag_sync_interval=tag_sync_interval,
    )


@dataclass
class RunningBot:
    bot: Bot
    services: Services
    slack: SlackStandIn
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.bot.port}"

    def command_body(
        self,
        text: str,
        *,
        command: str = "/release",
        user: str = "U0ALICE",
        user_name: str = "alice",
        trigger_id: str | None = None,
        channel: str | None = None,
    ) -> str:
        """The body of `command text`, typed in #dev (or in `channel`, "#name")."""
        where = {}
        if channel is not None:
            where["channel"] = (self.slack.channel_id(channel), channel.lstrip("#"))
        return command_body(
            text,
            self.slack.response_url(user),
            command=command,
            user=user,
            user_name=user_name,
            trigger_id=trigger_id,
            **where,
        )

    async def post(self, body: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        async with self.http.post(f"{self.url}/slack/events", data=body, headers=headers) as resp:
            text = await resp.text()
            try:
                data = json.loads(text) if text else {}
            except json.JSONDecodeError:
                data = {"raw": text}
            return resp.status, data

    async def click(
        self,
        message: Shown,
        action_id: str,
        *,
        user: str = "U0BOB",
        user_name: str = "bob",
        gate: str | None = None,
    ) -> tuple[int, str]:
        """Press a button of a posted message, as Slack would send it (signed)."""
        for block in message.blocks:
            for element in block.get("elements", []) if block.get("type") == "actions" else []:
                if element.get("action_id") != action_id:
                    continue
                if gate and json.loads(element["value"])["g"] != gate:
                    continue
                payload = click_payload(
                    message,
                    block,
                    element,
                    self.slack.response_url(user),
                    user=user,
                    user_name=user_name,
                    channel_name=self.slack.channel_name(message.channel),
                )
                return await self._interact(payload)
        raise AssertionError(f"no {action_id} button for {gate} in the message")

    async def submit_view(
        self,
        view: dict[str, Any],
        values: dict[str, str],
        *,
        user: str = "U0BOB",
        user_name: str = "bob",
    ) -> tuple[int, str]:
        """Send a form, `values` mapping its input blocks' ids to what was typed."""
        return await self._interact(form_payload(view, values, user=user, user_name=user_name))

    async def _interact(self, payload: dict[str, Any]) -> tuple[int, str]:
        body = interaction_body(payload)
        async with self.http.post(
            f"{self.url}/slack/events", data=body, headers=sign(body)
        ) as resp:
            return resp.status, await resp.text()

    async def command(self, text: str, **kwargs: Any) -> dict[str, Any]:
        """Send a signed slash command; the ack must be valid Block Kit, like every message."""
        body = self.command_body(text, **kwargs)
        status, data = await self.post(body, sign(body))
        assert status == 200, (status, data)
        assert data.get("text"), data
        assert validate_blocks(data.get("blocks", []), where="ack") == [], data
        return data
