"""A `/release status` answered from its snapshot is never older than what was just done
through the bot, and not older than its age limit for what was done elsewhere; and the bot's
Redis connections pack commands in C. The real bot, Redis and Slack stand-in."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from bot.adapters.redis.connect import PackedConnection
from bot.devtools.slack_stand_in import SlackStandIn
from bot.runtime.container import Services
from bot.runtime.web import Bot
from tests.helpers.bot import RunningBot, make_settings
from tests.helpers.config import make_config
from tests.helpers.signing import sign


@pytest.fixture
async def start_with_max_age(
    prefix: str, redis: Redis, slack: SlackStandIn, tmp_path: Path, git_remote
):
    """Like start_bot, for the web role, with the status snapshot good for `max_age`."""
    bots: list[Bot] = []
    http = aiohttp.ClientSession()

    async def start(max_age: float) -> RunningBot:
        settings = dataclasses.replace(
            make_settings(prefix, slack, tmp_path / "state"), status_max_age=max_age
        )
        services = Services.create(settings, make_config(git_remote, tmp_path))
        bot = Bot(services, "web")
        await bot.start(port=0, host="127.0.0.1")
        bots.append(bot)
        return RunningBot(bot=bot, services=services, slack=slack, http=http)

    yield start
    for bot in bots:
        await bot.stop()
    await http.close()


async def status_text(bot: RunningBot) -> str:
    return bot.slack.text_of(await bot.command("status"))


async def test_a_status_shows_what_was_just_done_through_this_process(start_with_max_age):
    """With a snapshot good for a minute, a change made elsewhere stays unseen (so the snapshot
    is really what answers), but anything done through this process drops it at once."""
    bot = await start_with_max_age(60.0)
    store = bot.services.store
    assert "nothing deployed yet" in await status_text(bot)
    # Another process (a worker) records a deploy: this snapshot does not know yet.
    await store.set_environment_version("staging", "0.14.1", "v0.14.1", "abc123")
    assert "v0.14.1" not in await status_text(bot)

    # A /release that changes something: its own answer and every status after it are fresh.
    assert "locked" in bot.slack.text_of(await bot.command('lock staging --reason "db work"'))
    text = await status_text(bot)
    assert "held by <@U0ALICE> for db work" in text and "v0.14.1" in text

    # Any other request (here a /flag, whatever it answers) drops the snapshot as well.
    await store.set_environment_version("production", "0.14.0", "v0.14.0", "def456")
    assert "v0.14.0" not in await status_text(bot)
    body = bot.command_body("list", command="/flag")
    status, _ = await bot.post(body, sign(body))
    assert status == 200
    assert "v0.14.0" in await status_text(bot)

    # Reads (status, help) keep it: nothing changed.
    await store.set_environment_version("production", "0.15.0", "v0.15.0", "0f0f0f")
    await bot.command("help")
    assert "v0.15.0" not in await status_text(bot)


async def test_a_change_made_elsewhere_shows_once_the_snapshot_is_max_age_old(start_with_max_age):
    bot = await start_with_max_age(0.3)
    assert "nothing deployed yet" in await status_text(bot)
    await bot.services.store.set_environment_version("staging", "0.14.1", "v0.14.1", "abc123")
    await asyncio.sleep(0.35)
    assert "v0.14.1" in await status_text(bot)


async def test_the_bot_packs_its_redis_commands_in_c(start_bot, git_remote, tmp_path):
    bot = await start_bot(make_config(git_remote, tmp_path), role="web")
    pools = [bot.services.redis.connection_pool, bot.services.queue.redis.connection_pool]  # type: ignore[attr-defined]
    assert all(issubclass(p.connection_class, PackedConnection) for p in pools)
    assert "nothing deployed yet" in bot.slack.text_of(await bot.command("status"))
