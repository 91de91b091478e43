"""Release state in Redis: releases, environment versions, idempotency and the audit stream.

Every change of a release is one optimistic transaction (WATCH/MULTI): the release is read, a
pure transition from `bot.domain.releases` is applied, and the new state is written together
with its audit entry, so a state change never lands without its audit entry and a stale or duplicate
request fails with `TransitionError` instead of overwriting.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import WatchError
from redis.typing import EncodableT, FieldT

from bot.adapters import metrics
from bot.adapters.redis.atomic import update_atomically
from bot.adapters.redis.audit import (
    backfill_indexes,
    latest_entries,
    read_entries,
    release_entries,
)
from bot.adapters.redis.freezes import decode_freezes
from bot.adapters.redis.keys import Keys
from bot.domain.actors import BOT, Actor
from bot.domain.config import DEPLOY_CHECK, OUTAGE_CHECK
from bot.domain.flag_requests import FlagRequest
from bot.domain.releases import Release, TransitionError
from bot.domain.rollbacks import RollbackRequest
from bot.domain.windows import Freeze
from bot.services.ports import Status, StatusSummary

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Audit entries, each XADDed to KEYS[1] and its ID added to the index of its release
# (ARGV[1] .. release version), so a release's trail is read without scanning the stream.
# KEYS[2] keeps the first ID indexed this way (older entries are the backfill's). ARGV: the
# index key prefix, the position of the release among the field names, n, the n field
# names, then n values per entry.
_AUDIT_APPEND = """
local at = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local ids = {}
for first = n + 4, #ARGV, n do
  local entry = {}
  for j = 1, n do
    entry[2 * j - 1] = ARGV[3 + j]
    entry[2 * j] = ARGV[first + j - 1]
  end
  local id = redis.call("XADD", KEYS[1], "*", unpack(entry))
  -- One version, or several separated by spaces (bot.adapters.redis.audit.releases_of).
  for release in string.gmatch(ARGV[first + at - 1], "%S+") do
    redis.call("ZADD", ARGV[1] .. release, tonumber(string.match(id, "^%d+")), id)
  end
  ids[#ids + 1] = id
end
if #ids > 0 then redis.call("SET", KEYS[2], ids[1], "NX") end
return ids
"""


@dataclass
class _AuditBatch:
    """Audit entries waiting for one write, and their stream IDs once it is done."""

    loop: asyncio.AbstractEventLoop
    written: asyncio.Future[list[str]]
    entries: list[dict[FieldT, EncodableT]] = field(default_factory=list)
    writer: asyncio.Task[None] | None = None  # held here: the loop keeps only a weak one


class Store:
    def __init__(
        self,
        redis: Redis,
        prefix: str = "releasebot:",
        clock: Callable[[], float] = time.time,
        service: str = "",
    ) -> None:
        self.redis = redis
        self.keys = Keys(prefix, service)
        self.clock = clock
        self._audit_batch: _AuditBatch | None = None

    # --- audit --------------------------------------------------------------------------------

    def _audit_fields(
        self,
        actor: Actor,
        action: str,
        *,
        release: str = "",
        environment: str = "",
        outcome: str = "ok",
        reason: str = "",
    ) -> dict[FieldT, EncodableT]:
        return {
            "at": f"{self.clock():.3f}",
            "user_id": actor.user_id,
            "user_name": actor.user_name,
            "channel": actor.channel,
            "release": release,
            "environment": environment,
            "action": action,
            "outcome": outcome,
            "reason": reason,
        }

    async def audit(self, actor: Actor, action: str, **fields: str) -> str:
        """Append one entry to the audit stream (never trimmed); returns its stream ID once
        the entry is in Redis, and raises if it may not be.

        Entries audited while a write is being prepared go in that one write: a burst of
        commands, each with its entry after its ack, costs one round trip and one command
        instead of one each. Nobody is told an entry is written before Redis has answered for
        it; if the write fails, everyone in it hears so (none of them is lost silently)."""
        loop = asyncio.get_running_loop()
        batch = self._audit_batch
        if batch is None or batch.loop is not loop:
            batch = self._audit_batch = _AuditBatch(loop, loop.create_future())
            batch.writer = loop.create_task(self._write_audit_batch(batch))
        index = len(batch.entries)
        batch.entries.append(self._audit_fields(actor, action, **fields))
        # Shielded: a caller that stops waiting does not cancel the others' write.
        written = (await asyncio.shield(batch.written))[index]
        metrics.audited(
            self.keys.service, action, fields.get("environment", ""), fields.get("outcome", "ok")
        )
        return written

    async def _write_audit_batch(self, batch: _AuditBatch) -> None:
        if self._audit_batch is batch:
            self._audit_batch = None  # entries from now on go in the next write
        try:
            # One command for the lot: N XADDs through a pipeline cost far more Python than
            # one script call whose arguments hiredis packs and whose reply it parses.
            replies = await self._append_audit(batch.entries)
        except asyncio.CancelledError:
            batch.written.cancel()
            raise
        except Exception as exc:
            batch.written.set_exception(exc)
            batch.written.exception()  # retrieved here: every caller may have stopped waiting
        else:
            batch.written.set_result([_s(r) for r in replies])

    @functools.cached_property
    def _audit_script(self) -> AsyncScript:
        return self.redis.register_script(_AUDIT_APPEND)

    def _audit_args(self, entries: list[dict[FieldT, EncodableT]]) -> list[EncodableT]:
        names = list(entries[0])  # every entry has _audit_fields' fields
        args: list[EncodableT] = [
            self.keys.audit_of_release(""),
            names.index("release") + 1,
            len(names),
            *names,
        ]
        for entry in entries:
            args.extend(entry[name] for name in names)
        return args

    async def _append_audit(self, entries: list[dict[FieldT, EncodableT]]) -> list[Any]:
        """Append entries to the audit stream and to their releases' indexes, in one call."""
        replies = await self._audit_script(
            keys=[self.keys.audit, self.keys.audit_indexed_from],
            args=self._audit_args(entries),
            client=self.redis,
        )
        return list(replies)

    def _queue_audit(self, pipe: Pipeline, entry: dict[FieldT, EncodableT]) -> None:
        """The same, queued in a transaction (MULTI) with the change it records: the entry,
        its index and the change land together or not at all."""
        script = self._audit_script
        # Loaded before EXEC if Redis does not have it yet (redis-py types the set as holding
        # its sync Script; the async pipeline loads an AsyncScript the same way).
        pipe.scripts.add(script)  # type: ignore[arg-type]
        pipe.evalsha(
            script.sha, 2, self.keys.audit, self.keys.audit_indexed_from, *self._audit_args([entry])
        )

    def queue_audit(self, pipe: Pipeline, actor: Actor, action: str, **fields: str) -> None:
        """An entry of `actor`'s, queued in `pipe`'s transaction with the change it records
        (a freeze request's approval with the request and the freeze it sets)."""
        self._queue_audit(pipe, self._audit_fields(actor, action, **fields))

    def queue_bot_audit(self, pipe: Pipeline, action: str, **fields: str) -> None:
        """An entry of the bot's own doing, queued in `pipe`'s transaction (the monitor's
        incidents are recorded with the states they change)."""
        self._queue_audit(pipe, self._audit_fields(BOT, action, **fields))

    async def audit_entries(self, release: str | None = None) -> list[dict[str, str]]:
        """The whole trail (of one release), in a list: for small trails and tests."""
        return [entry async for entry in self.audit_trail(release)]

    def audit_trail(self, release: str | None = None) -> AsyncIterator[dict[str, str]]:
        """The trail oldest first (of one release, if given: through its index, whatever the
        length of the stream), read a batch at a time."""
        if release is not None:
            return release_entries(self.redis, self.keys, release)
        return read_entries(self.redis, self.keys.audit)

    def audit_since(self, since: float) -> AsyncIterator[dict[str, str]]:
        """The trail from the time `since` on (its stream IDs start with the milliseconds they
        were written at, so no entry before is read)."""
        return read_entries(self.redis, self.keys.audit, start=f"{max(0, int(since * 1000))}-0")

    async def latest_audit(self, count: int) -> tuple[list[dict[str, str]], int]:
        """The newest `count` entries, oldest of them first, and how many there are in all."""
        return await latest_entries(self.redis, self.keys.audit, count)

    async def index_older_audit(self, batch: int = 2000, steps: int = 1) -> bool:
        """Up to `steps` bounded steps of indexing what was recorded before entries were
        indexed as written, with the loop's turn between; True once nothing is left."""
        for step in range(steps):
            if step:
                await asyncio.sleep(0)
            if await backfill_indexes(self.redis, self.keys, batch):
                return True
        return False

    async def release_by_final_version(self, final_version: str) -> str | None:
        raw = await self.redis.hget(self.keys.final_versions, final_version)
        return None if raw is None else _s(raw)

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
                self._queue_audit(
                    pipe,
                    self._audit_fields(
                        actor,
                        "release.discard",
                        release=release.version,
                        outcome="discarded",
                        reason="a creation that died half way, replaced by a new one",
                    ),
                )
            release.rev = 1
            pipe.set(key, release.to_json())
            pipe.zadd(self.keys.releases, {release.version: release.created_at})
            pipe.sadd(self.keys.in_flight, release.version)
            self._queue_audit(
                pipe,
                self._audit_fields(
                    actor,
                    "hotfix.create" if release.kind == "hotfix" else "release.create",
                    release=release.version,
                    reason=release.description,
                ),
            )
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
            self._queue_audit(
                pipe,
                self._audit_fields(
                    actor, "release.discard", release=version, outcome="discarded", reason=reason
                ),
            )
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

    async def update_release(
        self,
        version: str,
        change: Callable[[Release], T],
        actor: Actor,
        action: str,
        *,
        environment: str = "",
        outcome: str = "ok",
        reason: str = "",
    ) -> tuple[Release, T]:
        """Apply `change` to the release atomically, with its audit entry.

        `change` mutates the release and may raise TransitionError, in which case nothing is
        written. Concurrent writers are retried against the fresh state.
        """

        def also(pipe: Pipeline, release: Release) -> None:
            if release.phase == "done":
                pipe.srem(self.keys.in_flight, version)
            if release.final_version:  # found by it for ever after (`/release audit 1.4.0`)
                pipe.hset(self.keys.final_versions, release.final_version, version)
            self._queue_audit(
                pipe,
                self._audit_fields(
                    actor,
                    action,
                    release=version,
                    environment=environment,
                    outcome=outcome,
                    reason=reason,
                ),
            )

        done = await update_atomically(
            self.redis,
            self.keys.release(version),
            load=Release.from_json,
            change=change,
            also=also,
            missing=f"there is no release {version}",
        )
        # Counted once written: the entry is queued again on every retry of the transaction.
        metrics.audited(self.keys.service, action, environment, outcome)
        return done

    # --- rollbacks ----------------------------------------------------------------------------

    async def create_rollback(self, request: RollbackRequest, actor: Actor) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.rollback(request.id), request.to_json())
            self._index_rollback(pipe, request)
            self._queue_audit(
                pipe,
                self._audit_fields(
                    actor,
                    "rollback.request",
                    release=request.releases,
                    environment=request.environment,
                    reason=f"to {request.to_tag}: {request.reason}",
                ),
            )
            await pipe.execute()

    async def get_rollback(self, request_id: str) -> RollbackRequest | None:
        raw = await self.redis.get(self.keys.rollback(request_id))
        return RollbackRequest.from_json(raw) if raw is not None else None

    async def update_rollback(
        self,
        request_id: str,
        change: Callable[[RollbackRequest], T],
        actor: Actor,
        action: str,
        *,
        outcome: str = "ok",
        reason: str = "",
    ) -> tuple[RollbackRequest, T]:
        """Like update_release: one atomic change with its audit entry, or nothing."""

        def also(pipe: Pipeline, request: RollbackRequest) -> None:
            self._index_rollback(pipe, request)
            self._queue_audit(
                pipe,
                self._audit_fields(
                    actor,
                    action,
                    release=request.releases,
                    environment=request.environment,
                    outcome=outcome,
                    reason=reason,
                ),
            )

        done = await update_atomically(
            self.redis,
            self.keys.rollback(request_id),
            load=RollbackRequest.from_json,
            change=change,
            also=also,
            missing=f"there is no rollback {request_id}",
        )
        metrics.audited(self.keys.service, action, done[0].environment, outcome)
        return done

    def _index_rollback(self, pipe: Pipeline, request: RollbackRequest) -> None:
        """The request in the index of those waiting while it waits, and out of it after."""
        if request.status == "waiting":
            pipe.sadd(self.keys.rollbacks_waiting, request.id)
        else:
            pipe.srem(self.keys.rollbacks_waiting, request.id)

    # --- environments -------------------------------------------------------------------------

    async def set_environment_version(
        self,
        environment: str,
        version: str,
        tag: str,
        sha: str,
        release: str = "",
        deployed_at: float | None = None,
        rolled_back_from: str = "",
        adopted: str = "",
    ) -> bool:
        """What `environment` now runs, and its history (newest first) for rollbacks
        (bot.domain.rollbacks: `rolled_back_from` marks the version a rollback replaced;
        `adopted` says how the bot learnt of a version it did not deploy itself).

        `deployed_at` is when the deploy finished; an outcome written late (Redis was
        unreachable) never replaces a deploy recorded as finished after it. False then."""
        at = self.clock() if deployed_at is None else deployed_at
        entry: dict[FieldT, EncodableT] = {
            "version": version,
            "tag": tag,
            "sha": sha,
            "deployed_at": f"{at:.3f}",
            "release": release,
        }
        if rolled_back_from:
            entry["rolled_back_from"] = rolled_back_from
        if adopted:
            entry["adopted"] = adopted
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

    async def adopt_unknown(
        self, environment: str, version: str, tag: str, sha: str, adopted: str
    ) -> bool:
        """What `environment` runs, learnt rather than deployed (`adopted`: how), recorded
        with the bot's audit entry `environment.adopt` only while nothing is recorded for it,
        all in one transaction: a deploy that finished meanwhile, or another replica that
        adopted first, wins, and this writes nothing. True if recorded."""
        entry: dict[FieldT, EncodableT] = {
            "version": version,
            "tag": tag,
            "sha": sha,
            "deployed_at": f"{self.clock():.3f}",
            "release": "",
            "adopted": adopted,
        }
        key = self.keys.environment(environment)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    if await pipe.hget(key, "version"):
                        await pipe.reset()
                        return False
                    pipe.multi()
                    pipe.hset(key, mapping=entry)
                    pipe.lpush(self.keys.history(environment), json.dumps(entry))
                    pipe.ltrim(self.keys.history(environment), 0, 99)
                    self.queue_bot_audit(
                        pipe,
                        "environment.adopt",
                        environment=environment,
                        reason=f"{tag}: {adopted}",
                    )
                    await pipe.execute()
                    return True
                except WatchError:
                    continue

    async def mark_failed_in(self, environment: str, version: str, tag: str, why: str) -> None:
        """`version` failed in `environment` (its gates or its monitoring window there): a
        rollback never goes back to it by itself (bot.domain.rollbacks.known_bad)."""
        entry = {"event": "failed", "version": version, "tag": tag, "why": why[:200]}
        entry["at"] = f"{self.clock():.3f}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self.keys.history(environment), json.dumps(entry))
            pipe.ltrim(self.keys.history(environment), 0, 99)
            await pipe.execute()

    async def note_progress(self, version: str, environment: str, line: str) -> None:
        """The latest output line of `version`'s running deploy to `environment`."""
        key = self.keys.progress(version)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, environment, json.dumps({"line": line[-300:], "at": self.clock()}))
            pipe.expire(key, 3600)
            await pipe.execute()

    async def progress_of(self, version: str) -> dict[str, str]:
        """Environment -> the latest output line of the release's running deploy there."""
        raw = await self.redis.hgetall(self.keys.progress(version))
        return {_s(env): str(json.loads(value).get("line", "")) for env, value in raw.items()}

    async def environment_history(self, environment: str) -> list[dict[str, str]]:
        return [
            json.loads(raw)
            for raw in await self.redis.lrange(self.keys.history(environment), 0, 99)
        ]

    async def environment_versions(self, names: list[str]) -> dict[str, dict[str, str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self.keys.environment(name))
            rows = await pipe.execute()
        return {
            name: {_s(k): _s(v) for k, v in row.items()}
            for name, row in zip(names, rows, strict=True)
        }

    async def status(self, environments: list[str]) -> Status:
        """Everything `/release status` shows, in one round trip (plus one for the records of
        the releases in flight and the requests waiting, when there are any)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in environments:
                pipe.hgetall(self.keys.environment(name))
            for name in environments:
                pipe.get(self.keys.env_lock(name))
            for name in environments:
                pipe.lrange(self.keys.history(name), 0, 99)
            pipe.smembers(self.keys.rollbacks_waiting)
            pipe.smembers(self.keys.flag_requests_waiting)
            pipe.hgetall(self.keys.flag_kills)
            pipe.smembers(self.keys.in_flight)
            rows = await pipe.execute()
        n = len(environments)
        versions = {
            name: {_s(k): _s(v) for k, v in row.items()}
            for name, row in zip(environments, rows[:n], strict=True)
        }
        locks = {
            name: raw
            for name, raw in zip(environments, rows[n : 2 * n], strict=True)
            if raw is not None
        }
        histories = {
            name: [json.loads(raw) for raw in row]
            for name, row in zip(environments, rows[2 * n : 3 * n], strict=True)
        }
        rollback_ids, flag_ids = sorted(map(_s, rows[3 * n])), sorted(map(_s, rows[3 * n + 1]))
        kills = {_s(name): float(at) for name, at in rows[3 * n + 2].items()}
        release_ids = [_s(v) for v in rows[-1]]
        wanted = [
            *(self.keys.release(v) for v in release_ids),
            *(self.keys.rollback(i) for i in rollback_ids),
            *(self.keys.flag_request(i) for i in flag_ids),
        ]
        raws = await self.redis.mget(wanted) if wanted else []
        releases = raws[: len(release_ids)]
        in_flight = sorted(
            (Release.from_json(r) for r in releases if r is not None), key=lambda r: r.created_at
        )
        stored_rollbacks = raws[len(release_ids) : len(release_ids) + len(rollback_ids)]
        stored_flags = raws[len(release_ids) + len(rollback_ids) :]
        rollbacks, decided = _still_waiting(
            "rollback",
            rollback_ids,
            stored_rollbacks,
            RollbackRequest.from_json,
            lambda r: r.status == "waiting",
        )
        flag_requests, gone = _still_waiting(
            "flag",
            flag_ids,
            stored_flags,
            lambda raw: FlagRequest.from_dict(json.loads(raw)),
            lambda r: r.status == "awaiting approval",
        )
        if decided or gone:
            # Decided where the index was not kept (a replica of an earlier release), or gone
            # (a flag request after its 90 days): dropped here.
            async with self.redis.pipeline(transaction=False) as pipe:
                if decided:
                    pipe.srem(self.keys.rollbacks_waiting, *decided)
                if gone:
                    pipe.srem(self.keys.flag_requests_waiting, *gone)
                await pipe.execute()
        return Status(
            versions=versions,
            in_flight=in_flight,
            raw_locks=locks,
            histories=histories,
            waiting_rollbacks=sorted(rollbacks, key=lambda r: r.requested_at),
            waiting_flag_requests=sorted(flag_requests, key=lambda r: r.created_at),
            flag_kills=kills,
        )

    # --- idempotency ---------------------------------------------------------------------------

    async def first_time(self, key: str, ttl_seconds: int = 3600) -> bool:
        """True the first time `key` is seen within the TTL (re-deliveries and double clicks)."""
        return bool(await self.redis.set(self.keys.idempotency(key), "1", nx=True, ex=ttl_seconds))


async def summaries(
    redis: Redis,
    wanted: list[tuple[Store, list[str]]],
    known: dict[bytes, tuple[float, str]] | None = None,
) -> list[StatusSummary]:
    """The status summary of each (store, its environments) of stores on one Redis (the
    services of one bot), with the freezes set from Slack: one round trip for all, plus one
    for all their releases in flight.
    A bot of 50 services reads them all about as cheaply as one service's full status.

    Of a release only its tag and creation time are taken; `known` (kept by the caller from
    one read to the next) maps the bodies read last time to them, so a release unchanged since
    is not decoded again. It is left holding this read's bodies only."""
    locks = [store.keys.env_lock(name) for store, environments in wanted for name in environments]
    # The incidents of each environment: its outage's and its failed deploy's states.
    states = [
        store.keys.check_state(name, check)
        for store, environments in wanted
        for name in environments
        for check in (OUTAGE_CHECK, DEPLOY_CHECK)
    ]
    async with redis.pipeline(transaction=False) as pipe:
        for store, environments in wanted:
            for name in environments:
                pipe.hget(store.keys.environment(name), "tag")
            pipe.smembers(store.keys.in_flight)
            # The freezes set from Slack: in the same round trip (an empty hash costs little).
            for name in environments:
                pipe.hgetall(store.keys.freezes(name))
        if locks:
            pipe.mget(locks)
            pipe.mget(states)
        rows = await pipe.execute()
    raw_states = iter(rows.pop() if locks else [])
    raw_locks = iter(rows.pop() if locks else [])
    parts: list[
        tuple[dict[str, str], dict[str, bytes], int, list[str], dict[str, list[Freeze]]]
    ] = []
    at = 0
    for store, environments in wanted:
        n = len(environments)
        tags = {
            name: _s(tag)
            for name, tag in zip(environments, rows[at : at + n], strict=True)
            if tag is not None
        }
        held = {name: raw for name in environments if (raw := next(raw_locks)) is not None}
        incidents = sum(
            1
            for _ in range(2 * n)
            if (raw := next(raw_states)) is not None and json.loads(raw).get("incident")
        )
        flying_keys = [store.keys.release(_s(v)) for v in rows[at + n]]
        frozen = {
            name: [freeze for _, freeze in decode_freezes(row)]
            for name, row in zip(environments, rows[at + n + 1 : at + 2 * n + 1], strict=True)
            if row
        }
        at += 2 * n + 1
        parts.append((tags, held, incidents, flying_keys, frozen))
    releases = [k for _, _, _, keys, _ in parts for k in keys]
    bodies = iter(await redis.mget(releases) if releases else [])
    before = known or {}
    seen: dict[bytes, tuple[float, str]] = {}
    found = []
    for tags, held, incidents, keys, frozen in parts:
        flying = []
        for raw in (next(bodies) for _ in keys):
            if raw is None:  # finished meanwhile
                continue
            raw = raw.encode() if isinstance(raw, str) else raw
            entry = before.get(raw)
            if entry is None:
                release = json.loads(raw)
                entry = (
                    float(release["created_at"]),
                    str(release.get("final_tag") or release["tag"]),
                )
            seen[raw] = entry
            flying.append(entry)
        flying.sort()
        found.append(StatusSummary(tags, [tag for _, tag in flying], held, incidents, frozen))
    if known is not None:
        known.clear()
        known.update(seen)
    return found


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _still_waiting(
    kind: str,
    ids: list[str],
    stored: list[Any],
    decode: Callable[[Any], R],
    waits: Callable[[R], bool],
) -> tuple[list[R], list[str]]:
    """Of the requests an index of those waiting names, their records that still wait, and the
    ids of those that no longer do (decided, or gone). A record this release cannot read
    (written by a newer one) is neither: its own replicas list it."""
    waiting, done = [], []
    for request_id, raw in zip(ids, stored, strict=True):
        try:
            request = decode(raw) if raw is not None else None
        except (ValueError, TypeError, KeyError):
            log.warning("%s request %s is not one this release reads", kind, request_id)
            continue
        if request is None or not waits(request):
            done.append(request_id)
        else:
            waiting.append(request)
    return waiting, done
