"""/release lock and unlock: who may, what deploys do meanwhile, what is announced and audited."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.adapters.redis.locks import RenewingLock
from tests.helpers.config import deploy_log, make_config
from tests.helpers.messages import release_message, thread_text, wait_for_gates


async def test_a_locked_environment_blocks_deploys_until_unlocked(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(make_config(git_remote, tmp_path))
    answer = bot.slack.text_of(await bot.command('lock staging --reason "db migration"'))
    assert "staging* is locked: db migration" in answer
    status = bot.slack.text_of(await bot.command("status"))
    assert "held by <@U0ALICE> for db migration" in status

    await bot.command("rc")
    message = await bot.slack.wait_for(lambda: release_message(bot.slack, "v0.15.0-rc.1"))
    thread = await bot.slack.wait_for(
        lambda: "is busy" in thread_text(bot.slack, message) and thread_text(bot.slack, message),
        timeout=20,
    )
    assert "db migration" in thread
    assert deploy_log(tmp_path) == []

    assert "unlocked" in bot.slack.text_of(await bot.command("unlock staging"))
    assert "No environment is locked" in bot.slack.text_of(await bot.command("status"))
    entries = await bot.services.store.audit_entries()
    assert [
        (e["action"], e["outcome"], e["environment"])
        for e in entries
        if e["action"].startswith("lock.")
    ] == [("lock.take", "ok", "staging"), ("lock.release", "ok", "staging")]


async def test_taking_over_a_lock_needs_force_and_is_announced(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(make_config(git_remote, tmp_path))
    await bot.command('lock production --reason "freeze"')
    refused = bot.slack.text_of(
        await bot.command('lock production --reason "hotfix"', user="U0BOB", user_name="bob")
    )
    assert "did not lock *production*" in refused and "--force" in refused
    refused = bot.slack.text_of(
        await bot.command("unlock production", user="U0BOB", user_name="bob")
    )
    assert "did not unlock" in refused and "--force" in refused

    taken = bot.slack.text_of(
        await bot.command(
            'lock production --reason "hotfix" --force', user="U0BOB", user_name="bob"
        )
    )
    assert "locked: hotfix" in taken
    announcement = await bot.slack.wait_for(
        lambda: [m for m in bot.slack.messages().values() if "took over" in bot.slack.text_of(m)]
    )
    text = bot.slack.text_of(announcement[0])
    assert "<@U0BOB>" in text and "<@U0ALICE>" in text and "freeze" in text
    assert announcement[0].channel == "CRELEASES"
    status = bot.slack.text_of(await bot.command("status"))
    assert "held by <@U0BOB> for hotfix" in status

    entries = [
        (e["user_id"], e["action"], e["outcome"])
        for e in await bot.services.store.audit_entries()
        if e["action"] != "command"
    ]
    assert entries == [
        ("U0ALICE", "lock.take", "ok"),
        ("U0BOB", "lock.take", "refused"),
        ("U0BOB", "lock.release", "refused"),
        ("U0BOB", "lock.take", "forced"),
    ]


async def test_a_running_deploy_cannot_be_locked_or_unlocked(
    start_bot, git_remote, tmp_path: Path, redis, prefix
):
    bot = await start_bot(make_config(git_remote, tmp_path))
    deploy_lock = RenewingLock(redis, f"{prefix}lock:env:staging", 5)
    await deploy_lock.acquire("U0CAROL", "deploying v9")
    try:
        for text in ("lock staging --reason x --force", "unlock staging --force"):
            answer = bot.slack.text_of(await bot.command(text))
            assert "a deploy is running there" in answer
    finally:
        await deploy_lock.release()


async def test_lock_input_errors(start_bot, git_remote, tmp_path: Path):
    bot = await start_bot(make_config(git_remote, tmp_path))
    for text, fragment in [
        ("lock", "needs the environment first"),
        ("lock staging", "needs a reason"),
        ("lock prod --reason x", "no environment `prod`"),
        ("unlock staging", "not locked"),
        (f"lock staging --reason {'x' * 501}", "the most is 500"),
    ]:
        assert fragment in bot.slack.text_of(await bot.command(text)), text
    await asyncio.sleep(0.2)
    assert bot.slack.calls_to("chat.postMessage") == []


async def test_a_deploy_after_unlock_goes_ahead(start_bot, git_remote, tmp_path: Path):
    bot = await start_bot(make_config(git_remote, tmp_path))
    await bot.command("rc")
    await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    await bot.command('lock staging --reason "x"')
    await bot.command("unlock staging")
    git_remote.commit("more")
    git_remote.push()
    await bot.command("rc")
    await wait_for_gates(bot.slack, "v0.15.0-rc.2")
    assert len(deploy_log(tmp_path)) == 2
