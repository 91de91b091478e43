"""The user-group directory against the Slack stand-in and the real Redis: one lookup for a
burst, the answer cached under the same key as before, and an unknown group approves nobody."""

from __future__ import annotations

import asyncio
import json

import pytest

from bot.adapters.redis.keys import Keys
from bot.adapters.slack.directory import GROUP_CACHE_SECONDS, SlackUserDirectory
from bot.adapters.slack.notifier import web_client
from bot.domain.config import ApprovalPolicy
from bot.services.approvers import is_approver
from bot.services.ports import MembershipUnknown
from tests.helpers.bot import BOT_TOKEN


def directory(slack, redis, prefix: str) -> SlackUserDirectory:
    return SlackUserDirectory(web_client(BOT_TOKEN, slack.base_url), redis, Keys(prefix))


async def test_a_burst_of_lookups_asks_slack_once_and_the_answer_is_cached(slack, redis, prefix):
    slack.usergroups["S0MGR"] = ["U0BOB", "U0CAROL"]
    users = directory(slack, redis, prefix)
    answers = await asyncio.gather(*(users.group_members("S0MGR") for _ in range(20)))
    assert set(answers) == {frozenset({"U0BOB", "U0CAROL"})}
    assert len(slack.calls_to("usergroups.users.list")) == 1
    # Cached where the bot always kept it, for a while: another process reads it too.
    key = f"{prefix}usergroup:S0MGR"
    assert sorted(json.loads(await redis.get(key))) == ["U0BOB", "U0CAROL"]
    assert 0 < await redis.ttl(key) <= GROUP_CACHE_SECONDS
    slack.usergroups["S0MGR"] = ["U0DAVE"]
    assert await directory(slack, redis, prefix).group_members("S0MGR") == {"U0BOB", "U0CAROL"}
    assert len(slack.calls_to("usergroups.users.list")) == 1


async def test_one_caller_giving_up_does_not_cancel_the_others(slack, redis, prefix):
    asked, answer = asyncio.Event(), asyncio.Event()

    async def slow_slack(params):
        asked.set()
        await answer.wait()
        return {"users": ["U0BOB"]}

    slack.on("usergroups.users.list", slow_slack)
    users = directory(slack, redis, prefix)
    impatient = asyncio.create_task(users.group_members("S0MGR"))
    await asked.wait()  # the lookup is in flight
    patient = asyncio.create_task(users.group_members("S0MGR"))
    await asyncio.sleep(0.05)
    impatient.cancel()
    answer.set()
    assert await patient == {"U0BOB"}
    assert len(slack.calls_to("usergroups.users.list")) == 1


async def test_an_unknown_group_has_nobody_and_approves_nobody(slack, redis, prefix):
    users = directory(slack, redis, prefix)
    assert await users.group_members("S0GONE") == frozenset()

    class Needs:
        user_directory = users

    policy = ApprovalPolicy(approvers=("U0ALICE", "S0GONE"))
    assert await is_approver(Needs(), policy, "U0ALICE")
    assert not await is_approver(Needs(), policy, "U0BOB")
    assert await is_approver(Needs(), ApprovalPolicy(approvers=()), "U0BOB")  # () = anyone


async def test_slack_that_cannot_say_is_told_apart_from_a_group_of_nobody(slack, redis, prefix):
    slack.usergroups["S0MGR"] = ["U0BOB"]
    users = SlackUserDirectory(
        web_client(BOT_TOKEN, slack.base_url), redis, Keys(prefix), lookup_seconds=0.5
    )
    slack.delay_next("usergroups.users.list", 2.0)
    with pytest.raises(MembershipUnknown, match=r"did not answer within 0\.5 s"):
        await users.group_members("S0MGR")
    slack.error_next("usergroups.users.list", "internal_error")
    with pytest.raises(MembershipUnknown, match="`internal_error`"):
        await users.group_members("S0MGR")
    slack.fail_next("usergroups.users.list", status=404, html=True)
    with pytest.raises(MembershipUnknown, match="HTTP 404"):
        await users.group_members("S0MGR")
    assert await redis.exists(Keys(prefix).usergroup("S0MGR")) == 0  # nothing was cached
    assert await users.group_members("S0MGR") == frozenset({"U0BOB"})
