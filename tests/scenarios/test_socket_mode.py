"""Socket Mode: the stand-in's side of it (apps.connections.open, hello, envelopes and acks), and
the real bot started with an app-level token answering /release over the WebSocket."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import release as messages
from bot.commands.release import CommandError, parse_release_command
from bot.devtools.slack_stand_in import APP_ID, SlackStandIn
from bot.domain.config import Config
from bot.runtime import web as bot_app
from bot.runtime.container import Services
from bot.runtime.web import Bot
from tests.helpers.bot import BOT_TOKEN, make_settings
from tests.helpers.config import make_config
from tests.helpers.repos import GitRemote
from tests.helpers.signing import sign

APP_TOKEN = "xapp-1-test"


def round_trip(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Blocks as they arrive after a trip through JSON."""
    return json.loads(json.dumps(blocks))


# --- the stand-in ---------------------------------------------------------------------------


async def open_socket(
    slack: SlackStandIn, http: aiohttp.ClientSession
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    """Connect the way slack_sdk does; return the socket and the hello message."""
    client = AsyncWebClient(token=slack.token, base_url=slack.base_url)
    url = (await client.apps_connections_open(app_token=APP_TOKEN))["url"]
    ws = await http.ws_connect(url)
    hello = await ws.receive_json(timeout=5)
    return ws, hello


async def test_connections_open_takes_only_an_app_token(slack: SlackStandIn) -> None:
    client = AsyncWebClient(token=slack.token, base_url=slack.base_url)
    resp = await client.apps_connections_open(app_token=APP_TOKEN)
    assert resp["url"].startswith(f"ws://127.0.0.1:{slack.port}/socket/")
    with pytest.raises(SlackApiError) as err:
        await client.apps_connections_open(app_token=BOT_TOKEN)
    assert err.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as err:
        await AsyncWebClient(token=APP_TOKEN, base_url=slack.base_url).auth_test()
    assert err.value.response["error"] == "not_allowed_token_type"
    assert [c.ok for c in slack.calls_to("apps.connections.open")] == [True, False]

    async with SlackStandIn(app_token="xapp-only-this") as strict:
        client = AsyncWebClient(base_url=strict.base_url)
        with pytest.raises(SlackApiError) as err:
            await client.apps_connections_open(app_token=APP_TOKEN)
        assert err.value.response["error"] == "invalid_auth"
        assert (await client.apps_connections_open(app_token="xapp-only-this"))["ok"]


async def test_hello_then_an_envelope_and_its_ack(slack: SlackStandIn) -> None:
    async with aiohttp.ClientSession() as http:
        ws, hello = await open_socket(slack, http)
        assert hello["type"] == "hello"
        assert hello["num_connections"] == 1
        assert hello["connection_info"] == {"app_id": APP_ID}
        await slack.socket_connected()

        payload = slack.slash_command_payload("help")
        sending = asyncio.create_task(slack.send_slash_command(payload))
        envelope = await ws.receive_json(timeout=5)
        assert envelope["type"] == "slash_commands"
        assert envelope["accepts_response_payload"] is True
        assert envelope["payload"] == payload
        ack = {
            "envelope_id": envelope["envelope_id"],
            "payload": {"text": "hi", "blocks": messages.note("hi")},
        }
        await ws.send_json(ack)
        assert await sending == ack
        [call] = slack.calls_to("socket_mode.ack")
        assert call.ok
        assert call.params["_envelope_id"] == envelope["envelope_id"]
        assert call.params["_envelope_type"] == "slash_commands"
        assert slack.text_of(call) == "hi\nhi"
        await ws.close()
        await slack.wait_for(lambda: slack.socket_connections == [])


async def test_bad_acks_are_reported() -> None:
    async with SlackStandIn() as slack, aiohttp.ClientSession() as http:
        ws, _ = await open_socket(slack, http)

        async def answer(send: Any, ack_payload: Any) -> dict[str, Any]:
            task = asyncio.create_task(send)
            envelope = await ws.receive_json(timeout=5)
            await ws.send_json({"envelope_id": envelope["envelope_id"], "payload": ack_payload})
            await task
            return envelope

        bad_blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": ""}}]
        await answer(
            slack.send_slash_command(slack.slash_command_payload()),
            {"text": "x", "blocks": bad_blocks},
        )
        await answer(slack.send_event({"type": "app_mention", "text": "hi"}), {"text": "hm"})
        envelope = await answer(
            slack.send_interactive({"type": "view_submission", "view": {}}),
            {"response_action": "update", "view": {"type": "modal", "blocks": bad_blocks}},
        )
        await ws.send_json({"envelope_id": envelope["envelope_id"]})
        await ws.send_json({"envelope_id": "never-sent"})
        await slack.wait_for(lambda: len(slack.calls_to("socket_mode.ack")) == 5)
        errors = [c.error for c in slack.calls_to("socket_mode.ack")]
        assert errors == [
            "invalid_blocks",
            "invalid_payload",
            "invalid_blocks",
            "duplicate_ack",
            "unknown_envelope",
        ]
        assert len(slack.invalid) == 3, slack.invalid
        assert "events_api envelope takes no response payload" in slack.invalid[1]
        await ws.close()


async def test_an_unacked_envelope_times_out(slack: SlackStandIn) -> None:
    async with aiohttp.ClientSession() as http:
        ws, _ = await open_socket(slack, http)
        with pytest.raises(AssertionError, match=r"was not acked within 0\.20s"):
            await slack.send_slash_command(slack.slash_command_payload(), timeout=0.2)
        envelope = await ws.receive_json(timeout=5)
        await ws.send_json({"envelope_id": envelope["envelope_id"]})
        [late] = await slack.wait_for(lambda: slack.calls_to("socket_mode.ack"))
        assert late.error == "expired_envelope"
        await ws.close()


async def test_no_client_and_unknown_socket_urls(slack: SlackStandIn) -> None:
    with pytest.raises(AssertionError, match="no Socket Mode client connected"):
        await slack.send_slash_command(slack.slash_command_payload(), timeout=0.1)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{slack.port}/socket/nope") as resp,
    ):
        assert resp.status == 404
    assert slack.calls_to("socket_mode.connect")[0].error == "invalid_url"


