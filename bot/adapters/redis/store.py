"""Release state in Redis: releases, environment versions, idempotency and the audit stream.

Every change of a release is one optimistic transaction (WATCH/MULTI): the release is read, a
pure transition from `bot.domain.releases` is applied, and the new state is written together
with its audit entry, so a state change never lands without its audit entry and a stale or duplicate
request fails with `TransitionError` instead of overwriting.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError, WatchError

from bot.domain.actors import Actor
from bot.domain.releases import Release, TransitionError
from bot.domain.rollbacks import RollbackRequest

T = TypeVar("T")

# The state store cannot be reached right now (down, hung past a deadline, connection lost):
# what callers catch to say so instead of failing.
UNREACHABLE: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True)
class Status:
    versions: dict[str, dict[str, str]]
    in_flight: list[Release]
    raw_locks: dict[str, bytes]


class Keys:
    """Every Redis key the bot uses, under one prefix (tests give each test its own)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def release(self, version: str) -> str:
        return f"{self.prefix}release:{version}"

    @property
    def releases(self) -> str:
        return f"{self.prefix}releases"

    @property
    def in_flight(self) -> str:
        return f"{self.prefix}releases:in-flight"

    def environment(self, name: str) -> str:
        return f"{self.prefix}env:{name}"

    def history(self, name: str) -> str:
        return f"{self.prefix}env:{name}:history"

    def rollback(self, request_id: str) -> str:
        return f"{self.prefix}rollback:{request_id}"

    def env_lock(self, name: str) -> str:
        return f"{self.prefix}lock:env:{name}"

    @property
    def repo_lock(self) -> str:
        return f"{self.prefix}lock:repo"

    @property
    def running_deploys(self) -> str:
        return f"{self.prefix}deploys:running"

    def deploy_lease(self, deploy_id: str) -> str:
        return f"{self.prefix}lease:deploy:{deploy_id}"

    @property
    def audit(self) -> str:
        return f"{self.prefix}audit"

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}once:{key}"

    def pending(self, kind: str) -> str:
        """A candidate of `kind` (rc, hotfix) being created: who asked, for which command."""
        return f"{self.prefix}pending:{kind}"

    def form(self, ticket: str) -> str:
        """A form the bot opened for one click: who may send it, and what it is for."""
        return f"{self.prefix}form:{ticket}"

    def usergroup(self, group: str) -> str:
        return f"{self.prefix}usergroup:{group}"

    def render(self, version: str) -> str:
        return f"{self.prefix}render:{version}"

    def rendered(self, version: str) -> str:
        return f"{self.prefix}rendered:{version}"

    # Health monitoring: per check its state and its bounded history of results.
    def check_state(self, environment: str, check: str) -> str:
        return f"{self.prefix}mon:state:{environment}:{check}"

    def check_results(self, environment: str, check: str) -> str:
        return f"{self.prefix}mon:results:{environment}:{check}"

    def monitor_window(self, environment: str) -> str:
        return f"{self.prefix}mon:window:{environment}"

    def incident_ack(self, incident_id: str) -> str:
        return f"{self.prefix}mon:ack:{incident_id}"

    @property
    def monitor_writer(self) -> str:
        return f"{self.prefix}mon:writer"

    @property
    def monitor_lock(self) -> str:
        return f"{self.prefix}lock:monitor"

    def tick(self, job: str, slot: int) -> str:
        """Taken by the one replica that runs the scheduled `job` in that time slot."""
        return f"{self.prefix}tick:{job}:{slot}"

    @property
    def queue_name(self) -> str:
        return f"{self.prefix}jobs"


