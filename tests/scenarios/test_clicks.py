"""Every command and click is answered in time, also while Redis hangs; every damaged, unknown
or forged click and form is answered and audited; decisions count only on their own message;
one candidate per double submission; one user-group lookup per burst. All through the real
HTTP server with signed requests."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from dataclasses import dataclass, field
from typing import Any

from tests.helpers.config import make_config
from tests.helpers.messages import release_message, wait_for_gates
from tests.helpers.redis_server import RedisServer
from tests.helpers.signing import sign
from tests.helpers.steps import APPROVAL_POLICY, message_of, staged


@dataclass
class FakeMessage:
    """A message as a click carries it: what the bot posted, or a copy someone made."""

    channel: str
    ts: str
    blocks: list[dict[str, Any]]
    text: str = ""
    thread_ts: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def button(action_id: str, value: str) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": "b",
        "elements": [
            {
                "type": "button",
                "action_id": action_id,
                "value": value,
                "text": {"type": "plain_text", "text": "Press"},
            }
        ],
    }


def buttons_message(*pairs: tuple[str, str]) -> FakeMessage:
    return FakeMessage("CRELEASES", "1700000099.000100", [button(a, v) for a, v in pairs])


async def flag(bot, text: str) -> tuple[int, dict[str, Any], float]:
    body = bot.command_body(text, command="/flag")
    started = time.monotonic()
    status, data = await bot.post(body, sign(body))
    return status, data, time.monotonic() - started


async def release(bot, text: str) -> tuple[int, dict[str, Any], float]:
    body = bot.command_body(text)
    started = time.monotonic()
    status, data = await bot.post(body, sign(body))
    return status, data, time.monotonic() - started


def answers_for(bot, user: str) -> list[str]:
    return [
        bot.slack.text_of(c.params)
        for c in bot.slack.calls_to("response_url")
        if c.params.get("_id", "").startswith(user)
    ]


# --- Redis hung --------------------------------------------------------------------------------


async def test_every_command_and_click_is_answered_in_time_while_redis_hangs(
    start_bot, git_remote, tmp_path
):
    """The repro: /release rollback, /flag set and /flag disable were not acknowledged within
    3 s with Redis hung (paused, not down)."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        bot = await start_bot(make_config(git_remote, tmp_path), redis_url=server.url)
        assert "/release rc" in bot.slack.text_of(await bot.command("help"))
        server.pause()
        commands = [
            (release, t)
            for t in (
                "rc",
                "rc --dry-run",
                'hotfix --description "crash"',
                "final",
                'rollback --reason "errors"',
                'rollback staging --reason "errors"',
                'lock staging --reason "migration"',
                "unlock staging",
                "status",
                "health",
                "audit",
            )
        ]
        commands += [
            (flag, t)
            for t in (
                "set new_search 10",
                "enable new_search",
                "disable new_search",
                'create dark_mode --description "Dark"',
                "ramp new_search 10,50 --every 1h",
                "ramp new_search --stop",
            )
        ]
        results = await asyncio.gather(*(send(bot, text) for send, text in commands))
        for (_, text), (status, data, took) in zip(commands, results, strict=True):
            assert status == 200 and took < 3.0, (text, status, took)
            assert data.get("text"), (text, data)
            if text not in ("audit", "health"):  # these are read after their ack
                assert "state store" in bot.slack.text_of(data), (text, data)

        clicks = [
            ("gate_approve", json.dumps({"v": "0.15.0-rc.1", "g": "qa"}), "U0A1"),
            ("gate_reject", json.dumps({"v": "0.15.0-rc.1", "g": "qa"}), "U0A2"),
            ("rollback_start", json.dumps({"e": "production", "v": "0.15.0"}), "U0A3"),
            ("rollback_approve", json.dumps({"r": "abc"}), "U0A4"),
            ("flag_approve", json.dumps({"r": "abc"}), "U0A5"),
            ("incident_ack", json.dumps({"e": "staging", "c": "health", "i": "x"}), "U0A6"),
        ]
        started = time.monotonic()
        statuses = await asyncio.gather(
            *(
                bot.click(buttons_message((action, value)), action, user=user)
                for action, value, user in clicks
            )
        )
        assert all(status == 200 for status, _ in statuses)
        assert time.monotonic() - started < 3.0
        for _, _, user in clicks:
            text = await bot.slack.wait_for(lambda u=user: answers_for(bot, u), timeout=15)
            # Redis hangs: nothing is known yet, and the answer says no more than that.
            assert "could not confirm your click" in text[0], (user, text)
        # Redis answers again: every click's work ends, and each person hears how, after.
        server.resume()
        for _, _, user in clicks:
            texts = await bot.slack.wait_for(
                lambda u=user: len(answers_for(bot, u)) >= 2 and answers_for(bot, u), timeout=30
            )
            assert len(texts) == 2, (user, texts)
            assert texts[1].startswith(("Your click from a moment ago: ", "I could not finish")), (
                user,
                texts,
            )
    finally:
        server.resume()
        server.stop()


