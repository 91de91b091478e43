"""The channels' outboxes in Redis (what they hold: bot.domain.outbox).

One list per channel, oldest first; an entry leaves it only after Slack took the message that
says it, so a replica that dies mid-send loses nothing (the next sender says it again). One
sender per channel at a time across replicas (a lease), and one pace per channel across
replicas (the time of the next free slot, kept by Redis's clock so replicas agree).
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from bot.adapters.redis.keys import Keys

# KEYS: the pace key. ARGV: seconds between two messages. Returns the seconds to wait for the
# slot it reserves.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
local at = math.max(now, free)
local gap = tonumber(ARGV[1])
redis.call('SET', KEYS[1], tostring(at + gap), 'PX', math.ceil((at - now + gap) * 1000) + 1000)
return tostring(at - now)
"""

# Lets go of the lease if it is still ours; returns how many entries wait (0 also drops the
# channel from the outboxes to look at).
_LET_GO = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
local left = redis.call('LLEN', KEYS[2])
if left == 0 then redis.call('SREM', KEYS[3], ARGV[2]) end
return left
"""

# Drops the first ARGV[2] entries, if the lease is still ARGV[1]'s (a sender that lost it
# must not drop what the next one is sending).
_SENT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('LTRIM', KEYS[2], tonumber(ARGV[2]), -1)
return 1
"""

# Renews the lease if it is still ARGV[1]'s.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""


class RedisOutbox:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    def queue_put(self, pipe: Pipeline, channel: str, entries: Sequence[bytes]) -> None:
        """Queue entries for `channel` in `pipe` (a transaction that records what they say,
        so the change and what is said of it land together)."""
        if entries:
            pipe.rpush(self._keys.outbox(channel), *entries)
            pipe.sadd(self._keys.outboxes, channel)

    async def put(self, channel: str, entries: Sequence[bytes]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            self.queue_put(pipe, channel, entries)
            await pipe.execute()

    async def peek(self, channel: str, count: int) -> list[bytes]:
        """The oldest `count` entries, left where they are."""
        rows = await self._redis.lrange(self._keys.outbox(channel), 0, count - 1)
        return [r if isinstance(r, bytes) else str(r).encode() for r in rows]

    async def sent(self, channel: str, token: str, count: int) -> bool:
        """The oldest `count` entries were said: they leave, if `token` still holds the
        lease. False if it does not (they stay for the sender that holds it now)."""
        keys = [self._keys.outbox_lease(channel), self._keys.outbox(channel)]
        return bool(await self._redis.eval(_SENT, 2, *keys, token, count))

    async def waiting(self, channels: Sequence[str]) -> int:
        """How many entries wait in these channels' outboxes."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for channel in channels:
                pipe.llen(self._keys.outbox(channel))
            return sum(int(n) for n in await pipe.execute())

    async def channels(self) -> list[str]:
        """The channels whose outbox may hold something."""
        return sorted(
            c.decode() if isinstance(c, bytes) else str(c)
            for c in await self._redis.smembers(self._keys.outboxes)
        )

    # --- one sender per channel ---------------------------------------------------------------

    async def lease(self, channel: str, token: str, seconds: float) -> bool:
        return bool(
            await self._redis.set(
                self._keys.outbox_lease(channel), token, nx=True, px=int(seconds * 1000)
            )
        )

    async def lease_left(self, channel: str) -> float:
        """Seconds until the channel's lease lapses (0 if nobody holds it)."""
        ms = await self._redis.pttl(self._keys.outbox_lease(channel))
        return max(0.0, int(ms) / 1000)

    async def renew(self, channel: str, token: str, seconds: float) -> bool:
        key = self._keys.outbox_lease(channel)
        return bool(await self._redis.eval(_RENEW, 1, key, token, int(seconds * 1000)))

    async def let_go(self, channel: str, token: str) -> int:
        """Give the lease up; returns how many entries still wait (the caller looks again
        if any do: one may have come while it held the lease, and its putter left it to us)."""
        keys = [self._keys.outbox_lease(channel), self._keys.outbox(channel), self._keys.outboxes]
        return int(await self._redis.eval(_LET_GO, 3, *keys, token, channel))

    # --- the pace -----------------------------------------------------------------------------

    async def reserve(self, channel: str, interval: float) -> float:
        """Reserve the channel's next free slot for one message; returns the seconds until
        it (0 when the channel has been quiet for `interval`)."""
        wait = await self._redis.eval(_RESERVE, 1, self._keys.outbox_pace(channel), interval)
        return max(0.0, float(wait))
