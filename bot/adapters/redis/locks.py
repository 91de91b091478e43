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
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict

from redis.asyncio import Redis
from redis.exceptions import WatchError

from bot.adapters import metrics
from bot.adapters.redis.keys import Keys
from bot.domain.locks import (
    LockHeld,
    LockInfo,
    LockKind,
    LockRefused,
    check_release,
    check_take,
    parse_lock,
)

# Renew the lock if it is still ours, and the deploy's lease with it (KEYS[2], optional): the
# lease the reaper looks for lives exactly as long as the lock does.
_RENEW = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
if cjson.decode(raw)['token'] ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if KEYS[2] then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
return 1
"""

# Take the lock again after it lapsed (Redis was unreachable longer than its TTL), if nobody
# else took it meanwhile; or renew it, if it is still ours.
_RETAKE = """
local raw = redis.call('GET', KEYS[1])
if raw then
  if cjson.decode(raw)['token'] ~= ARGV[1] then return 0 end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
end
if KEYS[2] then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
return 1
"""

# A plain key holding a token (a lease): deleted only by its holder, so a holder that
# overran its time never frees its successor's.
_DROP_IF_HELD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def drop_if_held(redis: Redis, key: str, token: str) -> bool:
    """Delete the lease at `key` if it still holds `token`."""
    return bool(await redis.eval(_DROP_IF_HELD, 1, key, token))


_RELEASE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
if cjson.decode(raw)['token'] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""


_HAND_OVER = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
if cjson.decode(raw)['token'] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


# A lock is renewed every quarter of its TTL. Its holder stops what it does under the lock once
# the lock has gone this long (as a fraction of the TTL) without a renewal that Redis confirmed:
# a frozen or cut-off worker's deploy is killed with 40% of the TTL to spare, before anyone else
# can take the environment. One missed renewal (half the TTL since the last) is still fine.
RENEW_FRACTION = 0.25
STOP_FRACTION = 0.6

DeadlineListener = Callable[[float], None]


class RenewingLock:
    """A lock on `key`, renewed in the background while held, that knows how long it is safe.

    `stop_at` is the monotonic time by which whatever runs under the lock must have stopped,
    unless a renewal succeeds first: STOP_FRACTION of the TTL after the last renewal that Redis
    confirmed, measured from when that renewal was *sent* (Redis extended the key later than
    that, so the real expiry is later still). Listeners hear every new `stop_at`; the process
    supervisor of a deploy command kills the command at it, even if this process is frozen.
    """

    def __init__(
        self,
        redis: Redis,
        key: str,
        ttl_seconds: float,
        lease_key: str | None = None,
        service: str = "",
    ) -> None:
        self.redis = redis
        self.key = key
        self.service = service  # its metrics' label
        self.lease_key = lease_key
        self.ttl = max(0.001, ttl_seconds)
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self.token = secrets.token_hex(16)
        self._renewer: asyncio.Task[None] | None = None
        self._listeners: set[DeadlineListener] = set()
        self.renewed_at = 0.0  # monotonic send time of the last confirmed renewal
        self._held_since = 0.0  # monotonic time it was taken (for its metric)
        self._payload = ""
        self.lost = asyncio.Event()  # set once the lock is not ours, or not safe, any more

    @property
    def stop_at(self) -> float:
        return 0.0 if self.lost.is_set() else self.renewed_at + STOP_FRACTION * self.ttl

    @property
    def safe(self) -> bool:
        """Still ours, as far as this process can tell without asking Redis."""
        return not self.lost.is_set() and time.monotonic() < self.stop_at

    def listen(self, listener: DeadlineListener) -> Callable[[], None]:
        """Call `listener(stop_at)` on every renewal (and with 0 once the lock is lost);
        returns the function that stops listening."""
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def _tell(self) -> None:
        for listener in list(self._listeners):
            listener(self.stop_at)

    def _lose(self) -> None:
        if not self.lost.is_set():
            self.lost.set()
            self._tell()

    async def acquire(self, holder: str, reason: str) -> LockInfo:
        info = LockInfo(holder=holder, reason=reason, since=time.time(), token=self.token)
        payload = json.dumps(asdict(info))
        sent = time.monotonic()
        if await self.redis.set(self.key, payload, nx=True, px=self.ttl_ms):
            metrics.LOCK_HOLDS.labels(self.service, metrics.lock_label(self.key)).inc()
            self._held_since = time.monotonic()
            self.renewed_at = sent
            self._payload = payload
            self.lost.clear()
            if self.lease_key is not None:
                await self.redis.set(self.lease_key, "1", px=self.ttl_ms)
            self._start_renewing()
            return info
        current = await read_lock(self.redis, self.key)
        if current is None:  # expired between the two calls: try once more
            return await self.acquire(holder, reason)
        raise LockHeld(self.key, current)

    def _start_renewing(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_forever())

    async def renew(self) -> bool:
        """One renewal now, bounded by the renewal interval: True if the lock is still ours
        (and now safe again for STOP_FRACTION of the TTL). A renewal that fails or does not
        answer in time counts as not confirmed; once the stop time passes the lock is lost."""
        if self.lost.is_set():
            return False
        sent = time.monotonic()
        keys = [self.key] if self.lease_key is None else [self.key, self.lease_key]
        try:
            # Never waits past the stop time: that is when the lock is lost, answer or not.
            renewed = await asyncio.wait_for(
                self.redis.eval(_RENEW, len(keys), *keys, self.token, self.ttl_ms),
                max(0.01, min(self.ttl * RENEW_FRACTION, self.stop_at - sent)),
            )
        except Exception:  # a Redis blip or a hung Redis: the stop time decides
            if time.monotonic() >= self.stop_at:
                self._lose()
            return False
        if not renewed:  # expired and maybe taken: whatever runs under it must stop now
            self._lose()
            return False
        if sent >= self.stop_at:
            # Confirmed, but only after the stop time: what ran under the lock was already
            # told to stop. The lock is still ours; it stays marked lost for this holder.
            self._lose()
            return False
        self.renewed_at = sent
        self._tell()
        return True

    async def retake(self) -> bool:
        """After the lock was lost by this holder (its stop time passed): renew it if it is
        still ours, or take it again if nobody holds it. False if someone else does."""
        sent = time.monotonic()
        keys = [self.key] if self.lease_key is None else [self.key, self.lease_key]
        try:
            taken = await self.redis.eval(
                _RETAKE, len(keys), *keys, self.token, self.ttl_ms, self._payload
            )
        except Exception:
            return False
        if not taken:
            return False
        self.renewed_at = sent
        self.lost.clear()
        self._start_renewing()
        self._tell()
        return True

    async def _renew_forever(self) -> None:
        while not self.lost.is_set():
            await asyncio.sleep(
                max(0.0, min(self.ttl * RENEW_FRACTION, self.stop_at - time.monotonic()))
            )
            if time.monotonic() >= self.stop_at:
                self._lose()
                return
            await self.renew()

    async def hand_over(self, holder: str, reason: str, kind: LockKind) -> bool:
        """Turn this lock, in one step, into a lasting one (after a rollback): no other deploy
        can slip in between."""
        info = LockInfo(
            holder=holder,
            reason=reason,
            since=time.time(),
            token=f"{kind}:{secrets.token_hex(8)}",
            kind=kind,
        )
        await self._stop_renewing()
        return bool(
            await self.redis.eval(_HAND_OVER, 1, self.key, self.token, json.dumps(asdict(info)))
        )

    async def _stop_renewing(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None

    async def release(self) -> bool:
        """Free the lock if it is still ours. Tried a few times: a lock left behind by one
        failed call would hold everyone else off until it expires."""
        await self._stop_renewing()
        self._listeners.clear()
        if self._held_since:
            held, self._held_since = time.monotonic() - self._held_since, 0.0
            metrics.LOCK_HELD_SECONDS.labels(self.service, metrics.lock_label(self.key)).observe(
                held
            )
        for attempt in range(3):
            try:
                return bool(await self.redis.eval(_RELEASE, 1, self.key, self.token))
            except Exception:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.1 * (attempt + 1))
        return False


async def read_lock(redis: Redis, key: str) -> LockInfo | None:
    return parse_lock(await redis.get(key))


@contextlib.asynccontextmanager
async def held(
    redis: Redis, key: str, ttl_seconds: float, holder: str, reason: str
) -> AsyncIterator[RenewingLock]:
    lock = RenewingLock(redis, key, ttl_seconds)
    await lock.acquire(holder, reason)
    try:
        yield lock
    finally:
        await lock.release()


async def take_lock(
    redis: Redis,
    key: str,
    user: str,
    reason: str,
    *,
    force: bool = False,
    kind: LockKind = "manual",
    now: float | None = None,
) -> LockInfo | None:
    """Lock without expiry; returns the lock that was taken over, if any."""
    info = LockInfo(
        holder=user,
        reason=reason,
        since=now or time.time(),
        token=f"{kind}:{secrets.token_hex(8)}",
        kind=kind,
    )
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


class Locks:
    """The bot's locks in Redis (the `Locks` port): environment locks (a deploy's, which
    renews itself, and the lasting ones people and rollbacks take) and the repository lock of
    whoever creates a candidate."""

    def __init__(self, redis: Redis, keys: Keys, ttl_seconds: float) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_seconds = ttl_seconds  # a self-renewing lock's expiry (worker.lock_ttl_seconds)

    def for_deploy(self, environment: str, deploy_id: str) -> RenewingLock:
        """The lock a deploy holds while it runs; the deploy's lease is renewed with it."""
        return RenewingLock(
            self.redis,
            self.keys.env_lock(environment),
            self.ttl_seconds,
            lease_key=self.keys.deploy_lease(deploy_id),
            service=self.keys.service,
        )

    def repository(self, holder: str, reason: str) -> AbstractAsyncContextManager[RenewingLock]:
        """Held while a candidate is created: one creator at a time, across replicas."""
        return held(self.redis, self.keys.repo_lock, self.ttl_seconds, holder, reason)

    async def take(
        self, environment: str, user: str, reason: str, *, force: bool = False
    ) -> LockInfo | None:
        return await take_lock(
            self.redis, self.keys.env_lock(environment), user, reason, force=force
        )

    async def remove(self, environment: str, user: str, *, force: bool = False) -> LockInfo:
        return await remove_lock(self.redis, self.keys.env_lock(environment), user, force=force)

    async def holder(self, environment: str) -> LockInfo | None:
        """Who holds `environment` now (a deploy running, or a lasting lock), if anyone."""
        return await read_lock(self.redis, self.keys.env_lock(environment))
