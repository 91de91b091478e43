"""The approval rules as plain functions: who may approve, and what promotion still lacks."""

from __future__ import annotations

import tomllib

import pytest

from bot.domain import approvals, releases
from bot.domain.approvals import NoChange, Refusal, readiness
from bot.domain.config import ApprovalPolicy, ConfigError, parse_config
from tests.helpers.config import STAGING_AND_PRODUCTION, automatic_gate, config_text, manual_gate

CONFIG = config_text(
    environments=STAGING_AND_PRODUCTION,
    gates=[
        automatic_gate("e2e", "Automated tests"),
        manual_gate("qa", "Manual QA"),
        manual_gate("sec", "Security scan"),
    ],
    approvals={
        "production": {
            "required": 2,
            "approvers": ["U0ALICE", "U0BOB", "S0RELMGR"],
            "valid_hours": 1,
        }
    },
)
NOW = 1_000_000.0


@pytest.fixture
def config():
    return parse_config(tomllib.loads(CONFIG))


def candidate(config, requester="U0CAROL"):
    release = releases.new_release(
        config,
        version="0.15.0-rc.1",
        tag="v0.15.0-rc.1",
        sha="a" * 40,
        requester=requester,
        requester_name="carol",
        description="",
        issue=None,
        now=NOW,
    )
    releases.activate(release, channel="C1", message_ts="1.0")
    return release


def staged(config):
    release = candidate(config)
    releases.queue_deploy(release, "staging", "d1", NOW)
    releases.start_deploy(release, "d1", NOW)
    releases.finish_deploy(release, "d1", NOW + 1, ok=True)
    releases.start_gate(release, "e2e", NOW + 1)
    releases.finish_gate(release, "e2e", NOW + 2, ok=True)
    return release


def approve(release, config, gate, user, at=NOW, is_approver=True):
    return approvals.approve(
        release,
        gate,
        user_id=user,
        user_name=user.lower(),
        now=at,
        policy=config.gate_policy("staging"),
        is_approver=is_approver,
    )


def test_policy_config_and_the_gate_policy_is_the_next_environments(config):
    assert config.gate_policy("staging") == ApprovalPolicy(
        required=2, approvers=("U0ALICE", "U0BOB", "S0RELMGR"), valid_hours=1.0
    )
    assert config.gate_policy("staging").groups == ("S0RELMGR",)
    assert config.policy("staging") == ApprovalPolicy()  # the default: one approval, anyone


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("required = 2", "required = 0", "approvals.production.required"),
        (
            'approvers = ["U0ALICE", "U0BOB", "S0RELMGR"]',
            'approvers = ["alice"]',
            "approvals.production.approvers[0]",
        ),
        ("[approvals.production]", "[approvals.prod]", "approvals.prod"),
        ("valid_hours = 1", "valid_hours = 'x'", "approvals.production.valid_hours"),
    ],
)
def test_bad_policies_name_the_key(old, new, key):
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(CONFIG.replace(old, new)))
    assert info.value.key == key


def test_n_distinct_approvers_are_needed_and_a_double_click_is_one(config):
    release = staged(config)
    assert "needs 2 more approvals" in " ".join(readiness(release, config, NOW).missing)
    approve(release, config, "qa", "U0ALICE")
    with pytest.raises(NoChange):
        approve(release, config, "qa", "U0ALICE")
    approve(release, config, "sec", "U0ALICE")
    state = readiness(release, config, NOW)
    assert state.missing == [
        "needs 1 more approval from <@U0ALICE> or <@U0BOB> or "
        "<!subteam^S0RELMGR> (1 of 2 distinct approvers)"
    ]
    approve(release, config, "qa", "U0BOB")
    state = readiness(release, config, NOW)
    assert state.ready
    assert [a.user_id for a in state.approvers] == ["U0ALICE", "U0BOB"]


def test_requester_and_non_approvers_are_refused(config):
    release = staged(config)
    with pytest.raises(Refusal, match="nobody approves their own"):
        approve(release, config, "qa", "U0CAROL")
    with pytest.raises(Refusal, match="not one of the approvers"):
        approve(release, config, "qa", "U0DAVE", is_approver=False)
    with pytest.raises(Refusal, match="checked automatically"):
        approve(release, config, "e2e", "U0ALICE")
    assert release.gate("qa").approvals == []


