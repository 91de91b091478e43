"""Freezes set from Slack (`/release freeze`), kept per environment in a Redis hash (the
FreezeRecords port): config freezes are in the config; these come and go at runtime.

A freeze whose `until` passed stays in its hash, unseen by every reader, until the scheduler
tells the channel it ended (bot.services.freeze_environments.announce_ended): its removal, the
audit entry and the announcement are one transaction, so of two replicas that find it only
the one whose removal lands tells it. Readers do not remove ended freezes themselves: one that
did would leave nothing to announce."""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from bot.adapters.redis.keys import Keys
from bot.adapters.redis.outbox import RedisOutbox
from bot.domain.actors import BOT, Actor
from bot.domain.outbox import encode
from bot.domain.windows import Freeze
from bot.services.ports import FreezeEndNews


class AuditQueue(Protocol):
    """Queues `actor`'s audit entry in a transaction (bot.adapters.redis.store.Store.
    queue_audit), with the change it records."""

    def __call__(self, pipe: Pipeline, actor: Actor, action: str, **fields: str) -> None: ...


def stored(freeze: Freeze) -> str:
    """A freeze as its hash keeps it (also written by an approved freeze request, in the
    request's own transaction: bot.adapters.redis.freeze_requests)."""
    entry = {
        "start": freeze.start.timestamp(),
        "until": freeze.until.timestamp(),
        "reason": freeze.reason,
        "who": freeze.who,
    }
    return json.dumps(entry)


def decode_freezes(row: dict[Any, Any]) -> list[tuple[str, Freeze]]:
    """An environment's hash (HGETALL) as (id, freeze), by start; ended ones included."""
    found: list[tuple[str, Freeze]] = []
    for raw_id, raw in row.items():
        freeze_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        entry = json.loads(raw)
        found.append(
            (
                freeze_id,
                Freeze(
                    start=datetime.fromtimestamp(float(entry["start"]), UTC),
                    until=datetime.fromtimestamp(float(entry["until"]), UTC),
                    reason=str(entry["reason"]),
                    who=str(entry.get("who", "")),
                ),
            )
        )
    return sorted(found, key=lambda item: item[1].start)


class RedisFreezes:
    def __init__(self, redis: Redis, keys: Keys, audit: AuditQueue, outbox: RedisOutbox) -> None:
        self.redis = redis
        self.keys = keys
        self._audit = audit
        self._outbox = outbox

    async def _all_of(self, environments: Sequence[str]) -> list[list[tuple[str, Freeze]]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in environments:
                pipe.hgetall(self.keys.freezes(name))
            rows = await pipe.execute()
        return [decode_freezes(row) for row in rows]

    async def active(self, environment: str, now: float) -> list[tuple[str, Freeze]]:
        """The freezes of `environment` that have not ended by `now`, with their ids."""
        return (await self.active_of([environment], now))[environment]

    async def active_of(
        self, environments: Sequence[str], now: float
    ) -> dict[str, list[tuple[str, Freeze]]]:
        """`active` of each environment, in one round trip."""
        rows = await self._all_of(environments)
        return {
            name: [(i, f) for i, f in row if f.until.timestamp() > now]
            for name, row in zip(environments, rows, strict=True)
        }

    async def ended(self, environments: Sequence[str], now: float) -> list[tuple[str, str, Freeze]]:
        """(environment, id, freeze) of the freezes whose `until` is `now` or before, not yet
        told (end_once), in one round trip."""
        rows = await self._all_of(environments)
        return [
            (name, i, f)
            for name, row in zip(environments, rows, strict=True)
            for i, f in row
            if f.until.timestamp() <= now
        ]

    async def add(self, environment: str, freeze: Freeze) -> str:
        freeze_id = secrets.token_hex(4)
        await self.redis.hset(self.keys.freezes(environment), freeze_id, stored(freeze))
        return freeze_id

    async def end_early(
        self, environment: str, freeze_ids: Sequence[str], actor: Actor, reason: str
    ) -> bool:
        """Ends the freezes `freeze_ids` of `environment` (`/release unfreeze`) with `actor`'s
        audit entry `freeze.end`, all or nothing. False, with nothing written, when one of
        them is gone already (ended by itself, or by someone else meanwhile)."""
        key = self.keys.freezes(environment)
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                if None in await pipe.hmget(key, list(freeze_ids)):
                    return False
                pipe.multi()
                pipe.hdel(key, *freeze_ids)
                self._audit(pipe, actor, "freeze.end", environment=environment, reason=reason)
                try:
                    await pipe.execute()
                except WatchError:
                    continue
                return True

    async def end_once(self, environment: str, freeze_id: str, news: FreezeEndNews) -> bool:
        """Removes the ended freeze `freeze_id` with `news` (the bot's audit entry, the
        channel's announcement), all or nothing. True for the one caller whose removal
        landed; False, with nothing written, when another had removed it."""
        key = self.keys.freezes(environment)

        async def there(pipe: Pipeline) -> bool:
            return bool(await pipe.hexists(key, freeze_id))

        return await self._once(key, there, lambda pipe: pipe.hdel(key, freeze_id), news)

    async def config_end_once(
        self, environment: str, marker: str, news: FreezeEndNews, keep_seconds: float
    ) -> bool:
        """Records, for `keep_seconds`, that the config freeze `marker` (one freeze of the
        file, by what it is) was told ended on `environment`, with `news`, all or nothing.
        True for the one caller that recorded it first; False, with nothing written, after."""
        key = self.keys.freeze_end_told(environment, marker)

        async def untold(pipe: Pipeline) -> bool:
            return not await pipe.exists(key)

        return await self._once(
            key, untold, lambda pipe: pipe.set(key, "1", ex=max(1, int(keep_seconds))), news
        )

    async def _once(
        self,
        key: str,
        may: Callable[[Pipeline], Awaitable[bool]],
        write: Callable[[Pipeline], object],
        news: FreezeEndNews,
    ) -> bool:
        # WATCH: a concurrent caller's write to `key` between our look and our EXEC voids
        # ours, and the next look sees theirs.
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                if not await may(pipe):
                    return False
                pipe.multi()
                write(pipe)
                self._audit(
                    pipe, BOT, "freeze.end", environment=news.environment, reason=news.reason
                )
                self._outbox.queue_put(pipe, news.channel, [encode(news.entry)])
                try:
                    await pipe.execute()
                except WatchError:
                    continue
                return True
