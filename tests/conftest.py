"""Shared fixtures: real Redis (a key prefix per test), real git remotes, the Slack stand-in,
and the real bot serving signed HTTP requests. What they are built from is in tests/helpers."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from bot.adapters.github import GitHubConfig
from bot.devtools.slack_stand_in import SlackStandIn
from bot.domain.config import Config
from bot.runtime.fleet import Fleet
from bot.runtime.web import Bot, Role
from tests.helpers.bot import BOT_TOKEN, RunningBot, make_settings
from tests.helpers.redis_server import REDIS_URL, RedisServer
from tests.helpers.repos import GitRemote, messy_remote
from tests.helpers.signing import SIGNING_SECRET

# --- Redis -----------------------------------------------------------------------------------


@pytest.fixture
def prefix() -> str:
    return f"rbtest:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def redis(prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    # Our keys and saq's (whose queue name carries the prefix).
    for pattern in (f"{prefix}*", f"saq:*{prefix}*"):
        async for key in client.scan_iter(match=pattern, count=500):
            await client.delete(key)
    await client.aclose()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "own-redis")
    server.start()
    yield server
    server.stop()


# --- git -------------------------------------------------------------------------------------


@pytest.fixture
def git_remote(tmp_path: Path) -> GitRemote:
    return messy_remote(tmp_path)


# --- Slack and the bot -----------------------------------------------------------------------


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn(token=BOT_TOKEN) as stand_in:
        yield stand_in
    # Every message the bot sent must have been valid Block Kit.
    assert stand_in.invalid == [], stand_in.invalid


@pytest.fixture
async def start_bot(
    prefix: str, redis: Redis, slack: SlackStandIn, tmp_path: Path
) -> AsyncIterator[Any]:
    bots: list[Bot] = []
    http = aiohttp.ClientSession()

    async def start(
        config: Config | Sequence[Config],
        role: Role = "all",
        name: str = "bot",
        redis_url: str = REDIS_URL,
        post_interval: float = 0.05,
        tag_sync_interval: float = 60.0,
        redis_env: dict[str, str] | None = None,
        github: GitHubConfig | None = None,
        workers_for: set[str] | None = None,
    ) -> RunningBot:
        """The real bot; `redis_url` points it at a Redis of the test's own (RedisServer),
        `redis_env` at one named by variables (REDIS_SENTINELS…: tests/helpers/sentinel.py),
        `github` at a GitHub (the stand-in: bot.devtools.github_stand_in)."""
        settings = make_settings(
            prefix,
            slack,
            tmp_path / f"state-{name}",
            redis_url,
            post_interval,
            tag_sync_interval,
            redis_env,
        )
        if github is not None:
            settings = dataclasses.replace(settings, github=github)
        # Several configs: one bot serving several services (bot.runtime.fleet).
        configs = [config] if isinstance(config, Config) else list(config)
        fleet = Fleet.create(settings, configs)
        bot = Bot(fleet, role, workers_for)
        await bot.start(port=0, host="127.0.0.1")
        bots.append(bot)
        return RunningBot(bot=bot, services=fleet.first, slack=slack, http=http)

    yield start
    for bot in bots:
        await bot.stop()
    await http.close()


@pytest.fixture
def subprocess_env(prefix: str, slack: SlackStandIn, tmp_path: Path) -> Iterator[dict[str, str]]:
    yield {
        **os.environ,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "REDIS_URL": REDIS_URL,
        "SLACK_API_URL": slack.base_url,
        "RELEASEBOT_REDIS_PREFIX": prefix,
        "RELEASEBOT_UPDATE_DELAY": "0.2",
        "RELEASEBOT_POST_INTERVAL": "0.05",
        "RELEASEBOT_STATE_DIR": str(tmp_path / "state-subprocess"),
    }
