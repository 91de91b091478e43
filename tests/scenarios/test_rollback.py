"""Rollback: back to the previous good version, with its approvals, then locked."""

from __future__ import annotations

import asyncio
import copy
import time
from pathlib import Path

from bot.adapters.redis.locks import read_lock
from bot.domain import rollbacks
from tests.helpers.config import SMOKE, deploy_log, make_config, production_config
from tests.helpers.messages import release_message
from tests.helpers.steps import ROLLBACK_POLICY as POLICY
from tests.helpers.steps import in_production, rolled_back, status_saying


async def test_rollback_redeploys_the_previous_version_and_locks(
    start_bot, git_remote, tmp_path: Path, redis, prefix
):
    bot = await start_bot(production_config(git_remote, tmp_path))
    await in_production(bot, git_remote)
    tags_before = git_remote.remote_tags()
    ack = bot.slack.text_of(
        await bot.command('rollback --reason "checkout errors"', user="U0BOB", user_name="bob")
    )
    assert "Rolling back *production* from `v0.15.0` to `v0.14.1`" in ack
    thread = await rolled_back(bot)
    assert "checkout errors" in thread and "from the request to the deploy finished" in thread
    assert deploy_log(tmp_path)[-1].startswith(
        f"production 0.14.1 v0.14.1 {tags_before['v0.14.1']}"
    )
    assert git_remote.remote_tags() == tags_before  # no new tags
    versions = await bot.services.store.environment_versions(["production"])
    assert versions["production"]["version"] == "0.14.1"
    lock = await read_lock(redis, f"{prefix}lock:env:production")
    assert lock is not None and lock.kind == "rollback" and "checkout errors" in lock.reason
    assert "rolled back from v0.15.0" in bot.slack.text_of(await bot.command("status"))
    text = await bot.slack.wait_for(
        lambda: (
            "was rolled back to `v0.14.1`"
            in bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
            and bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
        )
    )
    assert "Roll back production" not in text  # its button is gone
    # Anyone may unlock after a rollback; it is announced.
    assert "unlocked" in bot.slack.text_of(await bot.command("unlock production", user="U0CAROL"))
    actions = [
        (e["action"], e["outcome"])
        for e in await bot.services.store.audit_entries()
        if e["action"].startswith("rollback.")
    ]
    assert actions == [
        ("rollback.request", "ok"),
        ("rollback.approve", "ok"),
        ("rollback.start", "ok"),
        ("rollback.finish", "succeeded"),
    ]


