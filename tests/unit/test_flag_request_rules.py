"""Flag change requests on their own: which need approval, how approvals are counted by the one
policy engine, ramps and their steps, and both stored shapes of an approval."""

from __future__ import annotations

import math

import pytest

from bot.domain import flag_requests
from bot.domain.actors import Actor
from bot.domain.approval_policy import Approval
from bot.domain.config import ApprovalPolicy, parse_config
from bot.domain.flag_requests import FlagRequest, new_request
from bot.domain.flags import Flag, FlagsError, as_operation, site_report
from tests.helpers.flags import old_flag_request

ALICE = Actor("U0ALICE", "alice", "C0DEV")
ON_50 = Flag("new_search", True, 50)
TWO = ApprovalPolicy(required=2, approvers=("U0BOB", "U0CAROL"))


def config(required: int = 1):
    return parse_config(
        {
            "repository": {"url": "/tmp/repo.git"},
            "slack": {"channel": "#releases"},
            "environments": [
                {"name": "staging", "deploy_command": "true"},
                {"name": "production", "deploy_command": "true"},
            ],
            "flags": {"required": required},
        }
    )


def awaiting(**fields) -> FlagRequest:
    request = new_request(ALICE, "set", "new_search", 1.0, percentage=80, **fields)
    request.status = "awaiting approval"
    return request


def test_what_needs_approval():
    cfg = config()
    assert flag_requests.needs_approval(cfg, awaiting(), ON_50)  # more people see it
    lower = new_request(ALICE, "set", "new_search", 1.0, percentage=20)
    assert not flag_requests.needs_approval(cfg, lower, ON_50)
    off = new_request(ALICE, "disable", "new_search", 1.0)
    assert not flag_requests.needs_approval(cfg, off, ON_50)  # the kill switch
    ramp = new_request(ALICE, "ramp", "new_search", 1.0, steps=[60, 80])
    assert flag_requests.needs_approval(cfg, ramp, ON_50)
    assert not flag_requests.needs_approval(config(0), ramp, ON_50)


def test_flag_approvals_do_not_expire():
    assert flag_requests.flag_policy(config(2)).valid_hours == math.inf
    assert flag_requests.flag_policy(config(2)).required == 2


def test_approvals_are_counted_until_the_request_is_approved():
    request = awaiting()
    first = flag_requests.approve(
        request, policy=TWO, user_id="U0BOB", user_name="bob", now=2.0, is_approver=True
    )
    assert first.accepted and first.missing == 1 and request.status == "awaiting approval"
    assert request.approvals == [Approval("U0BOB", "bob", 2.0)]
    second = flag_requests.approve(
        request, policy=TWO, user_id="U0CAROL", user_name="carol", now=3.0, is_approver=True
    )
    assert second.met and request.status == "approved"
    assert [a.user_id for a in request.approvals] == ["U0BOB", "U0CAROL"]


@pytest.mark.parametrize(
    ("user", "status", "is_approver", "why"),
    [
        ("U0BOB", "done", True, "not open"),
        ("U0ALICE", "awaiting approval", True, "own request"),
        ("U0EVE", "awaiting approval", False, "not an approver"),
        ("U0CAROL", "awaiting approval", True, "already approved"),
    ],
)
def test_a_refused_approval_changes_nothing(user, status, is_approver, why):
    request = awaiting(approvals=[Approval("U0CAROL", "carol", 1.5)])
    request.status = status
    before = request.to_dict()
    verdict = flag_requests.approve(
        request, policy=TWO, user_id=user, user_name="x", now=2.0, is_approver=is_approver
    )
    assert verdict.refused == why
    assert request.to_dict() == before


