"""Freeze requests on their own ([freeze] required above 0): the asker counts when they are an
approver, N distinct approvers set the freeze from the last approval's moment, a Reject ends
it, its time runs out at `until` or after `request_hours`, and every refused transition leaves
the request as it was. Pure rules: no Redis, no Slack."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from bot.domain import freeze_requests
from bot.domain.approvals import NoChange, Refusal
from bot.domain.freeze_requests import Audited, Expired, FreezeRequest
from tests.helpers.config import build_config

NOW = 1_900_000_000.0
HOUR = 3600.0


def policy(required: int = 2, approvers: tuple[str, ...] = ("U0BOB", "U0CAROL", "U0ALICE")):
    config = build_config(freeze={"required": required, "approvers": list(approvers)})
    return freeze_requests.freeze_policy(config)


def asked(until_hours: float = 48, request_hours: float = 24) -> FreezeRequest:
    return freeze_requests.new_request(
        environment="production",
        until=NOW + until_hours * HOUR,
        reason="holidays",
        requester="U0ALICE",
        requester_name="alice",
        now=NOW,
        request_hours=request_hours,
    )


def approve(request: FreezeRequest, user: str, at: float = NOW + 60, *, eligible: bool = True):
    return freeze_requests.approve(
        request,
        policy=policy(),
        user_id=user,
        user_name=user.lower(),
        now=at,
        is_approver=eligible,
    )


def test_the_asker_counts_and_the_last_approval_sets_the_freeze_from_its_moment():
    request = asked()
    assert approve(request, "U0ALICE", NOW) == [Audited("freeze.approve", "1 more needed")]
    assert request.status == "waiting"
    assert freeze_requests.missing(request, policy()) == 1
    done = approve(request, "U0BOB", NOW + 600)
    assert [a.action for a in done] == ["freeze.approve", "freeze.set"]
    assert "asked by U0ALICE, approved by U0ALICE, U0BOB: holidays" in done[1].reason
    assert request.status == "set" and request.decided_by == "U0BOB"
    freeze = request.freeze
    assert freeze.start == datetime.fromtimestamp(NOW + 600, UTC)  # not from when asked
    assert freeze.until == datetime.fromtimestamp(NOW + 48 * HOUR, UTC)
    assert freeze.who == "U0ALICE"  # hers: she may end it early


@pytest.mark.parametrize(
    ("user", "eligible", "error", "words"),
    [
        ("U0EVE", False, Refusal, "not one of the [freeze] approvers"),
        ("U0BOB", True, NoChange, "approved this freeze request already"),
    ],
)
def test_a_refused_approval_changes_nothing(user, eligible, error, words):
    request = asked()
    approve(request, "U0BOB")
    before = copy.deepcopy(request)
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
        approve(request, user, eligible=eligible)
    assert request == before


def test_no_approval_after_it_was_decided():
    for decide in (
        lambda r: (approve(r, "U0BOB"), approve(r, "U0CAROL")),
        lambda r: freeze_requests.reject(r, user_id="U0CAROL", now=NOW + 60, may=True),
    ):
        request = asked()
        decide(request)
        before = copy.deepcopy(request)
        with pytest.raises(NoChange, match="already"):
            approve(request, "U0ALICE")
        assert request == before


def test_a_reject_by_an_approver_ends_it_and_no_one_else_rejects():
    request = asked()
    with pytest.raises(Refusal):
        freeze_requests.reject(request, user_id="U0EVE", now=NOW + 60, may=False)
    assert request.status == "waiting"
    notes = freeze_requests.reject(request, user_id="U0CAROL", now=NOW + 60, may=True)
    assert notes == [Audited("freeze.reject", "holidays")]
    assert (request.status, request.decided_by) == ("rejected", "U0CAROL")


def test_it_expires_at_until_or_after_request_hours_whichever_comes_first():
    assert asked(until_hours=48, request_hours=24).expires_at == NOW + 24 * HOUR
    assert asked(until_hours=3, request_hours=24).expires_at == NOW + 3 * HOUR
    request = asked(until_hours=3)
    approve(request, "U0BOB")
    before = copy.deepcopy(request)
    # The approval that would complete it comes once `until` passed: it expires instead.
    with pytest.raises(Expired):
        approve(request, "U0CAROL", NOW + 3 * HOUR)
    assert request == before
    with pytest.raises(NoChange, match="time left"):
        freeze_requests.expire(request, now=NOW + 3 * HOUR - 1)
    notes = freeze_requests.expire(request, now=NOW + 3 * HOUR)
    assert [n.action for n in notes] == ["freeze.expire"]
    assert request.status == "expired"
    with pytest.raises(NoChange, match="expired already"):
        freeze_requests.expire(request, now=NOW + 4 * HOUR)


def test_its_message_is_recorded_once_and_it_round_trips():
    request = asked()
    assert freeze_requests.placed(request, channel="C0REL", ts="1.2") == []
    with pytest.raises(NoChange):
        freeze_requests.placed(request, channel="C0REL", ts="9.9")
    approve(request, "U0BOB")
    assert FreezeRequest.from_json(request.to_json()) == request


def test_the_policy_lets_the_asker_count_and_approvals_never_lapse():
    found = policy(required=3, approvers=("S0OPS",))
    assert (found.required, found.approvers, found.allow_self_approval) == (3, ("S0OPS",), True)
    assert found.valid_hours == float("inf")