# --- damaged, unknown and forged clicks ----------------------------------------------------


async def test_damaged_and_unknown_clicks_are_answered_and_audited(start_bot, git_remote, tmp_path):
    bot = await staged(start_bot, git_remote, tmp_path)
    real = message_of(bot)
    cases = [
        ("gate_approve", "not json", "U0C1", "damaged"),
        ("gate_approve", json.dumps(["v", "g"]), "U0C2", "damaged"),
        ("gate_approve", json.dumps({"v": "9.9.9", "g": "qa"}), "U0C3", "no release"),
        ("gate_reject", json.dumps({"v": "0.15.0-rc.1"}), "U0C4", "damaged"),
        ("rollback_start", "{", "U0C5", "damaged"),
        ("rollback_approve", json.dumps({"r": "nope"}), "U0C6", "gone"),
        ("flag_approve", json.dumps({"r": "nope"}), "U0C7", "gone"),
        ("incident_ack", json.dumps({"e": "staging", "c": "nope", "i": "x"}), "U0C8", "no check"),
        ("who_knows_this", "x", "U0C9", "do not know this button"),
    ]
    for action, value, user, fragment in cases:
        message = FakeMessage(real.channel, real.ts, [button(action, value)])
        status, _ = await bot.click(message, action, user=user)
        assert status == 200, action
        text = await bot.slack.wait_for(lambda u=user: answers_for(bot, u), timeout=10)
        assert fragment in text[0], (action, text)
    entries = await bot.services.store.audit_entries()
    refused = {e["user_id"] for e in entries if e["outcome"] == "refused"}
    assert {user for _, _, user, _ in cases} <= refused
    assert (await bot.services.store.get_release("0.15.0-rc.1")).gate("qa").approvals == []


async def test_a_click_on_a_copy_of_the_release_message_counts_for_nothing(
    start_bot, git_remote, tmp_path
):
    bot = await staged(start_bot, git_remote, tmp_path)
    real = message_of(bot)
    copied = FakeMessage(real.channel, "1700009999.000001", copy.deepcopy(real.blocks))
    await bot.click(copied, "gate_approve", gate="qa", user="U0BOB")
    text = await bot.slack.wait_for(lambda: answers_for(bot, "U0BOB"))
    assert "not on the release message" in text[0]
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release.gate("qa").approvals == []
    refusals = [
        e
        for e in await bot.services.store.audit_entries("0.15.0-rc.1")
        if e["action"] == "gate.approve" and e["outcome"] == "refused"
    ]
    assert refusals and "not on the release message" in refusals[0]["reason"]
    await bot.click(real, "gate_approve", gate="qa", user="U0BOB")  # the real one counts
    await bot.slack.wait_for(lambda: len(answers_for(bot, "U0BOB")) == 2)
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert [a.user_id for a in release.gate("qa").approvals] == ["U0BOB"]


async def test_a_form_counts_only_from_the_click_that_opened_it_once(
    start_bot, git_remote, tmp_path
):
    bot = await staged(start_bot, git_remote, tmp_path)
    await bot.click(message_of(bot), "gate_reject", gate="qa", user="U0BOB")
    opened = await bot.slack.wait_for(lambda: bot.slack.calls_to("views.open"))
    view = opened[0].params["view"]
    forged = {**view, "private_metadata": json.dumps({"t": "made-up"})}
    broken = {**view, "private_metadata": "not json"}
    stranger = await bot.submit_view(
        view, {"reason": "someone else sends bob's form"}, user="U0CAROL"
    )
    for status, body in (
        stranger,
        await bot.submit_view(forged, {"reason": "forged form"}),
        await bot.submit_view(broken, {"reason": "broken form"}),
    ):
        assert status == 200
        assert "was not opened for you" in body and json.loads(body)["response_action"] == "update"
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release.gate("qa").rejection is None
    status, _ = await bot.submit_view(view, {"reason": "checkout broken"}, user="U0BOB")
    assert status == 200
    await bot.slack.wait_for(lambda: "rejected by <@U0BOB>" in bot.slack.text_of(message_of(bot)))
    again = await bot.submit_view(view, {"reason": "sent twice"}, user="U0BOB")
    assert "was not opened for you" in again[1]  # a ticket is used once
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release.gate("qa").rejection.reason == "checkout broken"
    refused = [
        e
        for e in await bot.services.store.audit_entries()
        if e["action"] == "form.reject" and e["outcome"] == "refused"
    ]
    assert len(refused) == 4


