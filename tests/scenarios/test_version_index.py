"""The version index against tags made outside the bot: a candidate never reuses a tag that is
on the remote, and a final pushed by hand counts once the index is rebuilt (by the scheduler
on its interval, or at once when the bot's clone already has it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.helpers.config import make_config
from tests.helpers.messages import wait_for_gates


def answers(bot) -> list[str]:
    return [bot.slack.text_of(c.params) for c in bot.slack.calls_to("response_url")]


async def created(bot, tag: str) -> None:
    await bot.slack.wait_for(
        lambda: any(f"Created `{tag}`" in text for text in answers(bot)), timeout=20
    )


async def test_a_candidate_tagged_by_hand_is_not_made_again(start_bot, git_remote, tmp_path: Path):
    bot = await start_bot(make_config(git_remote, tmp_path))
    await bot.command("rc")
    await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    assert await bot.services.versions.commit_of("v0.15.0-rc.1") == git_remote.head()
    # Someone tags the next number by hand: the index, built by the bot, does not know it.
    git_remote.commit("a change tagged by hand")
    git_remote.tag("v0.15.0-rc.2", annotated=True)
    git_remote.push()
    assert await bot.services.versions.commit_of("v0.15.0-rc.2") is None
    git_remote.commit("the next change")
    git_remote.push()
    await bot.command("rc")
    # The push of rc.2 meets the hand-made tag; the index is rebuilt and the next is chosen.
    await created(bot, "v0.15.0-rc.3")
    assert not any("could not push" in text for text in answers(bot))
    tags = git_remote.remote_tags()
    assert tags["v0.15.0-rc.3"] == git_remote.head()
    assert tags["v0.15.0-rc.2"] != git_remote.head()  # the hand-made tag is left as it was
    assert await bot.services.versions.commit_of("v0.15.0-rc.2") == tags["v0.15.0-rc.2"]


async def test_a_final_pushed_by_hand_counts_after_the_scheduled_rebuild(
    start_bot, git_remote, tmp_path: Path
):
    config = make_config(git_remote, tmp_path)
    bot = await start_bot(config, role="web")
    await start_bot(config, role="worker", name="worker")
    await bot.command("rc")
    await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    git_remote.tag("v0.15.0", annotated=True)  # released by hand, outside the bot
    git_remote.push()
    # The scheduler's "version-index" job rebuilds the index on its interval.
    await start_bot(config, role="scheduler", name="scheduler", tag_sync_interval=1)
    for _ in range(100):
        if await bot.services.versions.commit_of("v0.15.0"):
            break
        await asyncio.sleep(0.1)
    assert await bot.services.versions.commit_of("v0.15.0") == git_remote.head()
    git_remote.commit("after the hand-made release")
    git_remote.push()
    await bot.command("rc")
    await created(bot, "v0.16.0-rc.1")


async def test_a_final_the_index_missed_is_seen_in_the_clone(start_bot, git_remote, tmp_path):
    bot = await start_bot(make_config(git_remote, tmp_path))
    await bot.command("rc")
    await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    git_remote.tag("v0.15.0", annotated=True)
    git_remote.push()
    # The bot's clone has the final (a promotion or a fetch on this host), the index not (its
    # write was lost): the candidate is of the next version, not v0.15.0-rc.2.
    await bot.services.git.sync_tags()
    assert await bot.services.versions.commit_of("v0.15.0") is None
    git_remote.commit("after the release")
    git_remote.push()
    await bot.command("rc")
    await created(bot, "v0.16.0-rc.1")
    assert "v0.15.0-rc.2" not in git_remote.remote_tags()
