"""Redis under Sentinel: the primary fails over (killed, or handed over on purpose) and the
running bot goes on without a restart, its store, locks and job queue on the new primary.
Real servers: a primary, a replica and three sentinels of the test's own (tests/helpers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.config import deploy_log, make_config
from tests.helpers.messages import release_message, thread_text, wait_for_gates
from tests.helpers.sentinel import SentinelGroup
from tests.helpers.steps import candidate, live


@pytest.fixture
async def group(tmp_path: Path) -> AsyncIterator[SentinelGroup]:
    """Asked for before `start_bot`, so the bot stops before its Redis does."""
    servers = SentinelGroup(tmp_path / "redis")
    try:
        await servers.start()
        yield servers
    finally:
        servers.stop()


@pytest.mark.timeout(60)
async def test_a_primary_killed_while_idle_loses_nothing_and_commands_go_on(
    group: SentinelGroup, start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(make_config(git_remote, tmp_path), redis_env=group.env)
    assert (await bot.services.redis.connection_pool.get_master_address())[1] == (
        group.primary.port
    )
    message = await candidate(bot)
    await bot.click(message, "gate_approve", gate="qa")
    await bot.slack.wait_for(
        lambda: (
            "Ready for production" in bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
        )
    )
    store = bot.services.store
    before = await store.get_release("0.15.0-rc.1")
    assert before is not None and before.deploys["staging"].status == "succeeded"
    audit_before = await store.audit_entries()
    assert any(e["action"].startswith("gate.approve") for e in audit_before), audit_before

    # Replication is asynchronous: what the primary acknowledged is safe from its death only
    # once the replica has it. While idle it has it within moments; the test waits for that,
    # and then kills the primary as a crash would.
    await group.wait_until(group.in_sync, "the replica never caught up")
    old = group.kill_primary().port
    new = await group.wait_for_new_primary(old)
    assert new == group.replica.port

    # The same bot, no restart: a command answers from the new primary, and everything
    # recorded before is there.
    status = bot.slack.text_of(await bot.command("status"))
    assert "Redis" not in status and "v0.15.0-rc.1" in status, status
    after = await store.get_release("0.15.0-rc.1")
    assert after is not None
    assert after.to_json() == before.to_json()  # approvals, outcomes: all of it
    assert (await store.audit_entries())[: len(audit_before)] == audit_before

    # And the whole way on: the approval made before the failover lets it go to production,
    # through the queue and the environment lock, both on the new primary.
    await bot.command("final")
    await live(bot)
    promoted = await store.get_release("0.15.0-rc.1")
    assert promoted is not None and promoted.deploys["production"].status == "succeeded"


@pytest.mark.timeout(60)
async def test_a_failover_during_a_deploy_records_its_outcome(
    group: SentinelGroup, start_bot, git_remote, tmp_path: Path
):
    """A planned failover (SENTINEL FAILOVER) while staging's deploy runs: the worker's lock
    renewals, progress lines and outcome go to the new primary; the old one, now a replica,
    refuses writes and the bot's connections move on."""
    config = make_config(git_remote, tmp_path, deploy_env="DEPLOY_SLEEP=4", lock_ttl=10)
    bot = await start_bot(config, redis_env=group.env)
    await bot.command("rc")
    await bot.slack.wait_for(lambda: deploy_log(tmp_path), timeout=30)
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release is not None and release.deploys["staging"].status == "running"

    old = group.primary.port
    await group.failover()
    assert await group.wait_for_new_primary(old) == group.replica.port

    message = await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    text = bot.slack.text_of(message)
    assert "deploy succeeded" in text and "Automated tests — passed" in text, text
    thread = thread_text(bot.slack, message)
    assert "lost the environment lock" not in thread and "stopped responding" not in thread
    done = await bot.services.store.get_release("0.15.0-rc.1")
    assert done is not None and done.deploys["staging"].status == "succeeded"
    assert len(deploy_log(tmp_path)) == 1  # run once, never again behind anyone's back
    actions = [e["action"] for e in await bot.services.store.audit_entries("0.15.0-rc.1")]
    assert any("deploy" in a for a in actions), actions
    status = bot.slack.text_of(await bot.command("status"))
    assert "v0.15.0-rc.1" in status
