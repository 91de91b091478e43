"""The candidate path costs the same with 2,000 releases on record as with 20: it reads no
history (counted by Redis itself, with MONITOR, for this test's keys)."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path

from bot.adapters.redis.store import Store
from bot.domain import approvals
from bot.domain.actors import Actor
from bot.domain.releases import activate
from tests.helpers.config import make_config
from tests.helpers.messages import wait_for_gates
from tests.helpers.redis_monitor import Seen, commands_on
from tests.helpers.releases import recorded

ALICE = Actor(user_id="U0ALICE", user_name="alice", channel="C0DEV")


async def record_history(store: Store, first: int, count: int) -> None:
    """`count` old candidates through the store's own API: created, announced, and
    superseded by the next one, as a year of releases leaves them."""

    async def one(n: int) -> None:
        version = f"0.1.{n}-rc.1"
        release = recorded(version, sha=f"{n:040x}", created_at=1_700_000_000.0 + n)
        await store.create_release(release, ALICE)
        await store.update_release(
            version, partial(activate, channel="C0DEV", message_ts=f"{n}.000100"), ALICE, "tag"
        )
        await store.update_release(
            version,
            partial(approvals.supersede, newer=f"v0.1.{n + 1}-rc.1"),
            ALICE,
            "release.supersede",
        )

    for start in range(first, first + count, 100):
        await asyncio.gather(*(one(n) for n in range(start, min(first + count, start + 100))))


def ours(seen: Seen) -> list[str]:
    """The bot's own commands: saq's queue polling (its keys start with `saq:`) comes and
    goes with timing, not with history."""
    return [c for c in seen.commands if "saq:" not in c]


def keys_touched(seen: Seen, prefix: str) -> set[str]:
    return {
        word.strip('"')
        for command in ours(seen)
        for word in command.split()
        if word.strip('"').startswith(prefix)
    }


async def dry_run(bot, prefix: str) -> Seen:
    before = len(bot.slack.calls_to("response_url"))
    async with commands_on(prefix) as seen:
        await bot.command("rc --dry-run")
        await bot.slack.wait_for(
            lambda: [
                c for c in bot.slack.calls_to("response_url")[before:] if "Dry run" in str(c.params)
            ]
        )
    return seen


async def new_candidate(bot, git_remote, prefix: str, tag: str) -> Seen:
    git_remote.commit_file("change.txt", tag, f"a change for {tag}")  # not a double submission
    async with commands_on(prefix) as seen:
        await bot.command("rc")
        await wait_for_gates(bot.slack, tag)
        await asyncio.sleep(0.3)  # the last writes after the checklist's update
    return seen


async def test_the_candidate_path_reads_no_history(
    start_bot, git_remote, tmp_path: Path, prefix: str
):
    config = make_config(git_remote, tmp_path)
    # No scheduler: its periodic jobs would touch keys of their own while a path is counted.
    bot = await start_bot(config, role="web")
    await start_bot(config, role="worker", name="worker")
    store = bot.services.store
    await record_history(store, 0, 20)
    await bot.command("rc")  # one candidate in flight, superseded by the measured one
    await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    small_dry = await dry_run(bot, prefix)
    small = await new_candidate(bot, git_remote, prefix, "v0.15.0-rc.2")

    await record_history(store, 20, 1_980)
    large_dry = await dry_run(bot, prefix)
    large = await new_candidate(bot, git_remote, prefix, "v0.15.0-rc.3")

    assert len(keys_touched(large_dry, prefix)) <= len(keys_touched(small_dry, prefix))
    assert len(ours(large_dry)) <= len(ours(small_dry)) + 2, (ours(small_dry), ours(large_dry))
    small_keys, large_keys = keys_touched(small, prefix), keys_touched(large, prefix)
    assert len(large_keys) <= len(small_keys), (
        sorted(k.removeprefix(prefix) for k in small_keys - large_keys),
        sorted(k.removeprefix(prefix) for k in large_keys - small_keys),
    )
    assert len(ours(large)) <= len(ours(small)) * 1.2 + 5, (len(ours(small)), len(ours(large)))
    # What it does read of the releases: the one made and the one it superseded.
    releases_read = {k for k in keys_touched(large, prefix) if k.startswith(f"{prefix}release:")}
    assert releases_read <= {f"{prefix}release:0.15.0-rc.3", f"{prefix}release:0.15.0-rc.2"}
