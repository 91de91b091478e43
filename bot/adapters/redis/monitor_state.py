"""What health monitoring keeps in Redis: per check its state and its bounded history of
results, the monitoring window of an environment, who acknowledged an incident, the scheduler
replicas that share the checks (and the epoch that fences their writes), and the slots of the
scheduler's jobs.

A tick reads and writes a thousand checks, so what it does is batched: one pipeline (or one
script) per step, not one round trip per check. Keys are built by `Keys`, their strings as they
always were (a running team's state survives an upgrade)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from bot.adapters import metrics
from bot.adapters.redis.keys import Keys
from bot.adapters.redis.outbox import RedisOutbox
from bot.domain.health.checks import CheckId, Result
from bot.domain.health.incidents import CheckState
from bot.domain.health.windows import Aggregate, AggregateId, Delta, Window
from bot.domain.outbox import Entry, Group, Place, encode
from bot.services.ports import AckReader, TickNews

ACK_SECONDS = 30 * 86400  # an acknowledgement outlives any incident it stops reminders for


# Only in the epoch the tick started in ('' for any): once the members changed, the new owner
# of a check records it, and a result counted twice would skew its window's figures.
_IN_EPOCH = """
if ARGV[1] ~= '' and (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return 1 end
"""

# Every result of a tick in one call: KEYS = the epoch; ARGV = the tick's epoch, history, then
# (key, result) per check. A history is trimmed once it is 20 longer than kept, not on every
# push.
_STORE_RESULTS = (
    _IN_EPOCH
    + """
local keep = tonumber(ARGV[2])
for i = 3, #ARGV, 2 do
  if redis.call('LPUSH', ARGV[i], ARGV[i + 1]) > keep + 20 then
    redis.call('LTRIM', ARGV[i], 0, keep - 1)
  end
end
return 0
"""
)


# A tick's additions to its aggregates. KEYS = the epoch; ARGV: the tick's epoch, seconds to
# keep them, then per aggregate: its key, n, n (field, amount) to add, m, m (field, latency)
# to raise a slot's peak to.
_ADD_AGGREGATES = (
    _IN_EPOCH
    + """
local keep = tonumber(ARGV[2])
local i = 3
while i <= #ARGV do
  local key = ARGV[i]
  local n = tonumber(ARGV[i + 1])
  i = i + 2
  for j = 1, n do
    redis.call('HINCRBY', key, ARGV[i], ARGV[i + 1])
    i = i + 2
  end
  local m = tonumber(ARGV[i])
  i = i + 1
  for j = 1, m do
    local now = tonumber(redis.call('HGET', key, ARGV[i]) or '0')
    if tonumber(ARGV[i + 1]) > now then redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
    i = i + 2
  end
  redis.call('EXPIRE', key, keep)
end
return 0
"""
)

# A member of the replicas sharing the checks joins, or renews its lease, and every member
# whose lease ended leaves; any change of the members bumps the epoch. Redis's own clock:
# replicas' clocks may disagree. KEYS: members, epoch. ARGV: member, lease in ms.
_JOIN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local changed = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
changed = changed + redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if changed > 0 then redis.call('INCR', KEYS[2]) end
return {redis.call('GET', KEYS[2]) or '0', redis.call('ZRANGE', KEYS[1], 0, -1)}
"""

_LEAVE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) > 0 then redis.call('INCR', KEYS[2]) end
return 0
"""

MERGE_ATTEMPTS = 20  # of a tick's write, while other replicas keep changing the outages
AGGREGATE_SECONDS = 30 * 86400  # a version's figures outlive any window compared with them
BATCH = 500  # checks per Redis call and per stretch of work between two yields to the loop
HISTORY_BATCH = 100  # checks whose recent results are read (and parsed) between two yields


class AuditQueue(Protocol):
    """Queues an audit entry in a transaction (bot.adapters.redis.store.Store.queue_audit)."""

    def __call__(self, pipe: Pipeline, action: str, **fields: str) -> None: ...


class RedisMonitorState:
    def __init__(self, redis: Redis, keys: Keys, audit: AuditQueue, outbox: RedisOutbox) -> None:
        self._redis = redis
        self._keys = keys
        self._audit = audit
        self._outbox = outbox
        # (state key, results key) per check, made once: a tick needs them for every check.
        self._check_keys: dict[CheckId, tuple[str, str]] = {}

    def _keys_of(self, check: CheckId) -> tuple[str, str]:
        found = self._check_keys.get(check)
        if found is None:
            found = (self._keys.check_state(*check), self._keys.check_results(*check))
            self._check_keys[check] = found
        return found

    # --- the replicas sharing the checks ------------------------------------------------------

    async def join(self, member: str, seconds: float) -> tuple[int, list[str]]:
        """Join the members (or renew the lease) for `seconds`: the epoch and every live
        member. A member that stops renewing (killed, frozen) leaves when its lease ends."""
        epoch, members = await self._redis.eval(
            _JOIN,
            2,
            self._keys.monitor_members,
            self._keys.monitor_epoch,
            member,
            int(seconds * 1000),
        )
        return int(epoch), sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def leave(self, member: str) -> None:
        """A member that stops hands its checks over at once, not when its lease ends."""
        await self._redis.eval(
            _LEAVE, 2, self._keys.monitor_members, self._keys.monitor_epoch, member
        )

    async def claim_tick(self, job: str, slot: int, interval: float) -> bool:
        """True for exactly one caller per time `slot` (of `interval` seconds) of `job`. The
        claim outlives its slot, so a replica whose clock lags a slot behind still finds it."""
        return bool(
            await self._redis.set(
                self._keys.tick(job, slot), "1", nx=True, px=int(interval * 2000) + 1000
            )
        )

    async def tick_outlook(self, environments: Sequence[str]) -> tuple[dict[str, Window], set[str]]:
        """What a tick starts from, in one round trip: the open monitoring windows and the
        environments locked for a deploy right now."""
        keys = self._keys
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in environments:
                pipe.get(keys.monitor_window(name))
            for name in environments:
                pipe.get(keys.env_lock(name))
            rows: list[Any] = await pipe.execute()
        n = len(environments)
        windows = {
            name: Window.from_json(raw)
            for name, raw in zip(environments, rows[:n], strict=True)
            if raw
        }
        # A lock without a kind is from before kinds were recorded: only deploys locked then.
        deploying = {
            name
            for name, raw in zip(environments, rows[n : 2 * n], strict=True)
            if raw and json.loads(raw).get("kind", "deploy") == "deploy"
        }
        return windows, deploying

    # --- check states and results -------------------------------------------------------------

    async def stored_checks(
        self, checks: Sequence[CheckId], results: int
    ) -> list[tuple[bytes | None, list[Result]]]:
        """Per check, its state as stored (JSON, None if it has none) and its newest
        `results` results, newest first: one round trip per BATCH checks, and the loop's turn
        between two (thousands of checks' results take a while to parse)."""
        found: list[tuple[bytes | None, list[Result]]] = []
        for start in range(0, len(checks), HISTORY_BATCH):
            if start:
                await asyncio.sleep(0)
            async with self._redis.pipeline(transaction=False) as pipe:
                for check in checks[start : start + HISTORY_BATCH]:
                    state_key, results_key = self._keys_of(check)
                    pipe.get(state_key)
                    pipe.lrange(results_key, 0, results - 1)
                rows: list[Any] = await pipe.execute()
            found += [
                (rows[2 * i], Result.decode_many(rows[2 * i + 1])) for i in range(len(rows) // 2)
            ]
        return found

    async def results(self, checks: Sequence[CheckId], count: int) -> list[list[Result]]:
        """Per check, its newest `count` results, newest first (BATCH checks at a time)."""
        found: list[list[Result]] = []
        for start in range(0, len(checks), HISTORY_BATCH):
            if start:
                await asyncio.sleep(0)
            async with self._redis.pipeline(transaction=False) as pipe:
                for check in checks[start : start + HISTORY_BATCH]:
                    pipe.lrange(self._keys_of(check)[1], 0, count - 1)
                rows: list[Any] = await pipe.execute()
            found += [Result.decode_many(raws) for raws in rows]
        return found

    async def record_results(
        self,
        results: Sequence[tuple[CheckId, Result]],
        keep: int,
        deltas: Mapping[AggregateId, Delta] | None = None,
        epoch: int | None = None,
    ) -> None:
        """Add a tick's results to their checks' histories, each kept to about `keep`
        results, and to their aggregates: a few calls of BATCH results each (one reply per
        call instead of one per check, and no call so long that the loop waits on it). With
        `epoch`, only while the members sharing the checks are still those of that epoch."""
        fence = "" if epoch is None else str(epoch)
        epoch_key = self._keys.monitor_epoch
        for start in range(0, len(results), BATCH):
            pushes: list[str | bytes] = []
            for check, result in results[start : start + BATCH]:
                pushes += [self._keys_of(check)[1], result.to_json()]
            fenced = await self._redis.eval(_STORE_RESULTS, 1, epoch_key, fence, keep, *pushes)
            if not fenced:
                metrics.checks_recorded(self._keys.service, results[start : start + BATCH])
        items = list((deltas or {}).items())
        for start in range(0, len(items), BATCH):
            args: list[str | int | float] = [fence, AGGREGATE_SECONDS]
            for target, delta in items[start : start + BATCH]:
                args += [self._keys.monitor_aggregate(*target), len(delta.add)]
                for name, amount in delta.add.items():
                    args += [name, amount]
                args.append(len(delta.peaks))
                for name, peak in delta.peaks.items():
                    args += [name, peak]
            await self._redis.eval(_ADD_AGGREGATES, 1, epoch_key, *args)

    async def aggregates(self, targets: Sequence[AggregateId]) -> list[Aggregate]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for target in targets:
                pipe.hgetall(self._keys.monitor_aggregate(*target))
            rows: list[Any] = await pipe.execute()
        return [Aggregate.from_fields(row or {}) for row in rows]

    async def drop_aggregate(self, target: AggregateId) -> None:
        await self._redis.delete(self._keys.monitor_aggregate(*target))

    async def commit(
        self,
        states: Mapping[CheckId, bytes],
        audits: Sequence[tuple[str, dict[str, str]]],
        news: Sequence[tuple[str, Entry]],
    ) -> None:
        """Write changed check states (JSON per check) with the bot's audit entries of what
        changed (action, fields) and what is to be said of it (channel, entry), all or
        nothing."""
        async with self._redis.pipeline(transaction=True) as pipe:
            self._queue_commit(pipe, states, audits, news)
            await pipe.execute()

    async def commit_tick(
        self,
        epoch: int,
        states: Mapping[CheckId, bytes],
        outages: Sequence[CheckId],
        merge: Callable[[list[bytes | None], AckReader], Awaitable[TickNews]],
    ) -> TickNews | None:
        """A tick's write: its checks' states, and the environments' outages as `merge`
        makes them from their stored states (JSON or None, in `outages`' order) and the
        acknowledgements it reads (with the reader it is given) with the audit entries and news
        of what changed, all or nothing. Only in `epoch`: once the
        members changed, another replica may run these checks, so nothing is written and
        None is returned. When another replica changed an outage meanwhile, `merge` runs
        again on what it wrote (two replicas' checks failing at once open one incident)."""
        keys = [self._keys.monitor_epoch, *(self._keys_of(o)[0] for o in outages)]
        for _ in range(MERGE_ATTEMPTS):
            async with self._redis.pipeline(transaction=True) as pipe:
                await pipe.watch(*keys)
                raws: list[Any] = await pipe.mget(keys)
                if int(raws[0] or 0) != epoch:
                    return None

                async def acknowledgements(
                    incident_ids: Sequence[str], pipe: Pipeline = pipe
                ) -> dict[str, tuple[str, float]]:
                    # Watched too: an acknowledgement made before the write makes the merge
                    # run again, so no reminder goes out for an incident just acknowledged.
                    keys = [self._keys.incident_ack(i) for i in incident_ids]
                    if not keys:
                        return {}
                    await pipe.watch(*keys)
                    return _acks(incident_ids, await pipe.mget(keys))

                merged = await merge(raws[1:], acknowledgements)
                outage_states, audits, news = merged
                if not (states or outage_states or audits or news):
                    return merged  # a quiet tick of healthy checks writes nothing
                pipe.multi()
                self._queue_commit(pipe, {**states, **outage_states}, audits, news)
                # A bot from before checks were shared keeps its checks' states in memory
                # while it wrote last: a new token tells it to read them again.
                pipe.set(self._keys.monitor_writer, secrets.token_hex(8))
                try:
                    await pipe.execute()
                except WatchError:
                    continue
                return merged
        return None  # outages changed under every attempt: as if the members had changed

    def _queue_commit(
        self,
        pipe: Pipeline,
        states: Mapping[CheckId, bytes],
        audits: Sequence[tuple[str, dict[str, str]]],
        news: Sequence[tuple[str, Entry]],
    ) -> None:
        items = list(states.items())
        for start in range(0, len(items), BATCH):
            pipe.mset({self._keys_of(check)[0]: raw for check, raw in items[start : start + BATCH]})
        for action, fields in audits:
            self._audit(pipe, action, **fields)
        by_channel: dict[str, list[bytes]] = {}
        for channel, entry in news:
            by_channel.setdefault(channel, []).append(encode(entry))
        for channel, entries in by_channel.items():
            self._outbox.queue_put(pipe, channel, entries)

    async def check_state(self, check: CheckId) -> CheckState:
        """The stored state of one check (without its recent past); empty if it has none."""
        return CheckState.from_json(await self._redis.get(self._keys_of(check)[0]))

    async def save_check_state(self, check: CheckId, state: CheckState) -> None:
        await self._redis.set(self._keys_of(check)[0], state.to_json())

    async def check_states(self, checks: Sequence[CheckId]) -> list[CheckState]:
        """The stored states of those checks that have one."""
        raws = await self._redis.mget([self._keys_of(check)[0] for check in checks])
        return [CheckState.from_json(raw) for raw in raws if raw]

    # --- incidents ----------------------------------------------------------------------------

    async def acknowledgements(self, incident_ids: Sequence[str]) -> dict[str, tuple[str, float]]:
        """Who acknowledged which of these incidents, and when."""
        if not incident_ids:
            return {}
        return _acks(
            incident_ids, await self._redis.mget([self._keys.incident_ack(i) for i in incident_ids])
        )

    async def acknowledge(self, incident_id: str, user: str, at: float) -> str | None:
        """Record that `user` acknowledged the incident at `at`, if nobody did before. None
        when this is the first acknowledgement; else who made the first ("" if that is no
        longer known)."""
        key = self._keys.incident_ack(incident_id)
        if await self._redis.set(
            key, json.dumps({"user": user, "at": at}), nx=True, ex=ACK_SECONDS
        ):
            return None
        raw = await self._redis.get(key)
        return str(json.loads(raw)["user"]) if raw else ""

    # --- where incidents are told -------------------------------------------------------------

    async def place_incident(self, incident_id: str, place: Place) -> None:
        await self._redis.set(
            self._keys.incident_place(incident_id),
            json.dumps({"channel": place.channel, "ts": place.ts, "group": place.group}),
            ex=ACK_SECONDS,
        )

    async def incident_place(self, incident_id: str) -> Place | None:
        raw = await self._redis.get(self._keys.incident_place(incident_id))
        if not raw:
            return None
        data = json.loads(raw)
        return Place(str(data["channel"]), str(data["ts"]), str(data.get("group", "")))

    async def save_group(self, group_id: str, group: Group, opened: Sequence[str]) -> None:
        """Record a summary message, and that it is the place of the incidents it opened."""
        place = json.dumps({"channel": group.channel, "ts": group.ts, "group": group_id})
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(
                self._keys.incident_group(group_id),
                json.dumps({"channel": group.channel, "ts": group.ts, "members": group.members}),
                ex=ACK_SECONDS,
            )
            for incident_id in opened:
                pipe.set(self._keys.incident_place(incident_id), place, ex=ACK_SECONDS)
            await pipe.execute()

    async def group(self, group_id: str) -> Group | None:
        raw = await self._redis.get(self._keys.incident_group(group_id))
        if not raw:
            return None
        data = json.loads(raw)
        members = tuple((str(e), str(c), str(i)) for e, c, i in data["members"])
        return Group(str(data["channel"]), str(data["ts"]), members)

    # --- monitoring windows -------------------------------------------------------------------

    async def window(self, environment: str) -> Window | None:
        raw = await self._redis.get(self._keys.monitor_window(environment))
        return Window.from_json(raw) if raw else None

    async def start_window(self, environment: str, window: Window) -> None:
        await self._redis.set(self._keys.monitor_window(environment), window.to_json())

    async def end_window(self, environment: str) -> bool:
        """Close the environment's window; False if there was none (someone closed it first,
        so exactly one caller sums it up)."""
        return bool(await self._redis.delete(self._keys.monitor_window(environment)))


def _acks(
    incident_ids: Sequence[str], raws: Sequence[bytes | str | None]
) -> dict[str, tuple[str, float]]:
    """Who acknowledged which incident and when, from their stored acknowledgements."""
    found: dict[str, tuple[str, float]] = {}
    for incident_id, raw in zip(incident_ids, raws, strict=True):
        if raw:
            ack = json.loads(raw)
            found[incident_id] = (ack["user"], ack["at"])
    return found
