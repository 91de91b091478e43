"""Redis Cluster-friendly keys: with a hash tag in the prefix (`{team}:`), every key the bot
and its job queue touch on the way from a candidate to production, and while monitoring it,
falls in one hash slot, so every transaction and script of the bot may run on a Cluster.

Redis itself says which arguments of each command are keys (COMMAND GETKEYS on the command
exactly as MONITOR saw it), on a redis-server of the test's own that nothing else uses, so a
key written outside the prefix, by the bot or by saq, fails the test whatever its name."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from redis.asyncio.connection import Connection
from redis.crc import key_slot
from redis.exceptions import ResponseError

from bot.adapters.redis.keys import Keys
from tests.helpers.config import make_config
from tests.helpers.redis_server import RedisServer
from tests.helpers.sites import LocalSite
from tests.helpers.steps import in_production

# Commands that name no key, or that only tests and connections send.
NO_KEYS = {"MULTI", "EXEC", "DISCARD", "PING", "HELLO", "CLIENT", "SELECT", "INFO", "TIME"}
NO_KEYS |= {"SCRIPT", "COMMAND", "MONITOR", "PUBLISH", "SUBSCRIBE", "UNSUBSCRIBE", "QUIT"}
NO_KEYS |= {"PSUBSCRIBE", "PUNSUBSCRIBE", "UNWATCH", "FLUSHALL", "DBSIZE", "CONFIG", "RESET"}
ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')


@pytest.fixture
def prefix() -> str:
    return f"{{rbtest-{uuid.uuid4().hex[:8]}}}:"


class Health(LocalSite):
    def routes(self, app: web.Application) -> None:
        app.router.add_get("/health", self._health)

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


CHECK = """
[[environments.checks]]
name = "health"
url = "{url}/health"
interval_seconds = 0.2
json = {{ status = "ok" }}

[monitoring]
tick_seconds = 0.1
window_seconds = 1
window_interval_seconds = 0.2
"""


def unescape(arg: str) -> str:
    return re.sub(r"\\(x[0-9a-f]{2}|.)", lambda m: _char(m.group(1)), arg)


def _char(code: str) -> str:
    if code.startswith("x") and len(code) == 3:
        return chr(int(code[1:], 16))
    return {"n": "\n", "r": "\r", "t": "\t"}.get(code, code)


@contextlib.asynccontextmanager
async def every_command(server: RedisServer) -> AsyncIterator[list[list[str]]]:
    """Every command the server runs while the block runs, each as its list of arguments."""
    seen: list[list[str]] = []
    connection = Connection(host="127.0.0.1", port=server.port)
    await connection.connect()
    await connection.send_command("MONITOR")
    await connection.read_response()  # OK

    async def listen() -> None:
        while True:
            line = await connection.read_response()
            text = line.decode(errors="replace") if isinstance(line, bytes) else str(line)
            _, _, command = text.partition("] ")
            seen.append([unescape(a) for a in ARG.findall(command)])

    task = asyncio.create_task(listen())
    try:
        yield seen
    finally:
        await asyncio.sleep(0.2)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await connection.disconnect()


async def keys_of(connection: Connection, command: list[str]) -> list[str]:
    """The keys of `command`, as Redis finds them (a plain connection: redis-py's own reply
    parser for COMMAND expects COMMAND INFO's reply)."""
    if not command or command[0].upper() in NO_KEYS:
        return []
    await connection.send_command("COMMAND", "GETKEYS", *command)
    try:
        keys = await connection.read_response()
    except ResponseError:  # "no key arguments" (EVAL with 0 keys)
        return []
    return [k.decode() if isinstance(k, bytes) else str(k) for k in keys]


async def test_every_key_of_a_release_and_its_monitoring_is_in_one_slot(
    own_redis: RedisServer, start_bot, git_remote, tmp_path: Path, prefix: str
) -> None:
    async with Health() as site, every_command(own_redis) as seen:
        bot = await start_bot(
            make_config(git_remote, tmp_path, extra=CHECK.format(url=site.url)),
            redis_url=own_redis.url,
        )
        await in_production(bot, git_remote)
        await bot.command("status")
        await bot.command("audit")
        results = bot.services.store.keys.check_results("production", "health")
        for _ in range(100):  # the monitor has recorded results of the new version
            if await bot.services.redis.llen(results) >= 2:
                break
            await asyncio.sleep(0.1)
        assert await bot.services.redis.llen(results) >= 2
    connection = Connection(host="127.0.0.1", port=own_redis.port)
    await connection.connect()
    try:
        keys = {k for command in seen for k in await keys_of(connection, command)}
    finally:
        await connection.disconnect()
    slot = key_slot(prefix.encode())
    assert any(k.startswith("saq:") for k in keys), "the job queue's keys were seen"
    assert any(k.startswith(f"{prefix}audit") for k in keys)
    outside = sorted(k for k in keys if key_slot(k.encode()) != slot)
    assert outside == [], f"keys outside the prefix's hash slot: {outside[:20]}"


@pytest.mark.parametrize(
    ("prefix_given", "tag"),
    [
        ("releasebot:", ""),  # the default: no tag, job keys as they always were
        ("{team}:", "{team}"),
        ("bots:{team}:", "{team}"),
        ("{}:{team}:", ""),  # Cluster hashes the whole key when the first {…} is empty
        ("a{b}c{d}:", "{b}"),
        ("{open:", ""),
    ],
)
def test_the_hash_tag_is_the_one_cluster_hashes_by(prefix_given: str, tag: str) -> None:
    keys = Keys(prefix_given)
    assert keys.hash_tag == tag
    assert keys.job_key("rc-1") == f"{tag}rc-1"
    if tag:
        job_slot = key_slot(f"saq:abort:{keys.job_key('rc-1')}".encode())
        assert job_slot == key_slot(keys.audit.encode()) == key_slot(keys.queue_name.encode())