async def test_stopping_closes_open_sockets() -> None:
    async with aiohttp.ClientSession() as http:
        slack = SlackStandIn()
        await slack.start()
        ws, _ = await open_socket(slack, http)
        await asyncio.wait_for(slack.stop(), 5)
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


# --- the bot in Socket Mode -----------------------------------------------------------------


@pytest.fixture
def config(git_remote: GitRemote, tmp_path: Path) -> Config:
    return make_config(git_remote, tmp_path)


@pytest.fixture
async def socket_bot(
    prefix: str, redis: Redis, slack: SlackStandIn, config: Config, tmp_path: Path
) -> AsyncIterator[Bot]:
    """The web role started as `SLACK_APP_TOKEN` would start it."""
    settings = dataclasses.replace(
        make_settings(prefix, slack, tmp_path / "state-socket"), app_token=APP_TOKEN
    )
    bot = Bot(Services.create(settings, config), "web")
    try:
        # Bolt's Socket Mode client retries a failed connection for ever; fail instead.
        await asyncio.wait_for(bot.start(port=0, host="127.0.0.1"), 15)
        yield bot
    finally:
        await bot.stop()


async def command(slack: SlackStandIn, text: str) -> dict[str, Any]:
    """`/release <text>` over the socket: the ack's payload (what the person sees)."""
    ack = await slack.send_slash_command(slack.slash_command_payload(text))
    assert set(ack) == {"envelope_id", "payload"}, ack
    payload: dict[str, Any] = ack["payload"]
    return payload


async def test_the_bot_connects_through_the_stand_in(socket_bot: Bot, slack: SlackStandIn) -> None:
    await slack.socket_connected()
    assert [c.ok for c in slack.calls_to("apps.connections.open")] == [True]
    assert [c.ok for c in slack.calls_to("socket_mode.connect")] == [True]
    assert len(slack.socket_connections) == 1


