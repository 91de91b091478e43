"""Freezes set from Slack (`/release freeze`), kept per environment in a Redis hash (the
FreezeRecords port): config freezes are in the config; these come and go at runtime.

Readers skip a freeze whose `until` passed, and leave it: removing it is a write on every
read (the status of all services reads every service's hashes in one round trip)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from bot.adapters.redis.keys import Keys
from bot.domain.windows import Freeze


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
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

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

    async def add(self, environment: str, freeze: Freeze) -> str:
        freeze_id = secrets.token_hex(4)
        await self.redis.hset(self.keys.freezes(environment), freeze_id, stored(freeze))
        return freeze_id

    async def remove(self, environment: str, freeze_id: str | None = None) -> int:
        """Ends one freeze (by id), or every freeze of `environment`; how many ended."""
        key = self.keys.freezes(environment)
        if freeze_id is not None:
            return int(await self.redis.hdel(key, freeze_id))
        count = int(await self.redis.hlen(key))
        await self.redis.delete(key)
        return count