class Store:
    def __init__(self, redis: Redis, prefix: str = "releasebot:",
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.clock = clock

    # --- audit --------------------------------------------------------------------------------

    def _audit_fields(self, actor: Actor, action: str, *, release: str = "",
                      environment: str = "", outcome: str = "ok",
                      reason: str = "") -> dict[str, str]:
        return {"at": f"{self.clock():.3f}", "user_id": actor.user_id,
                "user_name": actor.user_name, "channel": actor.channel, "release": release,
                "environment": environment, "action": action, "outcome": outcome,
                "reason": reason}

    async def audit(self, actor: Actor, action: str, **fields: str) -> str:
        """Append one entry to the audit stream (never trimmed); returns its stream ID."""
        entry_id = await self.redis.xadd(self.keys.audit,
                                         self._audit_fields(actor, action, **fields))
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def audit_entries(self, release: str | None = None) -> list[dict[str, str]]:
        rows = await self.redis.xrange(self.keys.audit)
        entries = [{"id": _s(entry_id), **{_s(k): _s(v) for k, v in data.items()}}
                   for entry_id, data in rows]
        if release is not None:
            entries = [e for e in entries if e["release"] == release]
        return entries

    # --- releases ------------------------------------------------------------------------------

    async def create_release(self, release: Release, actor: Actor) -> None:
        """Record a new release; fails if the version is already recorded.

        A record of that version still in phase "creating" is one whose creation died half
        way (candidates are created one at a time, under the repository lock, so its creator
        is gone): it is replaced, with an audit entry, instead of refusing every later
        candidate until someone edits Redis by hand."""
        key = self.keys.release(release.version)
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(key)
            raw = await pipe.get(key)
            stale = raw is not None and Release.from_json(raw).phase == "creating"
            if raw is not None and not stale:
                raise TransitionError(f"{release.version} is already recorded")
            pipe.multi()
            if stale:
                pipe.xadd(self.keys.audit, self._audit_fields(
                    actor, "release.discard", release=release.version, outcome="discarded",
                    reason="a creation that died half way, replaced by a new one"))
            release.rev = 1
            pipe.set(key, release.to_json())
            pipe.zadd(self.keys.releases, {release.version: release.created_at})
            pipe.sadd(self.keys.in_flight, release.version)
            pipe.xadd(self.keys.audit, self._audit_fields(
                actor, "hotfix.create" if release.kind == "hotfix" else "release.create",
                release=release.version, reason=release.description))
            try:
                await pipe.execute()
            except WatchError:
                raise TransitionError(f"{release.version} is already recorded") from None

    async def discard_release(self, version: str, actor: Actor, reason: str) -> None:
        """Remove a release that never came to be (its tag was not pushed); audited."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.release(version))
            pipe.zrem(self.keys.releases, version)
            pipe.srem(self.keys.in_flight, version)
            pipe.xadd(self.keys.audit, self._audit_fields(
                actor, "release.discard", release=version, outcome="discarded",
                reason=reason))
            await pipe.execute()

    async def get_release(self, version: str) -> Release | None:
        raw = await self.redis.get(self.keys.release(version))
        return Release.from_json(raw) if raw is not None else None

    async def recent_releases(self, count: int) -> list[Release]:
        versions = await self.redis.zrevrange(self.keys.releases, 0, count - 1)
        if not versions:
            return []
        raws = await self.redis.mget([self.keys.release(_s(v)) for v in versions])
        return [Release.from_json(r) for r in raws if r is not None]

    async def releases_in_flight(self) -> list[Release]:
        versions = await self.redis.smembers(self.keys.in_flight)
        if not versions:
            return []
        raws = await self.redis.mget([self.keys.release(_s(v)) for v in versions])
        found = [Release.from_json(r) for r in raws if r is not None]
        return sorted(found, key=lambda r: r.created_at)

    async def update_release(self, version: str, change: Callable[[Release], T], actor: Actor,
                             action: str, *, environment: str = "", outcome: str = "ok",
                             reason: str = "") -> tuple[Release, T]:
        """Apply `change` to the release atomically, with its audit entry.

        `change` mutates the release and may raise TransitionError, in which case nothing is
        written. Concurrent writers are retried against the fresh state.
        """
        key = self.keys.release(version)
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                raw = await pipe.get(key)
                if raw is None:
                    raise TransitionError(f"there is no release {version}")
                release = Release.from_json(raw)
                result = change(release)
                release.rev += 1
                pipe.multi()
                pipe.set(key, release.to_json())
                if release.phase == "done":
                    pipe.srem(self.keys.in_flight, version)
                pipe.xadd(self.keys.audit, self._audit_fields(
                    actor, action, release=version, environment=environment,
                    outcome=outcome, reason=reason))
                try:
                    await pipe.execute()
                except WatchError:
                    continue
                return release, result

    # --- rollbacks ----------------------------------------------------------------------------

    async def create_rollback(self, request: RollbackRequest, actor: Actor) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.rollback(request.id), request.to_json())
            pipe.xadd(self.keys.audit, self._audit_fields(
                actor, "rollback.request", release=request.from_release,
                environment=request.environment,
                reason=f"to {request.to_tag}: {request.reason}"))
            await pipe.execute()

    async def get_rollback(self, request_id: str) -> RollbackRequest | None:
        raw = await self.redis.get(self.keys.rollback(request_id))
        return RollbackRequest.from_json(raw) if raw is not None else None

    async def update_rollback(self, request_id: str, change: Callable[[RollbackRequest], T],
                              actor: Actor, action: str, *, outcome: str = "ok",
                              reason: str = "") -> tuple[RollbackRequest, T]:
        """Like update_release: one atomic change with its audit entry, or nothing."""
        key = self.keys.rollback(request_id)
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                raw = await pipe.get(key)
                if raw is None:
                    raise TransitionError(f"there is no rollback {request_id}")
                request = RollbackRequest.from_json(raw)
                result = change(request)
                request.rev += 1
                pipe.multi()
                pipe.set(key, request.to_json())
                pipe.xadd(self.keys.audit, self._audit_fields(
                    actor, action, release=request.from_release,
                    environment=request.environment, outcome=outcome, reason=reason))
                try:
                    await pipe.execute()
                except WatchError:
                    continue
                return request, result

    # --- environments -------------------------------------------------------------------------

    async def set_environment_version(self, environment: str, version: str, tag: str,
                                      sha: str, release: str = "",
                                      deployed_at: float | None = None) -> bool:
        """What `environment` now runs, and its history (newest first) for rollbacks.

        `deployed_at` is when the deploy finished; an outcome written late (Redis was
        unreachable) never replaces a deploy recorded as finished after it. False then."""
        at = self.clock() if deployed_at is None else deployed_at
        entry = {"version": version, "tag": tag, "sha": sha, "deployed_at": f"{at:.3f}",
                 "release": release}
        key = self.keys.environment(environment)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    current = await pipe.hget(key, "deployed_at")
                    if current is not None and float(current) > at:
                        await pipe.reset()
                        return False
                    pipe.multi()
                    pipe.hset(key, mapping=entry)
                    pipe.lpush(self.keys.history(environment), json.dumps(entry))
                    pipe.ltrim(self.keys.history(environment), 0, 99)
                    await pipe.execute()
                    return True
                except WatchError:
                    continue

    async def environment_history(self, environment: str) -> list[dict[str, str]]:
        return [json.loads(raw) for raw in
                await self.redis.lrange(self.keys.history(environment), 0, 99)]

    async def environment_versions(self, names: list[str]) -> dict[str, dict[str, str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self.keys.environment(name))
            rows = await pipe.execute()
        return {name: {_s(k): _s(v) for k, v in row.items()} for name, row in zip(names, rows,
                                                                                  strict=True)}

    async def status(self, environments: list[str]) -> Status:
        """Everything `/release status` shows, in one round trip (plus one when in flight)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in environments:
                pipe.hgetall(self.keys.environment(name))
            for name in environments:
                pipe.get(self.keys.env_lock(name))
            pipe.smembers(self.keys.in_flight)
            rows = await pipe.execute()
        n = len(environments)
        versions = {name: {_s(k): _s(v) for k, v in row.items()}
                    for name, row in zip(environments, rows[:n], strict=True)}
        locks = {name: raw for name, raw in zip(environments, rows[n:2 * n], strict=True)
                 if raw is not None}
        in_flight: list[Release] = []
        if rows[-1]:
            raws = await self.redis.mget([self.keys.release(_s(v)) for v in rows[-1]])
            in_flight = sorted((Release.from_json(r) for r in raws if r is not None),
                               key=lambda r: r.created_at)
        return Status(versions=versions, in_flight=in_flight, raw_locks=locks)

    # --- idempotency ---------------------------------------------------------------------------

    async def first_time(self, key: str, ttl_seconds: int = 3600) -> bool:
        """True the first time `key` is seen within the TTL (re-deliveries and double clicks)."""
        return bool(await self.redis.set(self.keys.idempotency(key), "1", nx=True,
                                         ex=ttl_seconds))


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