async def test_help_over_the_socket(socket_bot: Bot, slack: SlackStandIn) -> None:
    for text in ("help", ""):
        answer = await command(slack, text)
        assert answer["response_type"] == "ephemeral"
        assert answer["blocks"] == round_trip(messages.help_message())
        assert "/release rc" in slack.text_of(answer)
    assert [c.ok for c in slack.calls_to("socket_mode.ack")] == [True, True]
    assert slack.calls_to("response_url") == []  # the answer came with the ack


async def test_status_over_the_socket(socket_bot: Bot, slack: SlackStandIn) -> None:
    answer = await command(slack, "status")
    assert answer["response_type"] == "ephemeral"
    assert answer["blocks"]
    text = slack.text_of(answer)
    assert "nothing deployed yet" in text
    assert "No releases in flight" in text
    assert "No environment is locked" in text


async def test_bad_command_over_the_socket(socket_bot: Bot, slack: SlackStandIn) -> None:
    with pytest.raises(CommandError) as expected:
        parse_release_command("deploy prod")
    answer = await command(slack, "deploy prod")
    assert answer["response_type"] == "ephemeral"
    assert answer["text"] == str(expected.value)
    assert "don't know `/release deploy`" in answer["text"]
    assert "/release rc" in slack.text_of(answer)  # the usage comes with it
    assert slack.calls_to("chat.postMessage") == []


@pytest.mark.parametrize("text", ["help", "", "status", "deploy prod", "rc --force", "status now"])
async def test_socket_mode_answers_as_http_does(
    socket_bot: Bot, start_bot: Any, config: Config, slack: SlackStandIn, text: str
) -> None:
    http_bot = await start_bot(config, role="web", name="http")
    assert await command(slack, text) == await http_bot.command(text)


async def test_socket_mode_serves_healthz_but_not_events(
    socket_bot: Bot, slack: SlackStandIn
) -> None:
    url = f"http://127.0.0.1:{socket_bot.port}"
    body = "command=%2Frelease&text=help"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/slack/events", data=body, headers=sign(body)) as resp:
            assert resp.status == 404
        async with http.get(f"{url}/healthz") as resp:
            assert resp.status == 200
            assert await resp.json() == {"ok": True, "redis": "ok"}


async def test_the_bot_reconnects_when_slack_asks(socket_bot: Bot, slack: SlackStandIn) -> None:
    first = await slack.socket_connected()
    await slack.disconnect_sockets()
    await slack.wait_for(lambda: slack.socket_connections and slack.socket_connections != [first])
    assert len(slack.calls_to("apps.connections.open")) == 2
    assert "/release rc" in slack.text_of(await command(slack, "help"))


async def test_without_an_app_token_there_is_no_socket(
    start_bot: Any, config: Config, slack: SlackStandIn
) -> None:
    bot = await start_bot(config, role="web")
    assert "/release rc" in slack.text_of(await bot.command("help"))
    assert slack.calls_to("apps.connections.open") == []
    assert slack.socket_connections == []


@pytest.mark.skipif(
    not hasattr(bot_app, "SocketModeError"),
    reason="bot/runtime/web.py does not fail fast on a refused app token yet",
)
async def test_a_refused_app_token_stops_start_up(
    prefix: str, redis: Redis, config: Config, tmp_path: Path
) -> None:
    async with SlackStandIn(token=BOT_TOKEN, app_token="xapp-the-real-one") as slack:
        settings = dataclasses.replace(
            make_settings(prefix, slack, tmp_path / "state"), app_token=APP_TOKEN
        )
        bot = Bot(Services.create(settings, config), "web")
        try:
            with pytest.raises(bot_app.SocketModeError, match="invalid_auth"):
                await asyncio.wait_for(bot.start(port=0, host="127.0.0.1"), 15)
        finally:
            await bot.stop()
        assert [c.error for c in slack.calls_to("apps.connections.open")] == ["invalid_auth"]
        assert slack.socket_connections == []