def test_approvals_expire(config):
    release = staged(config)
    approve(release, config, "qa", "U0ALICE", at=NOW)
    approve(release, config, "sec", "U0BOB", at=NOW)
    assert readiness(release, config, NOW + 3000).ready
    missing = readiness(release, config, NOW + 3601).missing
    assert "Manual QA needs an approval" in missing
    # Approving again after expiry counts afresh.
    approve(release, config, "qa", "U0ALICE", at=NOW + 3700)
    approve(release, config, "sec", "U0BOB", at=NOW + 3700)
    assert readiness(release, config, NOW + 3701).ready


def test_a_rejection_stops_the_candidate(config):
    release = staged(config)
    approvals.reject(
        release,
        "qa",
        user_id="U0BOB",
        user_name="bob",
        now=NOW,
        reason="checkout broken",
        policy=config.gate_policy("staging"),
        is_approver=True,
    )
    assert release.gate("qa").status == "failed"
    assert (
        "Manual QA was rejected by bob: checkout broken" in readiness(release, config, NOW).missing
    )
    with pytest.raises(Refusal, match="rejected by bob"):
        approve(release, config, "qa", "U0ALICE")
    with pytest.raises(NoChange):
        approvals.reject(
            release,
            "qa",
            user_id="U0ALICE",
            user_name="alice",
            now=NOW,
            reason="again",
            policy=config.gate_policy("staging"),
            is_approver=True,
        )


def test_a_superseded_candidate_takes_no_approvals(config):
    release = staged(config)
    approve(release, config, "qa", "U0ALICE")
    approvals.supersede(release, "v0.15.0-rc.2")
    with pytest.raises(Refusal, match=r"superseded by v0\.15\.0-rc\.2"):
        approve(release, config, "sec", "U0BOB")
    assert "it was superseded by v0.15.0-rc.2" in readiness(release, config, NOW).missing


def test_only_a_promotion_in_flight_is_overtaken_by_a_newer_live_release(config):
    open_candidate = staged(config)
    with pytest.raises(releases.TransitionError):
        releases.overtake(open_candidate, "v0.16.0")  # a newer candidate supersedes those
    assert open_candidate.phase == "active" and open_candidate.superseded_by is None

    promoted = staged(config)
    promoted.final_version, promoted.final_tag, promoted.promotion = "0.15.0", "v0.15.0", "done"
    releases.overtake(promoted, "v0.16.0")
    assert promoted.phase == "done" and promoted.superseded_by == "v0.16.0"
    with pytest.raises(releases.TransitionError):
        releases.overtake(promoted, "v0.17.0")  # once: it is out of the flight
    assert promoted.superseded_by == "v0.16.0"


def test_failed_deploys_and_gates_block_promotion(config):
    release = candidate(config)
    missing = readiness(release, config, NOW).missing
    assert "the deploy to staging has not succeeded (not deployed)" in missing
    assert "Automated tests has not passed (pending)" in missing


def test_approvals_survive_json(config):
    release = staged(config)
    approve(release, config, "qa", "U0ALICE")
    approvals.reject(
        release,
        "sec",
        user_id="U0BOB",
        user_name="bob",
        now=NOW,
        reason="no",
        policy=config.gate_policy("staging"),
        is_approver=True,
    )
    again = releases.Release.from_json(release.to_json())
    assert again == release


def test_no_decision_while_the_final_tag_is_being_made(config):
    release = staged(config)
    approve(release, config, "qa", "U0ALICE")
    approve(release, config, "sec", "U0BOB")
    approvals.start_promotion(release, config=config, now=NOW, final_version="0.15.0")
    with pytest.raises(Refusal, match="being promoted right now"):
        approvals.reject(
            release,
            "qa",
            user_id="U0BOB",
            user_name="bob",
            now=NOW,
            reason="late",
            policy=config.gate_policy("staging"),
            is_approver=True,
        )
    with pytest.raises(Refusal, match="being promoted right now"):
        approve(release, config, "sec", "U0ALICE")


