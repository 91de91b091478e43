"""Deploys running now, in Redis: one entry per deploy (what it is, where) in the hash
`running-deploys`, and its lease, a key that lives exactly as long as the deploy's environment
lock (renewed with it, bot.adapters.redis.locks). An entry whose lease is gone belongs to a
worker that stopped: the reaper reports it."""

from __future__ import annotations

import json

from redis.asyncio import Redis

from bot.adapters.redis.keys import Keys


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class RunningDeploys:
    """The `RunningDeploys` port on Redis."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def add(self, deploy_id: str, entry: dict[str, str]) -> None:
        await self.redis.hset(self.keys.running_deploys, deploy_id, json.dumps(entry))

    async def finish(self, deploy_id: str) -> None:
        """The deploy ended: its entry and its lease go together."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.running_deploys, deploy_id)
            pipe.delete(self.keys.deploy_lease(deploy_id))
            await pipe.execute()

    async def lapsed(self) -> list[tuple[str, dict[str, str]]]:
        """Entries whose lease has lapsed (their worker stopped), with their deploy ids."""
        running = await self.redis.hgetall(self.keys.running_deploys)
        found: list[tuple[str, dict[str, str]]] = []
        for raw_id, raw_entry in running.items():
            deploy_id = _text(raw_id)
            if not await self.redis.exists(self.keys.deploy_lease(deploy_id)):
                found.append((deploy_id, json.loads(raw_entry)))
        return found

    async def forget(self, deploy_id: str) -> None:
        await self.redis.hdel(self.keys.running_deploys, deploy_id)
