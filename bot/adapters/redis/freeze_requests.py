"""Freeze requests in Redis (`freezereq:<id>`, JSON), each change with its audit entries in one
transaction (bot.adapters.redis.atomic): two approvals at once are both counted, and the one
that completes the policy writes the freeze itself (the environment's `freezes` hash, by the
request's id) in that same transaction, so a freeze never holds without its approvals on the
trail, nor the trail say "set" of a freeze that is not.

A request is kept until it expires and a week after, then Redis drops it: late clicks on its
message are answered while it is kept, and nothing grows without bound.
"""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from bot.adapters import metrics
from bot.adapters.redis.atomic import update_atomically
from bot.adapters.redis.freezes import AuditQueue, stored
from bot.adapters.redis.keys import Keys
from bot.domain.actors import Actor
from bot.domain.freeze_requests import Audited, FreezeRequest
from bot.domain.releases import TransitionError

KEEP_SECONDS = 7 * 86400  # after it is decided or expired: for late clicks on its message


class RedisFreezeRequests:
    def __init__(
        self, redis: Redis, keys: Keys, audit: AuditQueue, clock: Callable[[], float]
    ) -> None:
        self.redis = redis
        self.keys = keys
        self._audit = audit
        self._clock = clock

    def _ttl(self, request: FreezeRequest) -> int:
        return int(max(request.expires_at - self._clock(), 0) + KEEP_SECONDS)

    def _queue(
        self, pipe: Pipeline, request: FreezeRequest, actor: Actor, notes: list[Audited]
    ) -> None:
        for note in notes:
            self._audit(
                pipe,
                actor,
                note.action,
                environment=request.environment,
                outcome=note.outcome,
                reason=note.reason[:1000],
            )

    def _counted(self, request: FreezeRequest, notes: list[Audited]) -> None:
        for note in notes:
            metrics.audited(self.keys.service, note.action, request.environment, note.outcome)

    async def create(self, request: FreezeRequest, actor: Actor, note: Audited) -> None:
        """Record a new request with its audit entry (`freeze.ask`)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.freeze_request(request.id), request.to_json(), ex=self._ttl(request))
            pipe.zadd(self.keys.freeze_requests_waiting, {request.id: request.expires_at})
            # Those past their time leave here too, whether or not status is ever read.
            pipe.zremrangebyscore(self.keys.freeze_requests_waiting, "-inf", self._clock())
            self._queue(pipe, request, actor, [note])
            await pipe.execute()
        self._counted(request, [note])

    async def waiting(self, now: float) -> list[FreezeRequest]:
        """The requests still waiting for approvals at `now`, oldest first. Those whose time
        passed leave the index here (their expiry job, or a late click, ends them)."""
        index = self.keys.freeze_requests_waiting
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(index, "-inf", now)
            pipe.zrangebyscore(index, now, "+inf")
            _, ids = await pipe.execute()
        if not ids:
            return []
        raws = await self.redis.mget([self.keys.freeze_request(i.decode()) for i in ids])
        found = [FreezeRequest.from_json(raw) for raw in raws if raw is not None]
        return sorted(
            (r for r in found if r.status == "waiting" and r.expires_at > now),
            key=lambda r: r.requested_at,
        )

    async def load(self, request_id: str) -> FreezeRequest | None:
        raw = await self.redis.get(self.keys.freeze_request(request_id))
        return FreezeRequest.from_json(raw) if raw is not None else None

    async def update(
        self,
        request_id: str,
        change: Callable[[FreezeRequest], list[Audited]],
        actor: Actor,
    ) -> tuple[FreezeRequest, list[Audited]] | None:
        """Apply `change` atomically with the audit entries it returns (as `actor`'s) and, once
        the request is set, its freeze; None if there is no such request (any more). A change
        that raises TransitionError writes nothing."""
        key = self.keys.freeze_request(request_id)
        missing = f"there is no freeze request {request_id}"
        notes: list[Audited] = []

        def apply(request: FreezeRequest) -> list[Audited]:
            notes[:] = change(request)
            return notes

        def also(pipe: Pipeline, request: FreezeRequest) -> None:
            pipe.expire(key, self._ttl(request))
            if request.status != "waiting":
                pipe.zrem(self.keys.freeze_requests_waiting, request.id)
            self._queue(pipe, request, actor, notes)
            if any(note.action == "freeze.set" for note in notes):
                # By the request's id: written again on a retry, it is still one freeze.
                pipe.hset(
                    self.keys.freezes(request.environment), request.id, stored(request.freeze)
                )

        try:
            request, done = await update_atomically(
                self.redis,
                key,
                load=FreezeRequest.from_json,
                change=apply,
                also=also,
                missing=missing,
            )
        except TransitionError as exc:
            if str(exc) != missing:
                raise
            return None
        self._counted(request, done)
        return request, done
