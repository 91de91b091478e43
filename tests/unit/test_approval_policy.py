"""The one approval policy engine, on its own: what counts, what is refused and why, and the
one shape an approval is stored in (also the older shape flag requests had)."""

from __future__ import annotations

import math

import pytest

from bot.domain.approval_policy import Approval, consider, counted, met, missing
from bot.domain.config import ApprovalPolicy

NOW = 1_700_000_000.0
HOUR = 3600.0
TWO = ApprovalPolicy(required=2, approvers=("U0BOB", "U0CAROL", "S0MGR"), valid_hours=72)


def ask(
    policy: ApprovalPolicy,
    approvals: list[Approval],
    user: str = "U0BOB",
    *,
    requester: str = "U0ALICE",
    is_approver: bool = True,
    is_open: bool = True,
    now: float = NOW,
):
    return consider(
        policy,
        approvals,
        user_id=user,
        user_name=user.lower(),
        now=now,
        requester=requester,
        is_approver=is_approver,
        is_open=is_open,
    )


def test_an_approval_is_accepted_and_counted_until_the_requirement_is_met():
    first = ask(TWO, [])
    assert first.accepted and first.refused is None
    assert first.approvals == (Approval("U0BOB", "u0bob", NOW),)
    assert (first.missing, first.met) == (1, False)
    second = ask(TWO, list(first.approvals), "U0CAROL", now=NOW + 1)
    assert second.accepted and second.met and second.missing == 0
    assert [a.user_id for a in second.approvals] == ["U0BOB", "U0CAROL"]


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"is_open": False}, "not open"),
        ({"user": "U0ALICE"}, "own request"),
        ({"is_approver": False}, "not an approver"),
        ({"user": "U0CAROL"}, "already approved"),
    ],
)
def test_each_refusal_says_why_and_changes_nothing(kwargs, why):
    recorded = [Approval("U0CAROL", "carol", NOW - HOUR)]
    verdict = ask(TWO, recorded, **kwargs)
    assert verdict.refused == why and not verdict.accepted
    assert verdict.approvals == tuple(recorded)
    assert verdict.missing == 1


def test_what_concerns_everyone_is_said_before_what_concerns_the_person():
    # Closed beats "your own", which beats "not an approver", which beats "already".
    mine = [Approval("U0ALICE", "alice", NOW)]
    assert ask(TWO, mine, "U0ALICE", is_open=False, is_approver=False).refused == "not open"
    assert ask(TWO, mine, "U0ALICE", is_approver=False).refused == "own request"
    own_allowed = ApprovalPolicy(required=1, allow_self_approval=True)
    assert ask(own_allowed, mine, "U0ALICE", is_approver=False).refused == "not an approver"
    assert ask(own_allowed, mine, "U0ALICE").refused == "already approved"
    assert ask(own_allowed, [], "U0ALICE").accepted


def test_approvals_past_their_validity_do_not_count_and_may_be_given_again():
    old = Approval("U0BOB", "bob", NOW - 73 * HOUR)
    fresh = Approval("U0CAROL", "carol", NOW - 71 * HOUR)
    assert counted(TWO, [old, fresh], NOW) == [fresh]
    assert missing(TWO, [old, fresh], NOW) == 1 and not met(TWO, [old, fresh], NOW)
    again = ask(TWO, [old, fresh])
    assert again.accepted and again.met
    assert again.approvals == (fresh, Approval("U0BOB", "u0bob", NOW))  # the stale one dropped


def test_without_expiry_every_approval_counts_at_any_time():
    forever = ApprovalPolicy(required=2, valid_hours=math.inf)
    long_ago = [Approval("U0BOB", "bob", 0.0), Approval("U0CAROL", "carol", 1.0)]
    assert met(forever, long_ago, NOW) and met(forever, long_ago, 0.0)


def test_a_person_counts_once():
    twice = [Approval("U0BOB", "bob", NOW - 2), Approval("U0BOB", "bob", NOW - 1)]
    assert counted(TWO, twice, NOW) == [twice[0]]
    assert missing(TWO, twice, NOW) == 1


def test_no_requirement_is_met_from_the_start():
    none = ApprovalPolicy(required=0)
    assert met(none, [], NOW) and missing(none, [], NOW) == 0


def test_an_approval_reads_both_stored_shapes():
    now_shape = {"user_id": "U0BOB", "user_name": "bob", "at": NOW}
    assert Approval.from_dict(now_shape) == Approval("U0BOB", "bob", NOW)
    assert Approval.from_dict(now_shape).to_dict() == now_shape
    # Flag requests stored {"user", "at"} before there was one engine.
    assert Approval.from_dict({"user": "U0BOB", "at": 5}) == Approval("U0BOB", "", 5.0)
