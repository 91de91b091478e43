"""What makes a `/release status` ack cheap without making it stale or wrong: the shared
snapshot (bot.runtime.shared_read) and how writes drop it, the audit entries of a burst written
in one pipeline, and commands packed in C. The reads, the Redis and the bot are all real."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError

from bot.adapters.redis.errors import UNREACHABLE
from bot.adapters.redis.store import Store
from bot.commands.release import StatusCommand, parse_release_command
from bot.devtools.slack_stand_in import SlackStandIn
from bot.domain.actors import Actor
from bot.runtime.container import Services, _PackedConnection
from bot.runtime.shared_read import SharedRead
from bot.runtime.web import Bot
from handlers.commands.release import status_from_snapshot
from tests.helpers.bot import RunningBot, make_settings
from tests.helpers.config import make_config
from tests.helpers.redis_server import REDIS_URL
from tests.helpers.signing import sign

ALICE = Actor(user_id="U0ALICE", user_name="alice", channel="C0DEV")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """A read that counts its calls and can be held half way or made to fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def __call__(self) -> int:
        self.calls += 1
        n = self.calls
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("down")
        return n


# --- the snapshot -------------------------------------------------------------------------------


async def test_a_snapshot_is_served_without_a_read_until_it_is_max_age_old():
    clock, source = Clock(), Source()
    shared = SharedRead(source, max_age=0.2, clock=clock)
    assert shared.snapshot() is None
    assert await shared() == 1
    clock.now += 0.09  # younger than half its age: served, nothing read
    assert [await shared() for _ in range(5)] == [1] * 5
    assert source.calls == 1
    clock.now += 0.12  # 0.21 s: too old to be served at all
    assert shared.snapshot() is None
    assert await shared() == 2
    assert source.calls == 2


async def test_past_half_its_age_a_snapshot_is_renewed_while_still_served():
    clock, source = Clock(), Source()
    shared = SharedRead(source, max_age=0.2, clock=clock)
    assert await shared() == 1
    clock.now += 0.15
    source.gate = asyncio.Event()
    assert await shared() == 1  # served at once; the renewal runs behind it
    while source.calls < 2:
        await asyncio.sleep(0)
    assert await shared() == 1  # only one renewal at a time, and nobody waits for it
    assert source.calls == 2
    source.gate.set()
    await asyncio.sleep(0.01)
    # The renewal started at 1000.15: served until 1000.35, no later.
    assert await shared() == 2
    clock.now += 0.19
    assert shared.snapshot() == 2
    clock.now += 0.02
    assert shared.snapshot() is None


async def test_invalidate_drops_the_snapshot_and_any_read_that_started_before_it():
    clock, source = Clock(), Source()
    shared = SharedRead(source, max_age=10.0, clock=clock)
    assert await shared() == 1
    shared.invalidate()
    assert shared.snapshot() is None
    source.gate = asyncio.Event()
    waiting = asyncio.ensure_future(shared())
    while source.calls < 2:
        await asyncio.sleep(0)
    shared.invalidate()  # a change lands while read 2 runs
    source.gate.set()
    assert await waiting == 2  # its caller came before the change: fine for it
    assert shared.snapshot() is None  # but read 2 may have missed the change: not served again
    assert await shared() == 3
    assert shared.snapshot() == 3


async def test_a_failed_read_is_never_a_snapshot():
    clock, source = Clock(), Source()
    shared = SharedRead(source, max_age=10.0, clock=clock)
    source.fail = True
    with pytest.raises(ConnectionError):
        await shared()
    assert shared.snapshot() is None
    source.fail = False
    assert await shared() == 2


async def test_a_failed_renewal_leaves_the_snapshot_to_its_age_and_logs_nothing(caplog):
    clock, source = Clock(), Source()
    shared = SharedRead(source, max_age=0.2, clock=clock)
    assert await shared() == 1
    clock.now += 0.15
    source.fail = True
    assert await shared() == 1
    await asyncio.sleep(0.01)
    assert source.calls == 2
    clock.now += 0.06
    assert shared.snapshot() is None
    assert "exception was never retrieved" not in caplog.text


async def test_without_max_age_every_caller_gets_a_read_that_started_after_it_came():
    source = Source()
    shared = SharedRead(source)
    source.gate = asyncio.Event()
    first = asyncio.ensure_future(shared())
    while source.calls < 1:
        await asyncio.sleep(0)
    # These arrive while read 1 runs: they share read 2, which starts when read 1 ends.
    later = [asyncio.ensure_future(shared()) for _ in range(3)]
    await asyncio.sleep(0)
    source.gate.set()
    assert await first == 1
    assert await asyncio.gather(*later) == [2, 2, 2]
    assert await shared() == 3
    assert shared.snapshot() is None