def test_a_failed_deploy_may_be_retried_and_production_only_with_fresh_approvals(config):
    release = candidate(config)
    releases.queue_deploy(release, "staging", "d1", NOW)
    releases.start_deploy(release, "d1", NOW)
    assert "is running: there is nothing to retry" in approvals.retry_refusal(
        release, "staging", config, NOW
    )
    releases.finish_deploy(release, "d1", NOW + 1, ok=False)
    assert approvals.retry_refusal(release, "staging", config, NOW) is None
    approvals.retry_deploy(release, "staging", "d2", config=config, now=NOW + 2)
    assert release.deploys["staging"].status == "queued"
    with pytest.raises(Refusal, match="is queued: there is nothing to retry"):
        approvals.retry_deploy(release, "staging", "d3", config=config, now=NOW + 2)

    # Production: a promoted release, while the approvals its promotion needed still hold.
    promoted = staged(config)
    for gate, user in (("qa", "U0ALICE"), ("sec", "U0BOB")):
        approve(promoted, config, gate, user)
    releases.queue_deploy(promoted, "production", "p1", NOW)
    releases.block_deploy(promoted, "p1", NOW, detail="locked")
    assert "`/release final` does that" in approvals.retry_refusal(
        promoted, "production", config, NOW
    )
    promoted.final_tag, promoted.final_version = "v0.15.0", "0.15.0"
    assert approvals.retry_refusal(promoted, "production", config, NOW + 60) is None
    later = NOW + 2 * 3600  # valid_hours = 1
    assert "approvals no longer hold" in approvals.retry_refusal(
        promoted, "production", config, later
    )
    promoted.superseded_by = "v0.16.0"
    assert "no longer in flight" in approvals.retry_refusal(promoted, "production", config, NOW)


def test_a_failed_automatic_gate_may_run_again_while_its_deploy_stands(config):
    release = candidate(config)
    releases.queue_deploy(release, "staging", "d1", NOW)
    releases.start_deploy(release, "d1", NOW)
    releases.finish_deploy(release, "d1", NOW + 1, ok=True)
    releases.start_gate(release, "e2e", NOW + 1)
    assert "is running" in releases.rerun_refusal(release, release.gate("e2e"), "production")
    releases.finish_gate(release, "e2e", NOW + 2, ok=False, detail="2 failed")
    assert releases.rerun_refusal(release, release.gate("qa"), "production") == (
        "Manual QA is decided by people, not run"
    )
    gate = releases.rerun_gate(release, "e2e", "production")
    assert (gate.status, gate.detail, gate.finished_at) == ("pending", "", None)
    # A worker that stopped mid-run leaves nothing "running": its gates are failed, with why.
    releases.start_gate(release, "e2e", NOW + 3)
    [stopped] = releases.fail_unfinished_gates(release, "staging", NOW + 4, "worker stopped")
    assert (stopped.id, stopped.status, stopped.detail) == ("e2e", "failed", "worker stopped")
    with pytest.raises(releases.TransitionError):
        releases.fail_unfinished_gates(release, "staging", NOW + 5, "again")
    releases.queue_deploy(release, "staging", "d2", NOW + 6)  # a new deploy is underway
    assert "Retry deploy runs the gates" in releases.rerun_refusal(
        release, release.gate("e2e"), "production"
    )


def test_a_waived_gate_counts_as_passed_only_with_someone_elses_approval(config):
    release = candidate(config)
    releases.queue_deploy(release, "staging", "d1", NOW)
    releases.start_deploy(release, "d1", NOW)
    releases.finish_deploy(release, "d1", NOW + 1, ok=True)
    releases.start_gate(release, "e2e", NOW + 1)
    with pytest.raises(Refusal, match="only a failed gate is waived"):
        approvals.ask_waiver(release, "e2e", user_id="U0BOB", user_name="bob", now=NOW, reason="x")
    releases.finish_gate(release, "e2e", NOW + 2, ok=False)
    with pytest.raises(Refusal, match="decided by people"):
        approvals.ask_waiver(release, "qa", user_id="U0BOB", user_name="bob", now=NOW, reason="x")
    approvals.ask_waiver(release, "e2e", user_id="U0BOB", user_name="bob", now=NOW, reason="flake")
    with pytest.raises(NoChange):
        approvals.ask_waiver(release, "e2e", user_id="U0BOB", user_name="bob", now=NOW, reason="y")
    policy = config.waiver_policy(release.kind, "staging")
    assert policy.approvers == ("U0ALICE", "U0BOB", "S0RELMGR")  # production's, by default

    def approve_as(user: str, eligible: bool = True) -> None:
        approvals.approve_waiver(
            release,
            "e2e",
            user_id=user,
            user_name=user.lower(),
            now=NOW + 3,
            policy=policy,
            is_approver=eligible,
        )

    with pytest.raises(Refusal, match="you asked for this waiver"):
        approve_as("U0BOB")
    with pytest.raises(Refusal, match="not one of the approvers"):
        approve_as("U0EVE", eligible=False)
    assert "Automated tests has not passed (failed)" in readiness(release, config, NOW).missing
    approve_as("U0ALICE")
    assert release.gate("e2e").status == "waived"
    assert not any("Automated tests" in m for m in readiness(release, config, NOW).missing)
    releases.queue_deploy(release, "staging", "d2", NOW + 4)  # a new deploy: checked again
    assert release.gate("e2e").status == "pending" and release.gate("e2e").waiver is None
