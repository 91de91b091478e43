"""Freezes that wait for approvals ([freeze] required above 0), end to end: signed slash
commands and clicks into the real server, Redis, the worker, the Slack stand-in. alice asks
to freeze production; the request message is posted in #releases with Approve / Reject; only
signed clicks of [freeze] approvers, on that very message, once each, count; the freeze holds
after the second approval and a `/release final` is then refused. A Reject ends a request; a
request expires unapproved, by its job or when a click finds its time up."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement

from bot.devtools.slack_stand_in import Message
from bot.domain.actors import BOT
from tests.helpers.bot import RunningBot
from tests.helpers.config import make_config, production_config
from tests.helpers.messages import release_message
from tests.helpers.steps import candidate

POLICY = """
[freeze]
required = 2
approvers = ["U0BOB", "S0OPS"]
"""


def answers_for(bot: RunningBot, user: str) -> list[str]:
    """What `user` was told privately (their clicks' answers), in order."""
    return [
        bot.slack.text_of(c.params)
        for c in bot.slack.calls_to("response_url")
        if c.params.get("_id", "").startswith(user)
    ]


async def click(bot: RunningBot, message: Any, action: str, user: str) -> str:
    """`user` presses `action` on `message` (signed); their private answer."""
    before = len(answers_for(bot, user))
    status, _ = await bot.click(message, action, user=user, user_name=user[2:].lower())
    assert status == 200
    answers = await bot.slack.wait_for(
        lambda: len(answers_for(bot, user)) > before and answers_for(bot, user)
    )
    return answers[-1]


def freeze_request(bot: RunningBot) -> Message | None:
    return next(
        (
            m
            for m in bot.slack.messages().values()
            if m.thread_ts is None and "asks to freeze *production*" in m.text
        ),
        None,
    )


def buttons(message: Message) -> list[str]:
    """The action ids of the message's buttons, read with slack_sdk's own models."""
    return [
        element.action_id
        for block in Block.parse_all(message.blocks)
        if isinstance(block, ActionsBlock)
        for element in block.elements
        if isinstance(element, ButtonElement) and element.action_id
    ]


def channel_text(bot: RunningBot) -> str:
    return "\n".join(bot.slack.text_of(m) for m in bot.slack.messages().values())


async def freeze_trail(bot: RunningBot) -> list[tuple[str, str, str]]:
    return [
        (e["action"], e["outcome"], e["user_id"])
        for e in await bot.services.store.audit_entries()
        if e["action"].startswith("freeze.")
    ]


async def test_a_freeze_holds_after_two_approver_approvals_and_then_refuses_a_final(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(production_config(git_remote, tmp_path, POLICY))
    bot.slack.usergroups["S0OPS"] = ["U0CAROL"]
    # A candidate ready for production, before anything is frozen.
    await bot.services.store.set_environment_version(
        "production", "0.14.1", "v0.14.1", git_remote.remote_tags()["v0.14.1"]
    )
    message = await candidate(bot)
    await bot.click(message, "gate_approve", gate="qa")
    await bot.slack.wait_for(
        lambda: (
            "Ready for production" in bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
        )
    )

    asked = bot.slack.text_of(
        await bot.command(
            'freeze production --until 2d --reason "holiday traffic"',
            user="U0ALICE",
            user_name="alice",
        )
    )
    # Only the S0OPS group can say whether alice approves: asked after the ack.
    assert "I am checking whether your own approval counts" in asked
    told = await bot.slack.wait_for(lambda: answers_for(bot, "U0ALICE"))
    assert "Asked to freeze *production*" in told[-1]
    assert "waits for 2 approvals of [freeze] approvers, 2 more to go" in told[-1]
    request = await bot.slack.wait_for(lambda: freeze_request(bot))
    assert request.channel == bot.slack.channel_id("#releases")
    assert buttons(request) == ["freeze_approve", "freeze_reject"]
    assert "Needs 2 more approvals from <@U0BOB> and <!subteam^S0OPS>" in (
        bot.slack.text_of(request)
    )
    await bot.slack.wait_for(
        lambda: bot.slack.text_of(freeze_request(bot)) and freeze_request(bot).ts
    )
    as_posted = copy.deepcopy(freeze_request(bot))  # its buttons, for a click after they went
    record = await bot.services.freeze_records.active("production", time.time())
    assert record == []  # asked is not frozen

    # Eve is no approver; a copy of the buttons on another message counts for nothing.
    assert "not one of the [freeze] approvers" in await click(
        bot, request, "freeze_approve", "U0EVE"
    )
    elsewhere = copy.deepcopy(request)
    elsewhere.ts = "1700009999.000001"
    assert "not on the freeze request's message" in await click(
        bot, elsewhere, "freeze_approve", "U0BOB"
    )
    damaged = copy.deepcopy(request)
    damaged.blocks[-1]["elements"][0]["value"] = json.dumps({"x": "1"})
    assert "damaged" in await click(bot, damaged, "freeze_approve", "U0BOB")

    assert "needs 1 more approval" in await click(bot, request, "freeze_approve", "U0BOB")
    status = bot.slack.text_of(await bot.command("status"))
    assert (
        "⏳ *production* freeze until" in status
        and "asked by <@U0ALICE>: holiday traffic — needs 1 more approval," in status
    ), status
    assert "🧊" not in status  # asked, not frozen
    assert "approved this freeze request already" in await click(
        bot, request, "freeze_approve", "U0BOB"
    )
    assert await bot.services.freeze_records.active("production", time.time()) == []
    assert "is frozen now" in await click(bot, request, "freeze_approve", "U0CAROL")

    [(_, freeze)] = await bot.services.freeze_records.active("production", time.time())
    assert (freeze.who, freeze.reason) == ("U0ALICE", "holiday traffic")
    decided = await bot.slack.wait_for(
        lambda: "In effect since" in bot.slack.text_of(freeze_request(bot)) and freeze_request(bot)
    )
    assert buttons(decided) == []  # no button left
    assert "approved by <@U0BOB>, <@U0CAROL>" in bot.slack.text_of(decided)
    told = await bot.slack.wait_for(
        lambda: "*production* is frozen until" in channel_text(bot) and channel_text(bot)
    )
    assert "(asked by <@U0ALICE>, approved by <@U0BOB>, <@U0CAROL>)" in told
    # A click on it now changes nothing.
    assert "in effect already" in await click(bot, as_posted, "freeze_approve", "U0BOB")

    status = bot.slack.text_of(await bot.command("status"))
    assert "🧊 *production* frozen until" in status and "⏳" not in status
    refused = bot.slack.text_of(await bot.command("final"))
    assert "*production* is closed for changes" in refused and "holiday traffic" in refused
    assert "v0.15.0" not in git_remote.remote_tags()

    assert await freeze_trail(bot) == [
        ("freeze.ask", "ok", "U0ALICE"),
        ("freeze.approve", "refused", "U0EVE"),
        ("freeze.approve", "refused", "U0BOB"),  # on another message
        ("freeze.approve", "refused", "U0BOB"),  # damaged
        ("freeze.approve", "ok", "U0BOB"),
        ("freeze.approve", "duplicate", "U0BOB"),
        ("freeze.approve", "ok", "U0CAROL"),
        ("freeze.set", "ok", "U0CAROL"),
        ("freeze.approve", "duplicate", "U0BOB"),
    ]


async def test_an_approver_who_asks_counts_and_a_reject_ends_a_request(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(make_config(git_remote, tmp_path, extra=POLICY))
    asked = bot.slack.text_of(
        await bot.command(
            'freeze production --until 3h --reason "db migration"', user="U0BOB", user_name="bob"
        )
    )
    assert "(yours counts), 1 more to go" in asked
    request = await bot.slack.wait_for(lambda: freeze_request(bot))
    await bot.slack.wait_for(lambda: freeze_request(bot).ts)
    as_posted = copy.deepcopy(request)
    assert "approved by <@U0BOB>" in bot.slack.text_of(request)
    # Eve may not reject; alice neither asked nor approves.
    assert "You cannot reject this" in await click(bot, request, "freeze_reject", "U0EVE")
    bot.slack.usergroups["S0OPS"] = ["U0CAROL"]
    assert "You rejected the freeze of *production*" in await click(
        bot, request, "freeze_reject", "U0CAROL"
    )
    ended = await bot.slack.wait_for(
        lambda: (
            "Rejected by <@U0CAROL>" in bot.slack.text_of(freeze_request(bot))
            and freeze_request(bot)
        )
    )
    assert buttons(ended) == []
    await bot.slack.wait_for(lambda: "rejected the freeze of *production*" in channel_text(bot))
    assert "rejected already" in await click(bot, as_posted, "freeze_approve", "U0CAROL")
    assert await bot.services.freeze_records.active("production", time.time()) == []
    assert await freeze_trail(bot) == [
        ("freeze.ask", "ok", "U0BOB"),
        ("freeze.approve", "ok", "U0BOB"),
        ("freeze.reject", "refused", "U0EVE"),
        ("freeze.reject", "ok", "U0CAROL"),
        ("freeze.approve", "duplicate", "U0CAROL"),
    ]


async def test_an_unapproved_request_expires_by_its_job(start_bot, git_remote, tmp_path: Path):
    # request_hours of 3.6 s: the expiry job runs on the worker, by the real clock.
    bot = await start_bot(
        make_config(git_remote, tmp_path, extra=POLICY + "request_hours = 0.001\n")
    )
    bot.slack.usergroups["S0OPS"] = ["U0CAROL"]
    await bot.command('freeze production --until 3h --reason "quick"', user="U0ALICE")
    told = await bot.slack.wait_for(lambda: answers_for(bot, "U0ALICE"))
    assert "Unapproved, it expires at" in told[-1]
    as_posted = copy.deepcopy(await bot.slack.wait_for(lambda: freeze_request(bot)))
    assert buttons(as_posted) == ["freeze_approve", "freeze_reject"]
    expired = await bot.slack.wait_for(
        lambda: "Expired at" in bot.slack.text_of(freeze_request(bot)) and freeze_request(bot),
        timeout=20,
    )
    assert buttons(expired) == []
    await bot.slack.wait_for(lambda: "expired without its approvals" in channel_text(bot))
    # Its buttons as first posted, clicked late: nothing changes.
    assert "expired already" in await click(bot, as_posted, "freeze_approve", "U0BOB")
    assert await bot.services.freeze_records.active("production", time.time()) == []
    assert await freeze_trail(bot) == [
        ("freeze.ask", "ok", "U0ALICE"),
        ("freeze.expire", "ok", BOT.user_id),
        ("freeze.approve", "duplicate", "U0BOB"),
    ]


async def test_an_expiry_job_that_runs_before_the_bots_clock_says_so_runs_again(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(
        make_config(git_remote, tmp_path, extra=POLICY + "request_hours = 0.001\n")
    )
    # The bot's clock is 3 s behind the queue's: the job, queued for the request's end by the
    # bot's clock, runs while the bot still sees time left.
    bot.services.store.clock = lambda: time.time() - 3
    await bot.command('freeze production --until 3h --reason "quick"', user="U0ALICE")
    await bot.slack.wait_for(lambda: freeze_request(bot))
    expired = await bot.slack.wait_for(
        lambda: "Expired at" in bot.slack.text_of(freeze_request(bot)) and freeze_request(bot),
        timeout=20,
    )
    assert buttons(expired) == []
    await bot.slack.wait_for(lambda: "expired without its approvals" in channel_text(bot))
    assert [(a, who) for a, _, who in await freeze_trail(bot)] == [
        ("freeze.ask", "U0ALICE"),
        ("freeze.expire", BOT.user_id),
    ]


async def test_a_request_slack_would_not_post_is_withdrawn_and_the_asker_told(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(make_config(git_remote, tmp_path, extra=POLICY))
    bot.slack.error_next("chat.postMessage", "channel_not_found")
    await bot.command('freeze production --until 3h --reason "quick"', user="U0ALICE")
    told = await bot.slack.wait_for(
        lambda: "withdrawn" in "".join(answers_for(bot, "U0ALICE")) and answers_for(bot, "U0ALICE")
    )
    assert "Slack would not take the freeze request's message" in told[-1]
    assert "*production* is not frozen. Ask again in a minute." in told[-1]
    assert freeze_request(bot) is None
    assert await bot.services.freeze_records.active("production", time.time()) == []
    assert [(a, who) for a, _, who in await freeze_trail(bot)] == [
        ("freeze.ask", "U0ALICE"),
        ("freeze.expire", BOT.user_id),
    ]


async def test_an_approval_after_until_passed_expires_the_request_instead(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(make_config(git_remote, tmp_path, extra=POLICY))
    bot.slack.usergroups["S0OPS"] = ["U0CAROL"]
    await bot.command('freeze production --until 2h --reason "short"', user="U0ALICE")
    request = await bot.slack.wait_for(lambda: freeze_request(bot))
    await bot.slack.wait_for(lambda: freeze_request(bot).ts)
    assert "needs 1 more approval" in await click(bot, request, "freeze_approve", "U0BOB")
    # The bot's clock moves past `until` before the second approval comes.
    bot.services.store.clock = lambda: time.time() + 3 * 3600
    late = await click(bot, request, "freeze_approve", "U0CAROL")
    assert "This freeze request expired at" in late and "was not frozen" in late
    ended = await bot.slack.wait_for(
        lambda: "Expired at" in bot.slack.text_of(freeze_request(bot)) and freeze_request(bot)
    )
    assert buttons(ended) == [] and "(approved by <@U0BOB>)" in bot.slack.text_of(ended)
    assert await bot.services.freeze_records.active("production", time.time()) == []
    assert await freeze_trail(bot) == [
        ("freeze.ask", "ok", "U0ALICE"),
        ("freeze.approve", "ok", "U0BOB"),
        ("freeze.expire", "ok", BOT.user_id),
        ("freeze.approve", "refused", "U0CAROL"),
    ]


async def test_one_approval_asked_of_anyone_is_the_askers_own_and_freezes_at_once(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(make_config(git_remote, tmp_path, extra="[freeze]\nrequired = 1\n"))
    asked = bot.slack.text_of(
        await bot.command('freeze production --until 3h --reason "incident"', user="U0ALICE")
    )
    assert "*production* is frozen until" in asked and "your approval was the one" in asked
    [(_, freeze)] = await bot.services.freeze_records.active("production", time.time())
    assert freeze.who == "U0ALICE"
    await bot.slack.wait_for(lambda: "approved by <@U0ALICE>). It " in channel_text(bot))
    assert freeze_request(bot) is None  # nothing left to approve: no request posted
    assert await freeze_trail(bot) == [
        ("freeze.ask", "ok", "U0ALICE"),
        ("freeze.approve", "ok", "U0ALICE"),
        ("freeze.set", "ok", "U0ALICE"),
    ]
