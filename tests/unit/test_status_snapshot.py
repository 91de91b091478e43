"""The status snapshot (bot.runtime.shared_read), the text that may take it, and commands
packed in C: what makes a `/release status` ack cheap, in pure code."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from bot.adapters.redis.connect import PackedConnection
from bot.commands.release import StatusCommand, parse_release_command
from bot.runtime.shared_read import SharedRead
from bot.services.show_status import StatusView
from handlers.commands.release import status_from_snapshot


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


async def test_a_snapshot_that_says_it_changed_is_not_served_whatever_its_age():
    """A status showing a freeze is right until the freeze ends (StatusView.fresh): past
    that, by the service's clock, it is read anew though it is young."""
    clock, bot_clock = Clock(), Clock()
    reads = 0

    async def read() -> StatusView:
        nonlocal reads
        reads += 1
        return StatusView([{"type": "divider"}], changes_at=bot_clock.now + 5)

    shared = SharedRead(read, max_age=60, clock=clock, fresh=lambda v: v.fresh(bot_clock()))
    first = await shared()
    bot_clock.now += 4.9
    assert shared.snapshot() is first and reads == 1
    bot_clock.now += 0.1  # the freeze ended: the snapshot is a second old, and wrong
    assert shared.snapshot() is None
    assert await shared() is not first and reads == 2


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
        def snapshot(self) -> StatusView:
            return StatusView([{"type": "divider"}])

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


def test_commands_packed_in_c_are_the_bytes_redis_py_sends():
    ours, theirs = PackedConnection(), Connection()
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