async def test_a_form_slack_would_not_open_is_answered_and_nothing_is_decided(
    start_bot, git_remote, tmp_path
):
    bot = await staged(start_bot, git_remote, tmp_path)
    # Slack refuses a trigger that came too late (over 3 s) with ok: false.
    bot.slack.error_next("views.open", "expired_trigger_id")
    status, _ = await bot.click(message_of(bot), "gate_reject", gate="qa", user="U0BOB")
    assert status == 200
    answer = await bot.slack.wait_for(lambda: answers_for(bot, "U0BOB"), timeout=10)
    assert "Slack would not open the form (expired_trigger_id); click Reject again." in answer[0]
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release.gate("qa").rejection is None
    # The click again opens it (the first trigger's failure left nothing behind).
    await bot.click(message_of(bot), "gate_reject", gate="qa", user="U0BOB")
    await bot.slack.wait_for(lambda: len(bot.slack.calls_to("views.open")) == 2)
    assert len(bot.slack.views) == 1  # only the second was opened


async def test_an_unknown_form_is_answered_and_audited(start_bot, git_remote, tmp_path):
    bot = await start_bot(make_config(git_remote, tmp_path))
    view = {
        "type": "modal",
        "callback_id": "something_else",
        "private_metadata": "",
        "title": {"type": "plain_text", "text": "X"},
        "blocks": [],
    }
    status, body = await bot.submit_view(view, {"reason": "hello"})
    assert status == 200 and "do not know this form" in body
    # Audited after the ack: wait for it (a loaded machine is slower than the test).
    for _ in range(100):
        entries = await bot.services.store.audit_entries()
        if any(e["outcome"] == "refused" for e in entries):
            break
        await asyncio.sleep(0.05)
    assert [e["action"] for e in entries if e["outcome"] == "refused"] == ["form"]


# --- one candidate per double submission, one lookup per burst ----------------------------


async def test_two_rc_commands_moments_apart_make_one_candidate(start_bot, git_remote, tmp_path):
    bot = await start_bot(make_config(git_remote, tmp_path))
    first = bot.slack.text_of(await bot.command("rc"))
    await asyncio.sleep(0.3)
    second = bot.slack.text_of(await bot.command("rc"))
    assert "Creating a release candidate" in first
    if "already being created (asked by <@U0ALICE>" not in second:
        # The first was made within the 0.3 s: the second hears it was a double submission.
        answer = await bot.slack.wait_for(
            lambda: [
                c
                for c in bot.slack.calls_to("response_url")
                if "double submission" in bot.slack.text_of(c.params)
            ],
            timeout=20,
        )
        assert "`v0.15.0-rc.1` was just created" in bot.slack.text_of(answer[0].params)
    await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    assert release_message(bot.slack, "v0.15.0-rc.2") is None
    assert [r.version for r in await bot.services.store.releases_in_flight()] == ["0.15.0-rc.1"]
    # A new commit is a new candidate, however soon.
    git_remote.commit("more")
    git_remote.push()
    assert "Creating a release candidate" in bot.slack.text_of(await bot.command("rc"))
    await bot.slack.wait_for(lambda: release_message(bot.slack, "v0.15.0-rc.2"), timeout=20)


async def test_fifty_clicks_of_group_members_share_one_group_lookup(
    start_bot, git_remote, tmp_path
):
    bot = await start_bot(make_config(git_remote, tmp_path, extra=APPROVAL_POLICY))
    members = [f"U0M{i:02d}" for i in range(50)]
    bot.slack.usergroups["S0RELMGR"] = members
    await bot.command("rc", user="U0ALICE", user_name="alice")
    message = await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    results = await asyncio.gather(
        *(
            bot.click(message, "gate_approve", gate="qa", user=u, user_name=u.lower())
            for u in members
        )
    )
    assert all(status == 200 for status, _ in results)
    await bot.slack.wait_for(lambda: all(answers_for(bot, u) for u in members), timeout=30)
    assert len(bot.slack.calls_to("usergroups.users.list")) == 1
    # On a loaded machine a click may be answered "cannot confirm" while its write, which
    # goes on after the answer, waits its turn behind the others: none may be lost.
    for _ in range(300):
        release = await bot.services.store.get_release("0.15.0-rc.1")
        if len(release.gate("qa").approvals) == 50:
            break
        await asyncio.sleep(0.1)
    assert len(release.gate("qa").approvals) == 50


async def test_a_command_whose_redis_stops_after_its_ack_says_it_did_not_finish(
    start_bot, git_remote, tmp_path
):
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        bot = await start_bot(make_config(git_remote, tmp_path), redis_url=server.url)
        server.stop()  # down for real: the report behind the ack cannot be read
        for text in ("health", "audit"):
            before = len(bot.slack.calls_to("response_url"))
            ack = bot.slack.text_of(await bot.command(text))
            assert "Reading the" in ack, (text, ack)
            answers = await bot.slack.wait_for(
                lambda b=before: bot.slack.calls_to("response_url")[b:], timeout=20
            )
            said = bot.slack.text_of(answers[0].params)
            assert "stopped answering before I could finish" in said, (text, said)
    finally:
        server.stop()
