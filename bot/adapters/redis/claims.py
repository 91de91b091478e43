"""Short-lived claims in Redis: "a candidate is being created" (one per kind, so two
/release rc moments apart make one candidate) and the tickets of open forms (a form's
submission acts only on what the bot opened it for, once, for the person it was opened for)."""

from __future__ import annotations

import json
import secrets
from typing import Any

from redis.asyncio import Redis

from bot.adapters.redis.keys import Keys

_END_CLAIM = """
local raw = redis.call('GET', KEYS[1])
if raw and cjson.decode(raw)['r'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Taken only by the person it was opened for (someone else's submission must not use it up),
# and only once.
_TAKE_FORM = """
local raw = redis.call('GET', KEYS[1])
if not raw then return nil end
local form = cjson.decode(raw)
if form['user'] ~= ARGV[1] or form['kind'] ~= ARGV[2] then return nil end
redis.call('DEL', KEYS[1])
return raw
"""


class CreationClaims:
    """The `CreationClaims` port on Redis: one JSON {r: request id, u: user, at} per kind."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def claim(
        self, kind: str, request_id: str, user_id: str, now: float, seconds: int
    ) -> dict[str, Any] | None:
        """Claim `kind` for `request_id`; returns the claim that stands instead, if any."""
        key = self.keys.pending(kind)
        mine = json.dumps({"r": request_id, "u": user_id, "at": now})
        while not await self.redis.set(key, mine, nx=True, ex=seconds):
            raw = await self.redis.get(key)
            if raw is not None:
                other: dict[str, Any] = json.loads(raw)
                return other
            # ended meanwhile: try again
        return None

    async def end(self, kind: str, request_id: str) -> None:
        """End this request's claim (never another's)."""
        await self.redis.eval(_END_CLAIM, 1, self.keys.pending(kind), request_id)


class FormTickets:
    """The `FormTickets` port on Redis: what an open form is about, under a random ticket."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def open(self, user_id: str, kind: str, what: dict[str, str], seconds: int) -> str:
        ticket = secrets.token_urlsafe(12)
        await self.redis.set(
            self.keys.form(ticket), json.dumps({"user": user_id, "kind": kind, **what}), ex=seconds
        )
        return ticket

    async def take(self, ticket: str, user_id: str, kind: str) -> dict[str, str] | None:
        raw = await self.redis.eval(_TAKE_FORM, 1, self.keys.form(ticket), user_id, kind)
        return None if raw is None else {k: str(v) for k, v in json.loads(raw).items()}
