"""Freezes set from Slack (`/release freeze`), kept per environment in a Redis hash (the
FreezeRecords port): config freezes are in the config; these come and go at runtime."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime

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


class RedisFreezes:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def active(self, environment: str, now: float) -> list[tuple[str, Freeze]]:
        """The freezes of `environment` that have not ended by `now`, with their ids; ended
        ones are dropped as they are found."""
        found: list[tuple[str, Freeze]] = []
        ended: list[str] = []
        key = self.keys.freezes(environment)
        for raw_id, raw in (await self.redis.hgetall(key)).items():
            freeze_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            entry = json.loads(raw)
            freeze = Freeze(
                start=datetime.fromtimestamp(float(entry["start"]), UTC),
                until=datetime.fromtimestamp(float(entry["until"]), UTC),
                reason=str(entry["reason"]),
                who=str(entry.get("who", "")),
            )
            if freeze.until.timestamp() <= now:
                ended.append(freeze_id)
            else:
                found.append((freeze_id, freeze))
        if ended:
            await self.redis.hdel(key, *ended)
        return sorted(found, key=lambda item: item[1].start)

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