async def test_a_rollback_waits_for_the_approvals_the_config_sets(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(production_config(git_remote, tmp_path, POLICY))
    await in_production(bot, git_remote)
    ack = bot.slack.text_of(
        await bot.command('rollback production --to v0.14.1 --reason "errors"', user="U0BOB")
    )
    assert "needs 1 more approval" in ack
    request = await bot.slack.wait_for(
        lambda: [
            m for m in bot.slack.messages().values() if "asks to roll back" in bot.slack.text_of(m)
        ]
    )
    production_runs = len([ln for ln in deploy_log(tmp_path) if ln.startswith("production")])
    # `/release status` lists it while it waits (once its message is recorded as posted),
    # with what it still needs.
    waiting = await status_saying(bot, "Waiting for approvals")
    assert "⏪ *production* back to `v0.14.1` from `v0.15.0`, asked by <@U0BOB>" in waiting
    assert "errors — needs 1 more approval" in waiting
    await bot.click(request[0], "rollback_approve", user="U0DAVE", user_name="dave")
    await bot.click(request[0], "rollback_approve", user="U0BOB")  # already counted
    await asyncio.sleep(1)
    assert (
        len([ln for ln in deploy_log(tmp_path) if ln.startswith("production")]) == production_runs
    )
    await bot.click(request[0], "rollback_approve", user="U0CAROL", user_name="carol")
    await rolled_back(bot)
    assert "Waiting for approvals" not in bot.slack.text_of(await bot.command("status"))
    outcomes = [
        (e["user_id"], e["outcome"])
        for e in await bot.services.store.audit_entries()
        if e["action"] == "rollback.approve"
    ]
    # Clicks are worked on after their ack, so two clicks moments apart may be audited in
    # either order (dave's needs a user-group lookup, bob's does not); each is there once.
    assert sorted(outcomes) == sorted(
        [("U0BOB", "ok"), ("U0DAVE", "refused"), ("U0BOB", "duplicate"), ("U0CAROL", "ok")]
    )


async def test_the_rollback_button_asks_why_then_rolls_back(start_bot, git_remote, tmp_path: Path):
    bot = await start_bot(production_config(git_remote, tmp_path))
    await in_production(bot, git_remote)
    message = await bot.slack.wait_for(
        lambda: (
            "Roll back production" in bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
            and release_message(bot.slack, "v0.15.0-rc.1")
        )
    )
    await bot.click(message, "rollback_start", user="U0CAROL", user_name="carol")
    opened = await bot.slack.wait_for(lambda: bot.slack.calls_to("views.open"))
    status, _ = await bot.submit_view(
        opened[0].params["view"], {"reason": "5xx spike"}, user="U0CAROL", user_name="carol"
    )
    assert status == 200
    assert "5xx spike" in await rolled_back(bot)


async def test_a_rollback_form_does_not_roll_back_what_it_did_not_show(
    start_bot, git_remote, tmp_path: Path
):
    """The form showed v0.15.0; if production runs something else when it is sent, nothing
    is rolled back (it would go back from a version nobody looked at)."""
    bot = await start_bot(production_config(git_remote, tmp_path))
    await in_production(bot, git_remote)
    message = await bot.slack.wait_for(
        lambda: (
            "Roll back production" in bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
            and release_message(bot.slack, "v0.15.0-rc.1")
        )
    )
    await bot.click(message, "rollback_start", user="U0CAROL", user_name="carol")
    opened = await bot.slack.wait_for(lambda: bot.slack.calls_to("views.open"))
    tags = git_remote.remote_tags()
    await bot.services.store.set_environment_version(
        "production", "0.14.0", "v0.14.0", tags["v0.14.0"]
    )  # moved on meanwhile
    status, _ = await bot.submit_view(
        opened[0].params["view"], {"reason": "5xx spike"}, user="U0CAROL", user_name="carol"
    )
    assert status == 200
    said = await bot.slack.wait_for(
        lambda: [
            c
            for c in bot.slack.calls_to("chat.postEphemeral")
            if "no longer runs `v0.15.0`" in c.params.get("text", "")
        ]
    )
    assert "it runs `v0.14.0`" in said[0].params["text"]
    assert [
        k
        async for k in bot.services.redis.scan_iter(
            match=f"{bot.services.store.keys.prefix}rollback:*"
        )
    ] == []


async def test_rollback_input_errors(start_bot, git_remote, tmp_path: Path):
    bot = await start_bot(production_config(git_remote, tmp_path))
    assert "needs a reason" in bot.slack.text_of(await bot.command("rollback"))
    assert "no environment `prod`" in bot.slack.text_of(
        await bot.command("rollback prod --reason x")
    )
    assert (
        "I do not know what production runs: the bot never deployed it. `/release adopt production"
        in bot.slack.text_of(await bot.command("rollback --reason x"))
    )
    await in_production(bot, git_remote)
    assert "v9.9.9 was never deployed to production" in bot.slack.text_of(
        await bot.command("rollback --to v9.9.9 --reason x")
    )
    assert "already runs v0.15.0" in bot.slack.text_of(
        await bot.command("rollback --to v0.15.0 --reason x")
    )


async def test_a_lost_rollback_is_reported_failed_not_rerun(start_bot, git_remote, tmp_path: Path):
    import json

    from bot.domain.actors import BOT
    from bot.domain.rollbacks import RollbackRequest
    from bot.services import reap_lost_deploys as reaper

    bot = await start_bot(production_config(git_remote, tmp_path))
    store = bot.services.store
    request = RollbackRequest(
        id="r1",
        environment="production",
        to_version="0.14.1",
        to_tag="v0.14.1",
        to_sha="a" * 40,
        from_version="0.15.0",
        from_release="",
        reason="x",
        requester="U0BOB",
        requester_name="bob",
        requested_at=store.clock(),
        status="running",
    )
    await store.create_rollback(request, BOT)
    # Its worker registered it as running, then died: the lease is gone.
    await bot.services.redis.hset(
        store.keys.running_deploys,
        "rollback:r1",
        json.dumps({"rollback": "r1", "environment": "production"}),
    )
    assert await reaper.reap_lost_deploys(bot.services) == ["rollback:r1"]
    assert (await store.get_rollback("r1")).status == "failed"
    posted = await bot.slack.wait_for(
        lambda: [
            m for m in bot.slack.messages().values() if "stopped responding" in bot.slack.text_of(m)
        ]
    )
    assert "rolling back *production*" in bot.slack.text_of(posted[0])
    assert await reaper.reap_lost_deploys(bot.services) == []  # reported once


GROUP_POLICY = """
[rollback]
required = 2
approvers = ["U0BOB", "S0RELMGR"]
"""


async def test_a_rollback_by_a_group_member_calls_slack_only_after_its_ack(
    start_bot, git_remote, tmp_path: Path
):
    """Whether the requester's own approval counts is a user group lookup; with Slack
    throttling it, the ack still comes at once, says what is true, and calls no Web API."""
    bot = await start_bot(production_config(git_remote, tmp_path, GROUP_POLICY))
    await in_production(bot, git_remote)
    bot.slack.usergroups["S0RELMGR"] = ["U0ERIN"]
    bot.slack.fail_next("usergroups.users.list", retry_after=1, times=3)
    bot.slack.fail_next("chat.postMessage", retry_after=1, times=2)
    sent = time.monotonic()
    ack = bot.slack.text_of(
        await bot.command('rollback --reason "errors"', user="U0ERIN", user_name="erin")
    )
    acked = time.monotonic()
    assert acked - sent < 1.0  # the three 429s (a second each) are not waited for
    assert "Rollback of *production* to `v0.14.1` asked" in ack and "checking" in ack
    assert "cannot reach" not in ack and "nothing was started" not in ack

    # After the ack, through the 429s: erin's approval counts, the request asks for one more.
    request = await bot.slack.wait_for(
        lambda: [
            m for m in bot.slack.messages().values() if "asks to roll back" in bot.slack.text_of(m)
        ],
        timeout=20,
    )
    approvals = [
        (e["user_id"], e["outcome"])
        for e in await bot.services.store.audit_entries()
        if e["action"] == "rollback.approve"
    ]
    assert approvals == [("U0ERIN", "ok")]
    lookups = bot.slack.calls_to("usergroups.users.list")
    assert len(lookups) == 4  # three 429s, then the answer
    assert lookups[0].at < lookups[1].at - 0.9  # Retry-After was honoured...
    assert acked < lookups[1].at  # ...after the ack: before it, the first call at most
    await bot.click(request[0], "rollback_approve", user="U0BOB", user_name="bob")
    await rolled_back(bot)


async def test_a_group_member_whose_membership_slack_cannot_say_does_not_approve_alone(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(production_config(git_remote, tmp_path, GROUP_POLICY))
    await in_production(bot, git_remote)
    bot.slack.usergroups["S0RELMGR"] = ["U0ERIN"]
    bot.slack.fail_next("usergroups.users.list", status=404, html=True)
    ack = bot.slack.text_of(
        await bot.command('rollback --reason "errors"', user="U0ERIN", user_name="erin")
    )
    assert "checking" in ack
    request = await bot.slack.wait_for(
        lambda: [
            m for m in bot.slack.messages().values() if "asks to roll back" in bot.slack.text_of(m)
        ],
        timeout=20,
    )
    assert "Needs 2 approvals; 0 so far." in bot.slack.text_of(request[0])
    approvals = [
        (e["user_id"], e["outcome"], e["reason"])
        for e in await bot.services.store.audit_entries()
        if e["action"] == "rollback.approve"
    ]
    assert approvals == [
        (
            "U0ERIN",
            "refused",
            "I could not check whether you are in the approver group `S0RELMGR` (Slack "
            "answered HTTP 404), so nothing was approved; try again in a minute",
        )
    ]


async def test_a_second_rollback_never_redeploys_the_version_rolled_back_from(
    start_bot, git_remote, tmp_path: Path
):
    """The repro: v0.15.0 replaced v0.14.1; rolled back; unlocked; `/release rollback` again
    went back to v0.15.0, the version just rolled back as broken."""
    bot = await start_bot(production_config(git_remote, tmp_path))
    await in_production(bot, git_remote)
    status = bot.slack.text_of(await bot.command("status"))
    assert "A rollback would go to `v0.14.1`: the newest version before `v0.15.0`" in status
    ack = bot.slack.text_of(
        await bot.command('rollback --reason "checkout errors"', user="U0BOB", user_name="bob")
    )
    assert "Why `v0.14.1`: the newest version before `v0.15.0` that deployed" in ack
    await rolled_back(bot)
    await bot.command("unlock production", user="U0CAROL")
    status = bot.slack.text_of(await bot.command("status"))
    assert "No rollback: production has no earlier version known good" in status
    production_runs = [ln for ln in deploy_log(tmp_path) if ln.startswith("production")]
    again = bot.slack.text_of(
        await bot.command('rollback --reason "still bad"', user="U0BOB", user_name="bob")
    )
    assert "No rollback: production has no earlier version known good" in again
    assert "`v0.15.0` was rolled back from or failed there" in again
    assert "--to VERSION" in again
    await asyncio.sleep(0.5)
    assert [ln for ln in deploy_log(tmp_path) if ln.startswith("production")] == production_runs
    # Named, it goes: the person decided, and the answer says what it was.
    named = bot.slack.text_of(
        await bot.command(
            'rollback --to v0.15.0 --reason "the fix was elsewhere"', user="U0BOB", user_name="bob"
        )
    )
    assert "to `v0.15.0`" in named and "it was rolled back from or failed in production" in named


async def test_a_version_whose_gate_failed_in_production_is_never_the_default_target(
    start_bot, git_remote, tmp_path: Path
):
    failing_smoke = SMOKE.replace('command = "sh', 'command = "GATE_FAIL=smoke sh')
    bot = await start_bot(make_config(git_remote, tmp_path, extra=failing_smoke))
    await in_production(bot, git_remote)
    history: list[dict[str, str]] = []
    for _ in range(100):
        history = await bot.services.store.environment_history("production")
        if "0.15.0" in rollbacks.known_bad(history):
            break
        await asyncio.sleep(0.1)
    assert "0.15.0" in rollbacks.known_bad(history), history
    assert [e for e in history if e.get("event")] == [
        {
            "event": "failed",
            "version": "0.15.0",
            "tag": "v0.15.0",
            "why": "gate smoke failed",
            "at": history[0]["at"],
        }
    ]


async def test_a_rollback_of_a_held_environment_is_refused_at_once_with_the_holder(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(production_config(git_remote, tmp_path))
    await in_production(bot, git_remote)
    await bot.command('lock production --reason "db migration"', user="U0CAROL")
    production_runs = [ln for ln in deploy_log(tmp_path) if ln.startswith("production")]
    answer = bot.slack.text_of(
        await bot.command('rollback --reason "errors"', user="U0BOB", user_name="bob")
    )
    assert "No rollback: *production* is held" in answer
    assert "<@U0CAROL>" in answer and "db migration" in answer
    assert "it would go to `v0.14.1`" in answer and "Rolling back" not in answer
    await asyncio.sleep(0.5)
    assert [ln for ln in deploy_log(tmp_path) if ln.startswith("production")] == production_runs
    refused = [
        e for e in await bot.services.store.audit_entries() if e["action"] == "rollback.request"
    ]
    assert [(e["outcome"], e["reason"]) for e in refused] == [
        ("refused", "production held by U0CAROL")
    ]


async def test_a_waiting_rollback_is_cancelled_by_who_asked_and_never_runs(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(production_config(git_remote, tmp_path, POLICY))
    await in_production(bot, git_remote)
    await bot.command('rollback --reason "errors"', user="U0BOB", user_name="bob")
    request = await bot.slack.wait_for(
        lambda: [
            m for m in bot.slack.messages().values() if "asks to roll back" in bot.slack.text_of(m)
        ]
    )
    stale = copy.deepcopy(request[0])
    production_runs = [ln for ln in deploy_log(tmp_path) if ln.startswith("production")]
    # Eve's click is answered before bob's is made: after bob's, the request is cancelled
    # already, and that is what eve would hear instead.
    for user, name, answer in (
        ("U0EVE", "eve", "only who asked for a rollback, or an approver of it"),
        ("U0BOB", "bob", "You cancelled the rollback of *production*"),
    ):
        await bot.click(request[0], "rollback_cancel", user=user, user_name=name)
        await bot.slack.wait_for(
            lambda answer=answer: [
                c
                for c in bot.slack.calls_to("response_url")
                if answer in bot.slack.text_of(c.params)
            ]
        )
    text = await bot.slack.wait_for(
        lambda: (
            "cancelled by bob" in bot.slack.text_of(request[0]) and bot.slack.text_of(request[0])
        )
    )
    assert "Approve rollback" not in text
    await bot.click(stale, "rollback_approve", user="U0CAROL", user_name="carol")
    await bot.slack.wait_for(
        lambda: [
            c
            for c in bot.slack.calls_to("response_url")
            if "this rollback is already cancelled" in bot.slack.text_of(c.params)
        ]
    )
    await asyncio.sleep(0.5)
    assert [ln for ln in deploy_log(tmp_path) if ln.startswith("production")] == production_runs
    outcomes = [
        (e["user_id"], e["action"], e["outcome"])
        for e in await bot.services.store.audit_entries()
        if e["action"] == "rollback.cancel"
    ]
    assert outcomes == [("U0EVE", "rollback.cancel", "refused"), ("U0BOB", "rollback.cancel", "ok")]
