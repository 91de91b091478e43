"""Audit entries of a burst written in one command, against the real Redis: each caller gets
its own entry's ID in order, an error when the write fails, and nobody's entry is lost to a
caller that stops waiting."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from bot.adapters.redis.errors import UNREACHABLE
from bot.adapters.redis.store import Store
from bot.domain.actors import Actor
from tests.helpers.redis_server import REDIS_URL

ALICE = Actor(user_id="U0ALICE", user_name="alice", channel="C0DEV")


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