def test_a_request_stored_before_approvals_had_one_shape_still_loads():
    old = old_flag_request(id="abc123")
    request = FlagRequest.from_dict(old)
    assert request.approvals == [Approval("U0BOB", "", 2.0)]
    # The old approval counts: bob may not approve twice, and one more makes two.
    assert (
        flag_requests.approve(
            request, policy=TWO, user_id="U0BOB", user_name="bob", now=3.0, is_approver=True
        ).refused
        == "already approved"
    )
    assert flag_requests.approve(
        request, policy=TWO, user_id="U0CAROL", user_name="carol", now=3.0, is_approver=True
    ).met
    # Written back with the same fields, and each approval readable the old way too.
    written = request.to_dict()
    assert set(written) == set(old)
    assert [(a["user"], a["at"]) for a in written["approvals"]] == [
        ("U0BOB", 2.0),
        ("U0CAROL", 3.0),
    ]
    assert FlagRequest.from_dict(written) == request


def test_a_ramp_starts_above_the_flag_and_steps_as_approved_requests():
    ramp_request = new_request(
        ALICE,
        "ramp",
        "new_search",
        1.0,
        steps=[60, 80],
        every_seconds=3600,
        approvals=[Approval("U0BOB", "bob", 2.0)],
    )
    with pytest.raises(FlagsError, match="no flag `new_search`"):
        flag_requests.check_ramp(ramp_request, None)
    with pytest.raises(FlagsError, match="at 50% already"):
        flag_requests.check_ramp(new_request(ALICE, "ramp", "new_search", 1.0, steps=[50]), ON_50)
    flag_requests.check_ramp(ramp_request, ON_50)
    ramp_request.before = flag_requests.describe(ON_50)
    ramp = flag_requests.ramp_of(ramp_request, now=10.0)
    assert (ramp.next_at, ramp.expect, ramp.steps) == (10.0, "on, 50%", [60, 80])
    step = flag_requests.next_step(ramp, ramp_request, now=11.0, before="on, 50%")
    assert (step.id, step.percentage, step.enable, step.status, step.parent) == (
        f"{ramp_request.id}-1",
        60,
        True,
        "approved",
        ramp_request.id,
    )
    assert step.approvals == ramp_request.approvals
    assert flag_requests.describe(None) == "new"


@pytest.mark.parametrize(
    ("body", "report"),
    [
        (
            '{"flags": {"new_search": {"enabled": true, "rollout_percentage": 80}}}',
            ("on, 80%", True),
        ),
        ('{"new_search": {"enabled": true, "rollout_percentage": 80}}', ("on, 80%", True)),
        (
            '{"flags": {"new_search": {"enabled": true, "rollout_percentage": 50}}}',
            ("on, 50%", False),
        ),
        ('{"flags": {"new_search": {"enabled": false}}}', ("off, 0%", False)),
        ('{"flags": {}}', ("the flag missing", False)),
        ('["new_search"]', ("the flag missing", False)),
    ],
)
def test_what_the_site_reports_of_a_flag(body, report):
    assert site_report(body, "new_search", Flag("new_search", True, 80)) == report


def test_a_site_answer_that_is_not_json_is_no_answer():
    with pytest.raises(ValueError):
        site_report("<html>", "new_search", ON_50)


def test_a_stored_request_names_a_known_operation_or_is_refused():
    assert [as_operation(op) for op in ("set", "enable", "disable", "create")] == [
        "set",
        "enable",
        "disable",
        "create",
    ]
    with pytest.raises(ValueError):
        as_operation("drop")


def test_the_kill_switch_voids_what_was_asked_before_it_and_never_itself():
    asked = new_request(ALICE, "enable", "new_search", 100.0)
    assert not flag_requests.voided(asked, None)  # never killed
    assert not flag_requests.voided(asked, 99.0)  # killed before it was asked
    assert flag_requests.voided(asked, 100.0) and flag_requests.voided(asked, 101.0)
    assert not flag_requests.voided(asked, 150.0, asked_at=200.0)  # a step of a later ramp
    kill = new_request(ALICE, "disable", "new_search", 100.0)
    assert not flag_requests.voided(kill, 101.0)
