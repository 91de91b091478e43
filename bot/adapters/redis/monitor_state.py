"""What health monitoring keeps in Redis: per check its state and its bounded history of
results, the monitoring window of an environment, who acknowledged an incident, which replica
wrote the check states last, the lock that lets one tick run at a time, and the slots of the
scheduler's jobs.

A tick reads and writes a thousand checks, so what it does is batched: one pipeline (or one
script) per step, not one round trip per check. Keys are built by `Keys`, their strings as they
always were (a running team's state survives an upgrade)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from bot.adapters.redis.keys import Keys
from bot.adapters.redis.locks import drop_if_held
from bot.adapters.redis.outbox import RedisOutbox
from bot.domain.health.checks import CheckId, Result
from bot.domain.health.incidents import CheckState
from bot.domain.health.windows import Aggregate, AggregateId, Delta, Window
from bot.domain.outbox import Entry, Group, Place, encode

ACK_SECONDS = 30 * 86400  # an acknowledgement outlives any incident it stops reminders for


# Every result of a tick in one call: ARGV = history, then (key, result) per check. A history
# is trimmed once it is 20 longer than kept, not on every push.
_STORE_RESULTS = """
local keep = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  if redis.call('LPUSH', ARGV[i], ARGV[i + 1]) > keep + 20 then
    redis.call('LTRIM', ARGV[i], 0, keep - 1)
  end
end
return 0
"""


# A tick's additions to its aggregates. ARGV: seconds to keep them, then per aggregate: its
# key, n, n (field, amount) to add, m, m (field, latency) to raise a slot's peak to.
_ADD_AGGREGATES = """
local keep = tonumber(ARGV[1])
local i = 2
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

    # --- one tick at a time -------------------------------------------------------------------

    @asynccontextmanager
    async def tick_lock(self, seconds: float) -> AsyncIterator[str]:
        """The token of the monitor's lock if this replica holds it (for at most `seconds`)
        while the block runs; "" when another replica's tick holds it. `commit` with the
        token writes only while the lock is still this tick's."""
        token = secrets.token_hex(8)
        key = self._keys.monitor_lock
        if not await self._redis.set(key, token, nx=True, px=int(seconds * 1000)):
            yield ""
            return
        try:
            yield token
        finally:
            await drop_if_held(self._redis, key, token)  # an overrun never frees the next

    async def claim_tick(self, job: str, slot: int, interval: float) -> bool:
        """True for exactly one caller per time `slot` (of `interval` seconds) of `job`. The
        claim outlives its slot, so a replica whose clock lags a slot behind still finds it."""
        return bool(
            await self._redis.set(
                self._keys.tick(job, slot), "1", nx=True, px=int(interval * 2000) + 1000
            )
        )

    async def tick_outlook(
        self, environments: Sequence[str]
    ) -> tuple[dict[str, Window], set[str], str]:
        """What a tick starts from, in one round trip: the open monitoring windows, the
        environments locked for a deploy right now, and the token of the last tick that saved
        check states ("" if none did)."""
        keys = self._keys
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in environments:
                pipe.get(keys.monitor_window(name))
            for name in environments:
                pipe.get(keys.env_lock(name))
            pipe.get(keys.monitor_writer)
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
        writer = rows[-1]
        return (
            windows,
            deploying,
            writer.decode() if isinstance(writer, bytes) else str(writer or ""),
        )

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
    ) -> None:
        """Add a tick's results to their checks' histories, each kept to about `keep`
        results, and to their aggregates: a few calls of BATCH results each (one reply per
        call instead of one per check, and no call so long that the loop waits on it)."""
        for start in range(0, len(results), BATCH):
            pushes: list[str | bytes] = []
            for check, result in results[start : start + BATCH]:
                pushes += [self._keys_of(check)[1], result.to_json()]
            await self._redis.eval(_STORE_RESULTS, 0, keep, *pushes)
        items = list((deltas or {}).items())
        for start in range(0, len(items), BATCH):
            args: list[str | int | float] = [AGGREGATE_SECONDS]
            for target, delta in items[start : start + BATCH]:
                args += [self._keys.monitor_aggregate(*target), len(delta.add)]
                for name, amount in delta.add.items():
                    args += [name, amount]
                args.append(len(delta.peaks))
                for name, peak in delta.peaks.items():
                    args += [name, peak]
            await self._redis.eval(_ADD_AGGREGATES, 0, *args)

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
        fence: str = "",
    ) -> str | None:
        """Write changed check states (JSON per check) with the bot's audit entries of what
        changed (action, fields) and what is to be said of it (channel, entry), all or
        nothing, and mark the writer; returns the writer's token. With `fence` (a tick's
        lock token), nothing is written and None returned once the lock is not that tick's:
        a replica that took over after the lock expired is the one that records, so no
        incident is opened twice."""
        token = secrets.token_hex(8)
        items = list(states.items())
        by_channel: dict[str, list[bytes]] = {}
        for channel, entry in news:
            by_channel.setdefault(channel, []).append(encode(entry))
        lock = self._keys.monitor_lock
        while True:
            async with self._redis.pipeline(transaction=True) as pipe:
                if fence:
                    await pipe.watch(lock)
                    held = await pipe.get(lock)
                    if (held.decode() if isinstance(held, bytes) else held) != fence:
                        return None
                pipe.multi()
                for start in range(0, len(items), BATCH):
                    pipe.mset(
                        {
                            self._keys_of(check)[0]: raw
                            for check, raw in items[start : start + BATCH]
                        }
                    )
                for action, fields in audits:
                    self._audit(pipe, action, **fields)
                for channel, entries in by_channel.items():
                    self._outbox.queue_put(pipe, channel, entries)
                pipe.set(self._keys.monitor_writer, token)
                try:
                    await pipe.execute()
                except WatchError:
                    continue  # the lock moved: look again (expired, or renewed by nobody)
                return token

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
        raws = await self._redis.mget([self._keys.incident_ack(i) for i in incident_ids])
        found: dict[str, tuple[str, float]] = {}
        for incident_id, raw in zip(incident_ids, raws, strict=True):
            if raw:
                ack = json.loads(raw)
                found[incident_id] = (ack["user"], ack["at"])
        return found

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
