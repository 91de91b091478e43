"""The freeze-requests adapter against the real Redis: approvals that race are all counted,
the one that completes the count writes the freeze with its audit entries, a refused change
writes nothing, and a request is kept a bounded time."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest

from bot.adapters.redis.freeze_requests import KEEP_SECONDS, RedisFreezeRequests
from bot.adapters.redis.freezes import RedisFreezes
from bot.adapters.redis.outbox import RedisOutbox
from bot.adapters.redis.store import Store
from bot.domain import freeze_requests
from bot.domain.actors import Actor
from bot.domain.approvals import Refusal
from bot.domain.config import ApprovalPolicy
from bot.domain.freeze_requests import Audited

NOW = 1_900_000_000.0
ALICE = Actor("U0ALICE", "alice", "C0DEV")


def adapter(redis, prefix) -> tuple[RedisFreezeRequests, Store]:
    store = Store(redis, prefix, clock=lambda: NOW)
    return RedisFreezeRequests(redis, store.keys, store.queue_audit, lambda: NOW), store


def approve(user: str, policy: ApprovalPolicy, eligible: bool = True):
    return partial(
        freeze_requests.approve,
        policy=policy,
        user_id=user,
        user_name=user.lower(),
        now=NOW + 1,
        is_approver=eligible,
    )


async def asked(requests: RedisFreezeRequests, hours: float = 24):
    request = freeze_requests.new_request(
        environment="production",
        until=NOW + 48 * 3600,
        reason="holidays",
        requester="U0ALICE",
        requester_name="alice",
        now=NOW,
        request_hours=hours,
    )
    await requests.create(request, ALICE, Audited("freeze.ask", "holidays"))
    return request


async def test_approvals_at_once_are_all_counted_and_the_last_sets_one_freeze(redis, prefix):
    requests, store = adapter(redis, prefix)
    request = await asked(requests)
    eight = ApprovalPolicy(required=8, allow_self_approval=True, valid_hours=float("inf"))
    users = [f"U0APPR{i}" for i in range(8)]
    results = await asyncio.gather(
        *(requests.update(request.id, approve(u, eight), Actor(u, u, "C")) for u in users)
    )
    final = await requests.load(request.id)
    assert final is not None and final.status == "set"
    assert sorted(a.user_id for a in final.approvals) == users
    assert sum(any(n.action == "freeze.set" for n in r[1]) for r in results if r) == 1
    active = await RedisFreezes(
        redis, store.keys, store.queue_audit, RedisOutbox(redis, store.keys)
    ).active("production", NOW + 2)
    assert [(freeze_id, f.who) for freeze_id, f in active] == [(request.id, "U0ALICE")]
    trail = [(e["action"], e["environment"]) for e in await store.audit_entries()]
    assert trail.count(("freeze.approve", "production")) == 8
    assert trail.count(("freeze.set", "production")) == 1
    assert trail[0] == ("freeze.ask", "production")


async def test_a_refused_change_writes_nothing_and_a_request_is_kept_a_bounded_time(redis, prefix):
    requests, store = adapter(redis, prefix)
    request = await asked(requests, hours=2)
    key = store.keys.freeze_request(request.id)
    assert 2 * 3600 + KEEP_SECONDS - 5 < await redis.ttl(key) <= 2 * 3600 + KEEP_SECONDS
    policy = ApprovalPolicy(required=2, approvers=("U0BOB",), allow_self_approval=True)
    with pytest.raises(Refusal):
        await requests.update(request.id, approve("U0EVE", policy, eligible=False), ALICE)
    assert await requests.load(request.id) == request
    assert [e["action"] for e in await store.audit_entries()] == ["freeze.ask"]
    await requests.update(request.id, approve("U0BOB", policy), ALICE)
    # Rewritten, it is still kept no longer than its time and a week.
    assert 0 < await redis.ttl(key) <= 2 * 3600 + KEEP_SECONDS
    assert await requests.update("nothing", approve("U0BOB", policy), ALICE) is None


async def test_the_waiting_requests_are_those_undecided_and_in_time(redis, prefix):
    requests, store = adapter(redis, prefix)
    first, second, short = await asked(requests), await asked(requests), await asked(requests, 1)
    listed = {r.id for r in await requests.waiting(NOW + 1)}
    assert listed == {first.id, second.id, short.id}
    await requests.update(
        second.id,
        partial(freeze_requests.reject, user_id="U0BOB", now=NOW + 2, may=True),
        Actor("U0BOB", "bob", "C"),
    )
    # Rejected: out of the index with its decision; past its hour, `short` is not listed
    # (its expiry job ends it) and leaves the index as it is read.
    assert [r.id for r in await requests.waiting(NOW + 3601)] == [first.id]
    assert await redis.zrange(store.keys.freeze_requests_waiting, 0, -1) == [first.id.encode()]


async def test_a_request_set_or_withdrawn_leaves_the_waiting_index(redis, prefix):
    requests, store = adapter(redis, prefix)
    one = ApprovalPolicy(required=1, allow_self_approval=True, valid_hours=float("inf"))
    approved, unposted = await asked(requests), await asked(requests)
    await requests.update(approved.id, approve("U0BOB", one), Actor("U0BOB", "bob", "C"))
    await requests.update(
        unposted.id, partial(freeze_requests.unposted, now=NOW + 1), Actor("U0BOT", "bot", "")
    )
    assert await requests.waiting(NOW + 2) == []
    assert await redis.zcard(store.keys.freeze_requests_waiting) == 0
