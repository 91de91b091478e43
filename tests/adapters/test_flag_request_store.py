"""The flag-requests adapter against the real Redis: the same keys as before, approvals that
race are both counted, records written before approvals had one shape, and ramps that a stop
ends for good."""

from __future__ import annotations

import asyncio
import json
from functools import partial

from bot.adapters.redis.flag_requests import REQUEST_SECONDS, RedisFlagRequests
from bot.adapters.redis.keys import Keys
from bot.domain import flag_requests
from bot.domain.actors import Actor
from bot.domain.approval_policy import Approval
from bot.domain.config import ApprovalPolicy
from bot.domain.flag_requests import Ramp, new_request
from tests.helpers.flags import old_flag_request

ALICE = Actor("U0ALICE", "alice", "C0DEV")
TWO = ApprovalPolicy(required=2, approvers=())
# A request as the bot wrote it before approvals had one shape.
OLD_RECORD = old_flag_request()


def approve(user: str, now: float = 5.0, policy: ApprovalPolicy = TWO):
    return partial(
        flag_requests.approve,
        policy=policy,
        user_id=user,
        user_name=user.lower(),
        now=now,
        is_approver=True,
    )


async def test_a_request_is_kept_under_its_old_key_for_90_days(redis, prefix):
    store = RedisFlagRequests(redis, Keys(prefix))
    request = new_request(ALICE, "enable", "new_search", 1.0)
    await store.save(request)
    key = f"{prefix}flagreq:{request.id}"
    assert json.loads(await redis.get(key))["name"] == "new_search"
    assert REQUEST_SECONDS - 5 < await redis.ttl(key) <= REQUEST_SECONDS
    assert await store.load(request.id) == request
    assert await store.load("nothing") is None
    assert await store.update("nothing", approve("U0BOB")) is None


async def test_approvals_at_once_are_all_counted(redis, prefix):
    store = RedisFlagRequests(redis, Keys(prefix))
    request = new_request(ALICE, "set", "new_search", 1.0, percentage=80)
    request.status = "awaiting approval"
    await store.save(request)
    users = [f"U0APPR{i}" for i in range(8)]
    eight = ApprovalPolicy(required=8)
    results = await asyncio.gather(
        *(store.update(request.id, approve(u, policy=eight)) for u in users)
    )
    assert all(r is not None and r[1].accepted for r in results)
    assert sum(r is not None and r[1].met for r in results) == 1  # the last one
    stored = await store.load(request.id)
    assert stored is not None and sorted(a.user_id for a in stored.approvals) == users
    assert stored.status == "approved"
    key = f"{prefix}flagreq:{request.id}"
    assert await redis.ttl(key) > REQUEST_SECONDS - 5  # an approval keeps the request's time


async def test_a_request_written_before_one_approval_shape_is_approved_on(redis, prefix):
    store = RedisFlagRequests(redis, Keys(prefix))
    key = f"{prefix}flagreq:{OLD_RECORD['id']}"
    raw = json.dumps(OLD_RECORD)
    await redis.set(key, raw, ex=3600)
    # A refusal writes nothing: the old record stays byte for byte.
    result = await store.update(OLD_RECORD["id"], approve("U0BOB"))
    assert result is not None and result[1].refused == "already approved"
    assert (await redis.get(key)).decode() == raw
    result = await store.update(OLD_RECORD["id"], approve("U0CAROL"))
    assert result is not None and result[1].met
    written = json.loads(await redis.get(key))
    assert written["status"] == "approved"
    assert written["approvals"] == [
        {"user_id": "U0BOB", "user_name": "", "at": 2.0, "user": "U0BOB"},
        {"user_id": "U0CAROL", "user_name": "u0carol", "at": 5.0, "user": "U0CAROL"},
    ]
    # Readable by the bot before this one too: the same fields, approvals with "user".
    assert set(written) == set(OLD_RECORD)
    assert await redis.ttl(key) > REQUEST_SECONDS - 5  # kept 90 days from its last change


async def test_a_stopped_ramp_is_not_written_back(redis, prefix):
    store = RedisFlagRequests(redis, Keys(prefix))
    ramp = Ramp(name="new_search", request="r1", steps=[60, 80], every_seconds=60.0)
    assert await store.ramp_names() == []
    await store.start_ramp(ramp)
    assert await store.ramp_names() == ["new_search"]
    assert await redis.hget(f"{prefix}flagramps", "new_search") is not None
    ramp.next_step = 1
    assert await store.save_ramp(ramp)
    assert await store.ramp("new_search") == ramp
    assert await store.end_ramp("new_search") == ramp
    assert await store.end_ramp("new_search") is None
    # A tick that was still working on it does not bring it back.
    ramp.next_step = 2
    assert not await store.save_ramp(ramp)
    assert await store.ramp("new_search") is None and await store.ramp_names() == []


async def test_approvals_read_back_as_one_shape(redis, prefix):
    store = RedisFlagRequests(redis, Keys(prefix))
    request = new_request(ALICE, "enable", "x", 1.0, approvals=[Approval("U0BOB", "bob", 2.0)])
    await store.save(request)
    loaded = await store.load(request.id)
    assert loaded is not None and loaded.approvals == [Approval("U0BOB", "bob", 2.0)]