def test_only_a_plain_status_takes_the_snapshot_path_and_it_agrees_with_the_parser():
    class Status:
        def snapshot(self) -> list[dict[str, str]]:
            return [{"type": "divider"}]

    class Holder:
        status = Status()

    services = Holder()
    for text in ("status", " STATUS ", "Status\n", "\tstatus"):
        answer = status_from_snapshot(services, {"text": text})  # type: ignore[arg-type]
        assert answer is not None and answer.read_only, text
        assert parse_release_command(text) == StatusCommand()
    for text in (
        '"status"',
        "status now",
        "statuses",
        "stat us",
        "\u00a0status",
        "",
        None,
        3,
        "health",
        "rc",
    ):
        assert status_from_snapshot(services, {"text": text}) is None, text  # type: ignore[arg-type]


# --- through the real bot -----------------------------------------------------------------------


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
    body = bot.command_body("list").replace("%2Frelease", "%2Fflag")  # "/flag list"
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


# --- commands packed in C --------------------------------------------------------------------


async def test_the_bot_packs_its_redis_commands_in_c(start_bot, git_remote, tmp_path):
    bot = await start_bot(make_config(git_remote, tmp_path), role="web")
    pools = [bot.services.redis.connection_pool, bot.services.queue.redis.connection_pool]  # type: ignore[attr-defined]
    assert all(issubclass(p.connection_class, _PackedConnection) for p in pools)
    assert "nothing deployed yet" in bot.slack.text_of(await bot.command("status"))


def test_commands_packed_in_c_are_the_bytes_redis_py_sends():
    ours, theirs = _PackedConnection(), Connection()
    for args in [
        ("SET", "k", "v"),
        ("CLIENT SETNAME", "x"),
        (b"GET", "k"),
        ("SET", "k", bytearray(b"x")),
        ("SET", "k", memoryview(b"m")),
        ("SET", "k", 1.5),
        ("ZADD", "z", 2**70, -3),
        ("XADD", "k", "*", "a", "é ✅"),
        ("SET", "k", "x" * 100_000),
    ]:
        assert b"".join(bytes(c) for c in ours.pack_command(*args)) == b"".join(
            bytes(c) for c in theirs.pack_command(*args)
        ), args[:2]
    for bad in (None, True, object()):
        with pytest.raises(DataError):
            ours.pack_command("SET", "k", bad)
    with pytest.raises(UnicodeEncodeError):
        ours.pack_command("SET", "k", "\ud800")


# --- the audit entries of a burst ----------------------------------------------------------------


async def test_a_burst_of_audit_entries_is_written_in_order_each_with_its_own_id(redis, prefix):
    store = Store(redis, prefix)
    ids = await asyncio.gather(
        *(store.audit(ALICE, "command", reason=f"/release status {i}") for i in range(120))
    )
    rows = await redis.xrange(store.keys.audit)
    assert [r[0].decode() for r in rows] == ids
    assert [r[1][b"reason"].decode() for r in rows] == [f"/release status {i}" for i in range(120)]
    # One after another, each waits for its own write.
    first = await store.audit(ALICE, "lock.take", environment="staging")
    second = await store.audit(ALICE, "lock.release", environment="staging")
    entries = await store.audit_entries()
    assert [e["id"] for e in entries[-2:]] == [first, second]


async def test_a_caller_that_stops_waiting_does_not_lose_the_others_entries(redis, prefix):
    store = Store(redis, prefix)
    tasks = [asyncio.ensure_future(store.audit(ALICE, "command", reason=str(i))) for i in range(5)]
    await asyncio.sleep(0)
    tasks[2].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[2], asyncio.CancelledError)
    reasons = [e["reason"] for e in await store.audit_entries()]
    assert {"0", "1", "3", "4"} <= set(reasons)


async def test_an_audit_entry_that_is_not_written_is_an_error_for_its_caller(redis, prefix):
    store = Store(redis, prefix)
    await redis.set(store.keys.audit, "not a stream")
    results = await asyncio.gather(
        *(store.audit(ALICE, "command") for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, ResponseError) for r in results), results

    down = Store(Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1), prefix)
    with pytest.raises(UNREACHABLE) as raised:
        await down.audit(ALICE, "command")
    assert isinstance(raised.value, RedisConnectionError | OSError)
    await down.redis.aclose()


async def test_a_store_used_from_a_new_event_loop_still_writes():
    """Property tests drive one Store from several event loops: a batch belongs to its loop."""
    import uuid

    prefix = f"rbtest:{uuid.uuid4().hex[:12]}:"

    async def one(store: Store | None) -> Store:
        redis = Redis.from_url(REDIS_URL)
        store = store or Store(redis, prefix)
        store.redis = redis
        await store.audit(ALICE, "command")
        await redis.aclose()
        return store

    store = await asyncio.get_running_loop().run_in_executor(None, asyncio.run, one(None))
    await asyncio.get_running_loop().run_in_executor(None, asyncio.run, one(store))
    redis = Redis.from_url(REDIS_URL)
    try:
        assert await redis.xlen(f"{prefix}audit") == 2
    finally:
        await redis.delete(f"{prefix}audit")
        await redis.aclose()
