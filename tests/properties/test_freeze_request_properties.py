"""Property test of freeze requests against the real store: random people (approvers and not,
the asker among them) approve, approve again, reject, and time passes, some clicks at once.
After every step, from what Redis holds: a freeze holds only once N distinct approvers
approved before the request's time ran out, it is written once, never after a Reject or an
expiry, and the trail says `freeze.set` exactly when it does."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable
from functools import partial
from typing import TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis

from bot.adapters.redis.freeze_requests import RedisFreezeRequests
from bot.adapters.redis.freezes import RedisFreezes
from bot.adapters.redis.outbox import RedisOutbox
from bot.adapters.redis.store import Store
from bot.domain import freeze_requests
from bot.domain.actors import Actor
from bot.domain.freeze_requests import Audited, FreezeRequest
from bot.domain.releases import TransitionError
from tests.helpers.config import build_config
from tests.helpers.redis_server import REDIS_URL

T = TypeVar("T")

APPROVERS = ("U0APPR1", "U0APPR2", "U0APPR3")
PEOPLE = (*APPROVERS, "U0OUTSIDER", "U0ASKER")
REQUIRED = 2
START = 1_900_000_000.0
HOURS = 6.0  # until; request_hours is longer, so it expires at until
CONFIG = build_config(freeze={"required": REQUIRED, "approvers": list(APPROVERS)})
POLICY = freeze_requests.freeze_policy(CONFIG)


class FreezeRequests(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis = Redis.from_url(REDIS_URL)
        self.prefix = f"rbprop:{uuid.uuid4().hex[:10]}:"
        self.now = START
        self.store = Store(self.redis, self.prefix, clock=lambda: self.now)
        self.requests = RedisFreezeRequests(
            self.redis, self.store.keys, self.store.queue_audit, lambda: self.now
        )
        self.freezes = RedisFreezes(
            self.redis,
            self.store.keys,
            self.store.queue_audit,
            RedisOutbox(self.redis, self.store.keys),
        )
        self.request_id = ""

    def run(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(work)

    def teardown(self) -> None:
        async def clean() -> None:
            async for key in self.redis.scan_iter(match=f"{self.prefix}*", count=500):
                await self.redis.delete(key)
            await self.redis.aclose()

        self.run(clean())
        self.loop.close()

    @initialize(asker=st.sampled_from(PEOPLE))
    def ask(self, asker: str) -> None:
        request = freeze_requests.new_request(
            environment="production",
            until=START + HOURS * 3600,
            reason="holidays",
            requester=asker,
            requester_name=asker,
            now=self.now,
            request_hours=24,
        )
        self.request_id = request.id
        self.run(self.requests.create(request, Actor(asker), Audited("freeze.ask", "")))

    async def _approve(self, user: str) -> None:
        # Refused, or its time is up: nothing written.
        with contextlib.suppress(TransitionError):
            await self.requests.update(
                self.request_id,
                partial(
                    freeze_requests.approve,
                    policy=POLICY,
                    user_id=user,
                    user_name=user,
                    now=self.now,
                    is_approver=user in APPROVERS,
                ),
                Actor(user),
            )

    @rule(users=st.lists(st.sampled_from(PEOPLE), min_size=1, max_size=3))
    def approve_at_once(self, users: list[str]) -> None:
        async def all_of_them() -> None:
            await asyncio.gather(*(self._approve(u) for u in users))

        self.run(all_of_them())

    @rule(user=st.sampled_from(PEOPLE))
    def reject(self, user: str) -> None:
        async def rejecting() -> None:
            request = await self.requests.load(self.request_id)
            assert request is not None
            may = user == request.requester or user in APPROVERS
            with contextlib.suppress(TransitionError):
                await self.requests.update(
                    self.request_id,
                    partial(freeze_requests.reject, user_id=user, now=self.now, may=may),
                    Actor(user),
                )

        self.run(rejecting())

    @rule(hours=st.sampled_from([0.5, 2.0, 4.0]))
    def time_passes(self, hours: float) -> None:
        self.now += hours * 3600

    @rule()
    def expire(self) -> None:
        with contextlib.suppress(TransitionError):
            self.run(
                self.requests.update(
                    self.request_id, partial(freeze_requests.expire, now=self.now), Actor()
                )
            )

    def _state(self) -> tuple[FreezeRequest, list[str], list[dict[str, str]]]:
        async def read() -> tuple[FreezeRequest | None, list[str], list[dict[str, str]]]:
            request = await self.requests.load(self.request_id)
            raw = await self.redis.hkeys(self.store.keys.freezes("production"))
            return request, [k.decode() for k in raw], await self.store.audit_entries()

        request, freezes, trail = self.run(read())
        assert request is not None
        return request, freezes, trail

    @invariant()
    def a_freeze_holds_only_with_its_approvals(self) -> None:
        if not self.request_id:
            return
        request, freezes, trail = self._state()
        approvers = {a.user_id for a in request.approvals}
        assert approvers <= set(APPROVERS)  # nobody else's approval is ever recorded
        assert len(approvers) == len(request.approvals)  # each counted once
        sets = [e for e in trail if e["action"] == "freeze.set"]
        if request.status == "set":
            assert len(approvers) >= REQUIRED
            assert request.decided_at is not None
            assert request.decided_at < request.expires_at
            assert freezes == [request.id] and len(sets) == 1
        else:
            assert freezes == [] and sets == []
            assert len(approvers) < REQUIRED


def test_a_freeze_never_holds_without_its_approvals() -> None:
    run_state_machine_as_test(
        FreezeRequests,
        settings=settings(
            max_examples=40,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
