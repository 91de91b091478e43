"""Flag change requests and ramps in Redis.

A request is one JSON string (`flagreq:<id>`, kept 90 days); the ramps going are one hash
(`flagramps`: flag name -> ramp) that each scheduler tick reads. An approval is recorded by the
one optimistic transaction (bot.adapters.redis.atomic), so two approvals at once are both
counted and a request that moved on meanwhile is decided on its fresh state. A ramp that
someone stopped is never written back by a tick that was still working on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from bot.adapters.redis.atomic import update_atomically
from bot.adapters.redis.keys import Keys
from bot.domain.flag_requests import FlagRequest, Ramp
from bot.domain.releases import TransitionError

T = TypeVar("T")

REQUEST_SECONDS = 90 * 86400


@dataclass
class _Stored:
    """A flag request as the atomic update handles records. Its revision is counted here
    only: a stored request has no `rev`, so the bot before this one still reads what is
    written."""

    request: FlagRequest
    rev: int = 0

    def to_json(self) -> str:
        return json.dumps(self.request.to_dict())

    @classmethod
    def load(cls, raw: bytes | str) -> _Stored:
        return cls(FlagRequest.from_dict(json.loads(raw)))


class _Unchanged(TransitionError):
    """The change left the request as it was: nothing to write, and what it returned."""

    def __init__(self, request: FlagRequest, result: object) -> None:
        super().__init__("unchanged")
        self.request = request
        self.result = result


# Replace a ramp only while it is still going (a stop deletes it).
_SAVE_IF_GOING = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class RedisFlagRequests:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    # --- requests -----------------------------------------------------------------------------

    async def save(self, request: FlagRequest) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            raw = json.dumps(request.to_dict())
            pipe.set(self.keys.flag_request(request.id), raw, ex=REQUEST_SECONDS)
            self._index(pipe, request)
            await pipe.execute()

    def _index(self, pipe: Pipeline, request: FlagRequest) -> None:
        """The request in the index of those awaiting approval while it does, out after."""
        if request.status == "awaiting approval":
            pipe.sadd(self.keys.flag_requests_waiting, request.id)
        else:
            pipe.srem(self.keys.flag_requests_waiting, request.id)

    async def load(self, request_id: str) -> FlagRequest | None:
        raw = await self.redis.get(self.keys.flag_request(request_id))
        return FlagRequest.from_dict(json.loads(raw)) if raw else None

    async def update(
        self, request_id: str, change: Callable[[FlagRequest], T]
    ) -> tuple[FlagRequest, T] | None:
        """Apply `change` to the request atomically; None if there is no such request. A
        change that leaves the request as it was writes nothing; one that changes it keeps
        the request another 90 days, as a save does."""
        key = self.keys.flag_request(request_id)
        missing = f"there is no flag request {request_id}"

        def apply(stored: _Stored) -> T:
            before = stored.request.to_dict()
            result = change(stored.request)
            if stored.request.to_dict() == before:
                raise _Unchanged(stored.request, result)
            return result

        def keep(pipe: Pipeline, stored: _Stored) -> None:
            pipe.expire(key, REQUEST_SECONDS)
            self._index(pipe, stored.request)

        try:
            stored, result = await update_atomically(
                self.redis, key, load=_Stored.load, change=apply, also=keep, missing=missing
            )
        except _Unchanged as unchanged:
            return unchanged.request, cast(T, unchanged.result)
        except TransitionError as exc:
            if str(exc) != missing:
                raise
            return None
        return stored.request, result

    async def mark_killed(self, name: str, at: float) -> None:
        await self.redis.hset(self.keys.flag_kills, name, f"{at:.6f}")

    async def killed_at(self, name: str) -> float | None:
        raw = await self.redis.hget(self.keys.flag_kills, name)
        return float(raw) if raw is not None else None

    # --- ramps --------------------------------------------------------------------------------

    async def ramp_names(self) -> list[str]:
        names = await self.redis.hkeys(self.keys.flag_ramps)
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    async def ramp(self, name: str) -> Ramp | None:
        raw = await self.redis.hget(self.keys.flag_ramps, name)
        return Ramp.from_dict(json.loads(raw)) if raw is not None else None

    async def start_ramp(self, ramp: Ramp) -> None:
        await self.redis.hset(self.keys.flag_ramps, ramp.name, json.dumps(ramp.to_dict()))

    async def save_ramp(self, ramp: Ramp) -> bool:
        """Record the ramp's progress; False (and nothing written) if it was stopped."""
        saved = await self.redis.eval(
            _SAVE_IF_GOING, 1, self.keys.flag_ramps, ramp.name, json.dumps(ramp.to_dict())
        )
        return bool(saved)

    async def end_ramp(self, name: str) -> Ramp | None:
        """Remove the ramp of `name`; returns it, or None if none was going."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(self.keys.flag_ramps, name)
            pipe.hdel(self.keys.flag_ramps, name)
            raw, _ = await pipe.execute()
        return Ramp.from_dict(json.loads(raw)) if raw is not None else None
