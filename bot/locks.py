"""Environment locks in Redis: a running deploy's, and the ones people (or a rollback) take.

A lock is one key holding JSON {token, holder, reason, since, kind}. A deploy's lock expires
unless its holder keeps renewing it; only the holder's token can renew or release it (checked
in Lua, so the check and the write are one step), and if the holder dies the key simply expires.
Manual and rollback locks do not expire: they stay until someone unlocks the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Literal

from redis.asyncio import Redis
from redis.exceptions import WatchError

_RENEW = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
if cjson.decode(raw)['token'] ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_RELEASE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
if cjson.decode(raw)['token'] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""


LockKind = Literal["deploy", "manual", "rollback"]


_HAND_OVER = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
if cjson.decode(raw)['token'] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class LockInfo:
    holder: str
    reason: str
    since: float
    token: str
    kind: LockKind = "deploy"


class LockHeld(Exception):
    def __init__(self, key: str, info: LockInfo) -> None:
        super().__init__(f"{key} is held by {info.holder}")
        self.info = info


def format_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


class RenewingLock:
    """A lock on `key`, renewed in the background every third of its TTL while held."""

    def __init__(self, redis: Redis, key: str, ttl_seconds: float) -> None:
        self.redis = redis
        self.key = key
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self.token = secrets.token_hex(16)
        self._renewer: asyncio.Task[None] | None = None
        self.lost = asyncio.Event()

    async def acquire(self, holder: str, reason: str) -> LockInfo:
        info = LockInfo(holder=holder, reason=reason, since=time.time(), token=self.token)
        payload = json.dumps(asdict(info))
        if await self.redis.set(self.key, payload, nx=True, px=self.ttl_ms):
            self._renewer = asyncio.create_task(self._renew_forever())
            return info
        current = await read_lock(self.redis, self.key)
        if current is None:  # expired between the two calls: try once more
            return await self.acquire(holder, reason)
        raise LockHeld(self.key, current)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                renewed = await self.redis.eval(_RENEW, 1, self.key, self.token, self.ttl_ms)
            except Exception:  # a Redis blip: try again next round; the TTL covers us
                continue
            if not renewed:
                self.lost.set()
                return

    async def hand_over(self, holder: str, reason: str, kind: LockKind) -> bool:
        """Turn this lock, in one step, into a lasting one (after a rollback): no other deploy
        can slip in between."""
        info = LockInfo(holder=holder, reason=reason, since=time.time(),
                        token=f"{kind}:{secrets.token_hex(8)}", kind=kind)
        await self._stop_renewing()
        return bool(await self.redis.eval(_HAND_OVER, 1, self.key, self.token,
                                          json.dumps(asdict(info))))

    async def _stop_renewing(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None

    async def release(self) -> bool:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        return bool(await self.redis.eval(_RELEASE, 1, self.key, self.token))


def parse_lock(raw: str | bytes | None) -> LockInfo | None:
    return None if raw is None else LockInfo(**json.loads(raw))


async def read_lock(redis: Redis, key: str) -> LockInfo | None:
    return parse_lock(await redis.get(key))


async def release_if_token(redis: Redis, key: str, token: str) -> bool:
    return bool(await redis.eval(_RELEASE, 1, key, token))


@contextlib.asynccontextmanager
async def held(redis: Redis, key: str, ttl_seconds: float, holder: str,
               reason: str) -> AsyncIterator[RenewingLock]:
    lock = RenewingLock(redis, key, ttl_seconds)
    await lock.acquire(holder, reason)
    try:
        yield lock
    finally:
        await lock.release()


# --- locks people take ------------------------------------------------------------------------

class LockRefused(Exception):
    """Taking or removing a lock is not allowed; the message says why and what would work."""


def check_take(current: LockInfo | None, user: str, force: bool) -> None:
    """May `user` lock an environment that `current` holds? Raises LockRefused if not."""
    if current is None or (current.holder == user and current.kind == "manual"):
        return
    if current.kind == "deploy":
        raise LockRefused("a deploy is running there; lock it when the deploy has finished")
    if not force:
        raise LockRefused("it is already locked; add `--force` to take the lock over "
                          "(this is announced in the channel and audited)")


def check_release(current: LockInfo | None, user: str, force: bool) -> None:
    """May `user` unlock? A deploy's lock never; a rollback's lock anyone; another person's
    lock only with force."""
    if current is None:
        raise LockRefused("it is not locked")
    if current.kind == "deploy":
        raise LockRefused("a deploy is running there; its lock goes when the deploy ends")
    if current.kind == "manual" and current.holder != user and not force:
        raise LockRefused("someone else holds the lock; add `--force` to unlock it anyway "
                          "(this is announced in the channel and audited)")


async def take_lock(redis: Redis, key: str, user: str, reason: str, *, force: bool = False,
                    kind: LockKind = "manual", now: float | None = None) -> LockInfo | None:
    """Lock without expiry; returns the lock that was taken over, if any."""
    info = LockInfo(holder=user, reason=reason, since=now or time.time(),
                    token=f"{kind}:{secrets.token_hex(8)}", kind=kind)
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(key)
                current = parse_lock(await pipe.get(key))
                if kind == "manual":
                    check_take(current, user, force)
                elif current is not None and current.kind == "deploy":
                    raise LockRefused("a deploy is running there")
                pipe.multi()
                pipe.set(key, json.dumps(asdict(info)))
                await pipe.execute()
                return current
            except WatchError:
                continue


async def remove_lock(redis: Redis, key: str, user: str, *, force: bool = False) -> LockInfo:
    """Unlock; returns the lock that was removed."""
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(key)
                current = parse_lock(await pipe.get(key))
                check_release(current, user, force)
                assert current is not None
                pipe.multi()
                pipe.delete(key)
                await pipe.execute()
                return current
            except WatchError:
                continue
