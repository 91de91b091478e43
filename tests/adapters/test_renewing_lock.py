"""The environment lock against real Redis: exclusive, renewed while held, released only by
its holder, and given up in time when Redis stops answering."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from bot.adapters.redis.locks import STOP_FRACTION, RenewingLock, read_lock
from bot.domain.locks import LockHeld
from tests.helpers.redis_server import RedisServer


async def test_renewing_lock_is_exclusive_and_renewed(redis, prefix):
    key = f"{prefix}lock:test"
    first = RenewingLock(redis, key, 0.6)
    await first.acquire("U1", "one")
    second = RenewingLock(redis, key, 0.6)
    try:
        await second.acquire("U2", "two")
        raise AssertionError("second acquire must fail")
    except LockHeld as exc:
        assert exc.info.holder == "U1"
    await asyncio.sleep(1.5)  # well past the TTL: still held because it is renewed
    assert (await read_lock(redis, key)).holder == "U1"
    assert await first.release()
    assert await read_lock(redis, key) is None
    assert not await first.release()  # releasing twice is harmless
    await second.acquire("U2", "two")
    # Another holder's token cannot release it.
    assert not await first.release()
    assert (await read_lock(redis, key)).holder == "U2"
    await second.release()


async def test_a_renewing_lock_is_lost_when_redis_stops_answering(own_redis: RedisServer):
    client = Redis.from_url(own_redis.url, socket_timeout=5)
    lock = RenewingLock(client, "lock:env:staging", 1.0)
    await lock.acquire("U0ALICE", "deploying")
    heard: list[float] = []
    lock.listen(heard.append)
    await asyncio.sleep(0.6)
    assert lock.safe and heard and heard[-1] > time.monotonic()  # renewed, told
    own_redis.pause()
    paused_at = time.monotonic()
    await asyncio.wait_for(lock.lost.wait(), 2)
    assert time.monotonic() - paused_at <= STOP_FRACTION * 1.0 + 0.3
    assert heard[-1] == 0.0 and not lock.safe  # told to stop now
    own_redis.resume()
    await client.aclose()
