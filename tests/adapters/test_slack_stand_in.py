"""Tests for the Slack Web API stand-in, driven through slack_sdk's real async clients."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.models.blocks import ButtonElement, HeaderBlock, SectionBlock
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.devtools.slack_stand_in import Message, RecordedCall, SlackStandIn


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def client(slack: SlackStandIn) -> AsyncWebClient:
    return AsyncWebClient(token=slack.token, base_url=slack.base_url)


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


async def test_base_url_and_lifecycle() -> None:
    stand_in = SlackStandIn(token="xoxb-other")
    with pytest.raises(RuntimeError):
        _ = stand_in.base_url
    await stand_in.start()
    try:
        assert stand_in.base_url.startswith("http://127.0.0.1:")
        assert stand_in.base_url.endswith("/api/")
        resp = await AsyncWebClient(token="xoxb-other", base_url=stand_in.base_url).auth_test()
        assert resp["ok"]
    finally:
        await stand_in.stop()


async def test_auth_test(slack: SlackStandIn, client: AsyncWebClient) -> None:
    resp = await client.auth_test()
    assert resp["user"] == "releasebot"
    assert resp["team_id"] == "T0TEST"
    assert resp["user_id"] == "U0BOT"
    assert resp["bot_id"] == "B0BOT"
    assert resp["url"].startswith("https://")
    [call] = slack.calls_to("auth.test")
    assert isinstance(call, RecordedCall)
    assert call.ok and call.status == 200


async def test_post_and_update_are_reflected_in_messages(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(
        channel="#releases",
        text="Release 1.2.0 started",
        blocks=[HeaderBlock(text="Release 1.2.0"), section("*Status:* building")],
    )
    assert posted["channel"] == "CRELEASES"
    ts = posted["ts"]
    assert ts == "1700000000.000100"
    assert posted["message"]["text"] == "Release 1.2.0 started"
    assert posted["message"]["bot_id"] == "B0BOT"

    updated = await client.chat_update(
        channel=posted["channel"],
        ts=ts,
        text="Release 1.2.0 deployed",
        blocks=[
            HeaderBlock(text="Release 1.2.0"),
            SectionBlock(
                text="*Status:* deployed",
                accessory=ButtonElement(text="Roll back", action_id="rollback", value="1.2.0"),
            ),
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": "by <@U123>"}],
            },
        ],
    )
    assert updated["ts"] == ts
    assert updated["channel"] == "CRELEASES"

    messages = slack.messages()
    assert list(messages) == [ts]
    message = messages[ts]
    assert isinstance(message, Message)
    assert message.channel == "CRELEASES"
    assert message.text == "Release 1.2.0 deployed"
    assert message.updates == 1
    assert message.thread_ts is None
    assert len(message.blocks) == 3
    text = slack.text_of(message)
    for expected in ("Release 1.2.0 deployed", "*Status:* deployed", "Roll back", "by <@U123>"):
        assert expected in text
    assert "building" not in text
    assert slack.invalid == []

    # The channel name form maps to the same id, so updating by name works too.
    await client.chat_update(channel="releases", ts=ts, text="again")
    assert slack.messages()[ts].updates == 2
    assert slack.messages()[ts].blocks, "blocks are kept when chat.update omits them"


async def test_ts_unique_and_increasing(client: AsyncWebClient) -> None:
    stamps = [(await client.chat_postMessage(channel="C1", text=str(i)))["ts"] for i in range(5)]
    assert len(set(stamps)) == 5
    assert stamps == sorted(stamps, key=float)
    assert all(len(ts.split(".")[1]) == 6 for ts in stamps)


async def test_update_of_unknown_message_fails(slack: SlackStandIn, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="CRELEASES", text="x")
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="CRELEASES", ts="1.000000", text="y")
    assert err.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="COTHER", ts=posted["ts"], text="y")
    assert err.value.response["error"] == "message_not_found"
    assert len(slack.calls_to("chat.update")) == 2


async def test_thread_replies(slack: SlackStandIn, client: AsyncWebClient) -> None:
    parent = await client.chat_postMessage(channel="#releases", text="parent")
    other = await client.chat_postMessage(channel="#releases", text="other")
    r1 = await client.chat_postMessage(channel="CRELEASES", thread_ts=parent["ts"], text="one")
    await client.chat_postMessage(channel="CRELEASES", thread_ts=other["ts"], text="elsewhere")
    r2 = await client.chat_postMessage(channel="CRELEASES", thread_ts=parent["ts"], text="two")
    assert r1["message"]["thread_ts"] == parent["ts"]

    replies = slack.thread(parent["ts"])
    assert [m.text for m in replies] == ["one", "two"]
    assert [m.ts for m in replies] == [r1["ts"], r2["ts"]]
    assert all(m.thread_ts == parent["ts"] for m in replies)
    assert [m.text for m in slack.channel_messages("#releases")] == ["parent", "other"]

    link = await client.chat_getPermalink(channel="CRELEASES", message_ts=r1["ts"])
    assert link["permalink"].endswith(f"thread_ts={parent['ts']}&cid=CRELEASES")


@pytest.mark.parametrize(
    ("blocks", "fragment"),
    [
        ([{"type": "no_such_block"}], "unknown block type"),
        ([{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}], "header"),
        ([section("s" * 3001)], "3000"),
        ([section(str(i)) for i in range(51)], "no more than 50"),
        ([section("")], "more than 0 characters"),
        ([{"type": "section"}], "text or fields"),
        ([{"type": "actions", "elements": [{"type": "bogus_button"}]}], "unknown element type"),
        ([{**section("a"), "block_id": "b"}, {**section("b"), "block_id": "b"}], "duplicate"),
        (
            [
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": "a",
                            "text": {"type": "plain_text", "text": "x" * 80},
                        }
                    ],
                }
            ],
            "75",
        ),
    ],
)
async def test_invalid_blocks_are_rejected_and_recorded(
    slack: SlackStandIn, client: AsyncWebClient, blocks: list, fragment: str
) -> None:
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="#releases", text="fallback", blocks=blocks)
    assert err.value.response["error"] == "invalid_blocks"
    assert err.value.response["errors"]
    assert slack.invalid, "the rejection must be recorded"
    assert any(fragment in desc for desc in slack.invalid), slack.invalid
    assert slack.messages() == {}
    [call] = slack.calls_to("chat.postMessage")
    assert call.error == "invalid_blocks"
    assert call.params["blocks"] == blocks


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
async def test_message_without_text_or_blocks_is_rejected(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="#releases")
    assert err.value.response["error"] == "no_text"
    assert slack.invalid == ["chat.postMessage: needs text, blocks or attachments"]


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
async def test_invalid_blocks_in_update_keep_the_message(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(channel="#releases", text="ok", blocks=[section("a")])
    with pytest.raises(SlackApiError):
        await client.chat_update(channel="CRELEASES", ts=posted["ts"], blocks=[{"type": "bogus"}])
    message = slack.messages()[posted["ts"]]
    assert message.updates == 0
    assert message.blocks == [section("a")]
    assert len(slack.invalid) == 1


async def test_form_encoded_blocks_are_decoded(slack: SlackStandIn, client: AsyncWebClient) -> None:
    blocks = [section("from a form")]
    resp = await client.api_call(
        "chat.postMessage",
        data={"channel": "#releases", "text": "t", "blocks": json.dumps(blocks)},
    )
    assert resp["ok"]
    [call] = slack.calls_to("chat.postMessage")
    assert call.params["blocks"] == blocks
    assert slack.messages()[resp["ts"]].blocks == blocks

    # Token in the form body instead of the Authorization header also authenticates.
    with pytest.raises(SlackApiError) as err:
        await AsyncWebClient(base_url=slack.base_url).api_call(
            "chat.postMessage",
            data={
                "token": slack.token,
                "channel": "C1",
                "text": "t",
                "blocks": json.dumps([{"type": "bogus"}]),
            },
        )
    assert err.value.response["error"] == "invalid_blocks"
    assert "token" not in slack.calls[-1].params


async def test_invalid_auth_and_not_authed(slack: SlackStandIn) -> None:
    wrong = AsyncWebClient(token="xoxb-wrong", base_url=slack.base_url)
    with pytest.raises(SlackApiError) as err:
        await wrong.chat_postMessage(channel="#releases", text="hi")
    assert err.value.response.status_code == 200
    assert err.value.response["error"] == "invalid_auth"

    anonymous = AsyncWebClient(base_url=slack.base_url)
    with pytest.raises(SlackApiError) as err:
        await anonymous.auth_test()
    assert err.value.response["error"] == "not_authed"

    assert [c.method for c in slack.calls] == ["chat.postMessage", "auth.test"]
    assert slack.messages() == {}


async def test_ratelimit_retried_by_slack_sdk(slack: SlackStandIn) -> None:
    client = AsyncWebClient(
        token=slack.token,
        base_url=slack.base_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    slack.fail_next("chat.postMessage", retry_after=1)
    started = time.monotonic()
    resp = await client.chat_postMessage(channel="#releases", text="eventually")
    elapsed = time.monotonic() - started
    assert resp["ok"]
    assert elapsed >= 1.0
    first, second = slack.calls_to("chat.postMessage")
    assert (first.status, first.error) == (429, "ratelimited")
    assert second.ok
    assert second.at - first.at >= 1.0
    assert [m.text for m in slack.messages().values()] == ["eventually"]


async def test_ratelimit_without_retry_handler(slack: SlackStandIn, client: AsyncWebClient) -> None:
    slack.fail_next("users.info", retry_after=7, times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as err:
            await client.users_info(user="U1")
        assert err.value.response.status_code == 429
        assert err.value.response["error"] == "ratelimited"
        assert err.value.response.headers["retry-after"] in ("7", ["7"])
    assert (await client.users_info(user="U1"))["ok"]
    assert len(slack.calls_to("users.info")) == 3


async def test_server_error_injection(slack: SlackStandIn, client: AsyncWebClient) -> None:
    slack.fail_next("chat.postMessage", status=503)
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == 503


async def test_error_next_surfaces_as_slack_api_error(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    slack.error_next("chat.postMessage", "channel_not_found")
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="#gone", text="x")
    assert err.value.response.status_code == 200
    assert err.value.response["error"] == "channel_not_found"
    assert slack.messages() == {}
    # Only the next call is affected; other methods never are.
    assert (await client.auth_test())["ok"]
    assert (await client.chat_postMessage(channel="#gone", text="x"))["ok"]
    assert [c.error for c in slack.calls_to("chat.postMessage")] == ["channel_not_found", None]


async def test_response_url_recorded(slack: SlackStandIn, client: AsyncWebClient) -> None:
    url = slack.response_url("approve")
    assert url.startswith(f"http://127.0.0.1:{slack.port}/response/")
    assert url != slack.response_url("approve")

    resp = await AsyncWebhookClient(url).send(
        text="Approved by <@U1>", blocks=[section("Approved")], response_type="ephemeral"
    )
    assert resp.status_code == 200
    assert resp.body == "ok"
    [call] = slack.calls_to("response_url")
    assert call.params["_id"] == url.rsplit("/", 1)[1]
    assert call.params["text"] == "Approved by <@U1>"
    assert call.params["blocks"] == [section("Approved")]
    assert "Approved" in slack.text_of(call)

    bad = await AsyncWebhookClient(url).send(text="x", blocks=[{"type": "bogus"}])
    assert bad.status_code == 400
    assert bad.body == "invalid_blocks"
    assert len(slack.invalid) == 1

    unknown = await AsyncWebhookClient(url.rsplit("/", 1)[0] + "/nope").send(text="x")
    assert unknown.status_code == 404


async def test_response_url_replace_and_delete_original(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(channel="#releases", text="Approve 1.2.0?")
    url = slack.response_url("approve", channel="#releases", message_ts=posted["ts"])
    await AsyncWebhookClient(url).send(text="Approved", replace_original=True)
    message = slack.messages()[posted["ts"]]
    assert (message.text, message.updates) == ("Approved", 1)
    await AsyncWebhookClient(url).send(delete_original=True)
    assert slack.messages() == {}


async def test_directory_methods(slack: SlackStandIn, client: AsyncWebClient) -> None:
    default = (await client.users_info(user="U42ABC"))["user"]
    assert default["id"] == "U42ABC"
    assert default["name"] == "u42abc"
    assert default["profile"]["display_name"] == "u42abc"

    slack.users["U1"] = {"name": "alice", "real_name": "Alice A", "profile": {"display_name": "Al"}}
    alice = (await client.users_info(user="U1"))["user"]
    assert (alice["name"], alice["real_name"]) == ("alice", "Alice A")
    assert alice["profile"]["display_name"] == "Al"
    assert alice["profile"]["real_name"] == "Alice A"

    slack.usergroups["S1"] = ["U1", "U2"]
    assert (await client.usergroups_users_list(usergroup="S1"))["users"] == ["U1", "U2"]
    with pytest.raises(SlackApiError) as err:
        await client.usergroups_users_list(usergroup="S404")
    assert err.value.response["error"] == "no_such_subteam"

    await client.chat_postMessage(channel="#release-train", text="x")
    info = (await client.conversations_info(channel="CRELEASE_TRAIN"))["channel"]
    assert (info["id"], info["name"], info["is_channel"]) == (
        "CRELEASE_TRAIN",
        "release-train",
        True,
    )

    eph = await client.chat_postEphemeral(channel="#releases", user="U1", text="psst")
    assert eph["message_ts"]
    assert slack.messages().keys() == {m.ts for m in slack.channel_messages("#release-train")}

    dm = await client.chat_postMessage(channel="U1", text="hello")
    assert dm["channel"] == "D1"

    with pytest.raises(SlackApiError) as err:
        await client.api_call("reactions.add", params={"name": "tada"})
    assert err.value.response["error"] == "unknown_method"
    slack.on("reactions.add", lambda params: {})
    assert (await client.api_call("reactions.add", params={"name": "tada"}))["ok"]
    assert slack.invalid == []


async def test_views(slack: SlackStandIn, client: AsyncWebClient) -> None:
    view = {
        "type": "modal",
        "callback_id": "approve",
        "title": {"type": "plain_text", "text": "Approve release"},
        "submit": {"type": "plain_text", "text": "Approve"},
        "blocks": [section("Approve 1.2.0?")],
    }
    opened = await client.views_open(trigger_id="123.456", view=view)
    view_id = opened["view"]["id"]
    assert view_id.startswith("V")
    updated = await client.views_update(view_id=view_id, view={**view, "blocks": [section("b")]})
    assert updated["view"]["id"] == view_id
    assert slack.views[view_id]["blocks"] == [section("b")]
    assert slack.invalid == []

    with pytest.raises(SlackApiError) as err:
        await client.views_push(
            trigger_id="1", view={**view, "title": {"type": "plain_text", "text": "t" * 30}}
        )
    assert err.value.response["error"] == "invalid_blocks"
    assert any("title" in desc for desc in slack.invalid)
    assert [c.method for c in slack.calls] == ["views.open", "views.update", "views.push"]


def test_text_of_rich_text_and_payloads() -> None:
    rich = {
        "type": "rich_text",
        "elements": [
            {
                "type": "rich_text_section",
                "elements": [
                    {"type": "text", "text": "shipped by "},
                    {"type": "user", "user_id": "U1"},
                    {"type": "emoji", "name": "rocket"},
                ],
            }
        ],
    }
    fields = {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Version*\n1.2.0"}]}
    message = Message(
        channel="C1", ts="1.0", text="fallback", blocks=[rich, fields], thread_ts=None
    )
    text = SlackStandIn.text_of(message)
    assert text.splitlines()[0] == "fallback"
    for expected in ("shipped by", "<@U1>", ":rocket:", "*Version*", "1.2.0"):
        assert expected in text
    assert SlackStandIn.text_of({"text": "a", "blocks": [section("b")]}) == "a\nb"
    assert SlackStandIn.text_of([section("c")]) == "c"


async def test_wait_for(slack: SlackStandIn, client: AsyncWebClient) -> None:
    await client.chat_postMessage(channel="#releases", text="hello")
    found = await slack.wait_for(lambda: slack.calls_to("chat.postMessage"))
    assert found[0].params["text"] == "hello"

    started = time.monotonic()
    with pytest.raises(AssertionError) as err:
        await slack.wait_for(lambda: slack.calls_to("chat.update"), timeout=0.2)
    assert time.monotonic() - started >= 0.2
    message = str(err.value)
    assert "within 0.20s" in message
    assert "chat.postMessage" in message and "hello" in message

    with pytest.raises(AssertionError, match="KeyError"):
        await slack.wait_for(lambda: slack.messages()["nope"], timeout=0.05)
