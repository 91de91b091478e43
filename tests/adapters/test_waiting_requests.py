"""The rollbacks and flag changes waiting for approvals, as `/release status` reads them from
the real Redis: a request is listed from when its message is posted until it is decided,
whichever way, with the approvals it has now. The index of those waiting is mended as it is
read: a request decided by a replica that did not keep it, and one gone after its 90 days,
leave it. (Which of them a click can still decide is status's to say: test_status_waiting.)"""

from __future__ import annotations

import time
from functools import partial

from bot.adapters.redis.flag_requests import RedisFlagRequests
from bot.adapters.redis.keys import Keys
from bot.adapters.redis.store import Store
from bot.domain import flag_requests, rollbacks
from bot.domain.actors import Actor
from bot.domain.config import ApprovalPolicy
from bot.domain.flag_requests import new_request
from bot.domain.rollbacks import RollbackRequest
from tests.helpers import rollbacks as helpers

ALICE = Actor("U0ALICE", "alice", "C0DEV")
BOB = Actor("U0BOB", "bob", "C0DEV")
TWO = ApprovalPolicy(required=2, approvers=())


def rollback_request(request_id: str, at: float) -> RollbackRequest:
    return helpers.rollback_request(
        request_id, requested_at=at, channel="C0RELEASE", message_ts=f"{at:.6f}"
    )


async def test_a_rollback_is_listed_while_it_waits(redis, prefix):
    store = Store(redis, prefix)
    await store.create_rollback(rollback_request("r2", 2.0), ALICE)
    await store.create_rollback(rollback_request("r1", 1.0), ALICE)
    status = await store.status(["production"])
    assert [r.id for r in status.waiting_rollbacks] == ["r1", "r2"]  # oldest first

    approve = partial(rollbacks.approve, user_id="U0BOB", user_name="bob", now=3.0, eligible=True)
    await store.update_rollback("r1", approve, BOB, "rollback.approve")
    [r1, _] = (await store.status(["production"])).waiting_rollbacks
    assert [a.user_id for a in r1.approvals] == ["U0BOB"]  # as it is now

    start = partial(rollbacks.start, policy=ApprovalPolicy(required=1))
    await store.update_rollback("r1", start, BOB, "rollback.start")
    cancel = partial(rollbacks.cancel, user_name="alice", now=4.0, may=True)
    await store.update_rollback("r2", cancel, ALICE, "rollback.cancel")
    assert (await store.status(["production"])).waiting_rollbacks == []
    assert not await redis.exists(Keys(prefix).rollbacks_waiting)


async def test_a_flag_change_is_listed_while_it_awaits_approval(redis, prefix):
    requests = RedisFlagRequests(redis, Keys(prefix))
    store = Store(redis, prefix)
    request = new_request(ALICE, "set", "new_search", time.time(), percentage=80)
    await requests.save(request)  # new: not asking anyone yet
    assert (await store.status(["production"])).waiting_flag_requests == []

    request.status = "awaiting approval"
    await requests.save(request)
    await requests.update(request.id, partial(flag_requests.place, channel="C0", ts="1.000200"))
    approve = partial(
        flag_requests.approve,
        policy=TWO,
        user_id="U0BOB",
        user_name="bob",
        now=time.time(),
        is_approver=True,
    )
    await requests.update(request.id, approve)
    [listed] = (await store.status(["production"])).waiting_flag_requests
    assert listed.id == request.id and [a.user_id for a in listed.approvals] == ["U0BOB"]

    cancel = partial(flag_requests.cancel, user_name="alice", may=True)
    await requests.update(request.id, cancel)
    assert (await store.status(["production"])).waiting_flag_requests == []


async def test_the_index_is_mended_as_it_is_read(redis, prefix):
    keys, store = Keys(prefix), Store(redis, prefix)
    requests = RedisFlagRequests(redis, keys)
    # Decided by a replica of an earlier release, which wrote the record but not the index.
    await store.create_rollback(rollback_request("r1", 1.0), ALICE)
    decided = rollback_request("r1", 1.0)
    decided.status = "cancelled"
    await redis.set(keys.rollback("r1"), decided.to_json())
    # A flag request whose record expired after its 90 days.
    gone = new_request(ALICE, "enable", "old_flag", time.time())
    gone.status, gone.ts = "awaiting approval", "1.000100"
    await requests.save(gone)
    await redis.delete(keys.flag_request(gone.id))
    # The kill switch's times come with them (what it voids is the rule's to say).
    await requests.mark_killed("new_search", 5.0)
    # And one written by a newer release, with a field this one does not know: left to it.
    newer = rollback_request("r9", 9.0).to_json().replace('"id":', '"sealed":true,"id":')
    await redis.set(keys.rollback("r9"), newer)
    await redis.sadd(keys.rollbacks_waiting, "r9")

    status = await store.status(["production"])

    assert status.waiting_rollbacks == [] and status.waiting_flag_requests == []
    assert status.flag_kills == {"new_search": 5.0}
    assert await redis.smembers(keys.rollbacks_waiting) == {b"r9"}
    assert await redis.smembers(keys.flag_requests_waiting) == set()
