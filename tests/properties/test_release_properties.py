"""Property test of the release rules against the real store (real Redis, real transitions).

A hypothesis state machine plays a team: people cut candidates, staging deploys and its
automatic gate pass or fail, random people approve (sometimes with a double click) and reject
the manual gates, the clock moves on so approvals expire, and someone keeps trying
`/release final`. After every step the state stored in Redis is checked against the rules,
written out here independently of `bot.domain.approvals.readiness`: production only ever receives a
candidate that, at that moment, had a successful staging deploy, a passed automatic gate, a
valid approval and no rejection on every manual gate, and two distinct valid approvers from the
list, neither of them its requester. Every successful change must have its audit entry.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings, target
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis

from bot.adapters.redis.store import Store
from bot.domain import approvals, releases
from bot.domain.actors import Actor
from bot.domain.approvals import NoChange
from bot.domain.releases import Approval, Rejection, Release, TransitionError
from tests.helpers.config import STAGING_AND_PRODUCTION, automatic_gate, build_config, manual_gate
from tests.helpers.redis_server import REDIS_URL

T = TypeVar("T")

APPROVERS = ("U0APPR1", "U0APPR2", "U0APPR3", "U0APPR4")
OUTSIDER = "U0OUTSIDER"  # in the workspace, not an approver
REQUESTERS = ("U0REQ1", "U0REQ2")  # cut candidates, may approve nothing
USERS = (*APPROVERS, OUTSIDER, *REQUESTERS)
# Who cuts a candidate (an approver too, so self-approval is tried), and who clicks (anyone):
# weighted so that candidates often gather enough approvals to be promoted, else the checks
# of what production received would rarely have anything to check.
CUTTERS = (*REQUESTERS, OUTSIDER, *APPROVERS)
CLICKERS = (*APPROVERS, *APPROVERS, OUTSIDER, *REQUESTERS)
ACTIONS = (
    ("approve",) * 4
    + ("review",) * 2
    + ("final",) * 2
    + ("time passes",) * 2
    + ("double-click approve", "reject", "rc", "redeploy staging")
)
DEPLOYS = ("succeeded", "succeeded", "succeeded", "failed", "running", "queued")
GATE_RUNS = ("passed", "passed", "passed", "failed", "running")
REQUIRED = 2
VALID_HOURS = 1
AUTOMATIC_GATES = ("e2e",)
MANUAL_GATES = ("qa", "signoff")
START = 1_700_000_000.0

CONFIG = build_config(
    environments=STAGING_AND_PRODUCTION,
    gates=[
        automatic_gate("e2e", "Automated tests"),
        manual_gate("qa", "Manual QA"),
        manual_gate("signoff", "Product sign-off"),
    ],
    approvals={
        "production": {
            "required": REQUIRED,
            "approvers": list(APPROVERS),
            "allow_self_approval": False,
            "valid_hours": VALID_HOURS,
        }
    },
)
POLICY = CONFIG.gate_policy("staging")


def is_approver(user_id: str) -> bool:
    return user_id in POLICY.users


def actor(user_id: str) -> Actor:
    return Actor(user_id=user_id, user_name=user_id.lower(), channel="C0RELEASES")


# --- the rule, independently of bot.domain.approvals ---------------------------------------


def promotion_problems(release: Release, at: float) -> list[str]:
    """What `release` lacked at time `at` to be allowed into production (empty: nothing)."""
    problems: list[str] = []
    if release.superseded_by:
        problems.append(f"superseded by {release.superseded_by}")
    deploy = release.deploys.get("staging")
    if deploy is None or deploy.status != "succeeded":
        problems.append(f"staging deploy {deploy.status if deploy else 'missing'}")
    gates = {g.id: g for g in release.gates}
    horizon = at - VALID_HOURS * 3600
    counted: set[str] = set()
    for gate_id in AUTOMATIC_GATES:
        gate = gates.get(gate_id)
        if gate is None or gate.status != "passed":
            problems.append(f"{gate_id} {gate.status if gate else 'missing'}")
    for gate_id in MANUAL_GATES:
        gate = gates.get(gate_id)
        if gate is None:
            problems.append(f"{gate_id} missing")
            continue
        if gate.rejection is not None:
            problems.append(f"{gate_id} rejected by {gate.rejection.user_id}")
        valid = [a for a in gate.approvals if horizon <= a.at <= at]
        if not valid:
            problems.append(f"{gate_id} has no valid approval")
        counted.update(a.user_id for a in valid)
    for gate in release.gates:
        for approval in gate.approvals:
            if approval.user_id == release.requester:
                problems.append(f"{gate.id} approved by its requester {approval.user_id}")
            if approval.user_id not in APPROVERS:
                problems.append(f"{gate.id} approved by non-approver {approval.user_id}")
    if len(counted) < REQUIRED:
        problems.append(f"{len(counted)} distinct valid approvers, {REQUIRED} required")
    return problems


def expected_approve(release: Release, gate_id: str, user: str, now: float) -> str:
    """ "ok", "nochange" or "refused": what approving should do, by the rules."""
    gate = release.gate(gate_id)
    if (
        release.superseded_by
        or release.final_tag
        or release.promotion
        or release.phase != "active"
        or gate.rejection is not None
        or user == release.requester
        or not is_approver(user)
    ):
        return "refused"
    horizon = now - VALID_HOURS * 3600
    if any(a.user_id == user and a.at >= horizon for a in gate.approvals):
        return "nochange"
    return "ok"


def expected_reject(release: Release, gate_id: str, user: str) -> str:
    if release.superseded_by or release.final_tag or release.promotion or release.phase != "active":
        return "refused"
    if release.gate(gate_id).rejection is not None:
        return "nochange"
    if user != release.requester and not is_approver(user):
        return "refused"
    return "ok"


def outcome(exc: TransitionError | None) -> str:
    if exc is None:
        return "ok"
    return "nochange" if isinstance(exc, NoChange) else "refused"


@dataclass(frozen=True)
class Shipment:
    """Production received `final_version` of candidate `version` at `at`, in state `release`
    (as stored in Redis at that moment)."""

    version: str
    final_version: str
    at: float
    release: Release


STATS: Counter[str] = Counter()


# --- the machine ------------------------------------------------------------------------------


class ReleaseMachine(RuleBasedStateMachine):
    def __init__(self, base_prefix: str = "rbtest:props:", guided: bool = False) -> None:
        super().__init__()
        self.guided = guided
        self.loop = asyncio.new_event_loop()
        self.prefix = f"{base_prefix}{uuid.uuid4().hex[:8]}:"
        self.redis = Redis.from_url(REDIS_URL)
        self.now = START
        self.store = Store(self.redis, self.prefix, clock=lambda: self.now)
        self.versions: list[str] = []  # every candidate, oldest first
        self.changes: Counter[str] = Counter()  # successful writes per release
        self.production: list[Shipment] = []
        self.patch = 0
        self.rc_number = 0
        self.deploys = 0
        self.closest_miss = len(MANUAL_GATES) * 3 + 3  # more than a candidate can lack

    def teardown(self) -> None:
        if self.guided:
            # Steer the search towards runs that promote (those check most), and towards
            # candidates that lack a single thing (the edge of the rule).
            target(float(len(self.production)), label="promotions")
            target(-float(self.closest_miss), label="fewest lacking")

        async def clean() -> None:
            async for key in self.redis.scan_iter(match=f"{self.prefix}*", count=500):
                await self.redis.delete(key)
            await self.redis.aclose()

        self.run(clean())
        self.loop.close()

    # --- helpers --------------------------------------------------------------------------

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    def raw(self, version: str) -> bytes | None:
        return self.run(self.redis.get(self.store.keys.release(version)))

    def stored(self, version: str) -> Release:
        release = self.run(self.store.get_release(version))
        assert release is not None, f"{version} is not stored"
        return release

    def attempt(
        self, version: str, change: Callable[[Release], Any], user: str, action: str, **fields: str
    ) -> TransitionError | None:
        """One change through the store; a refused one must leave the release untouched."""
        before = self.raw(version)
        try:
            self.run(self.store.update_release(version, change, actor(user), action, **fields))
        except TransitionError as exc:
            after = self.raw(version)
            assert after == before, f"refused {action} of {version} changed it: {exc}"
            assert (Release.from_json(after).to_json() if after else None) == (
                Release.from_json(before).to_json() if before else None
            )
            return exc
        self.changes[version] += 1
        return None

    def must(
        self, version: str, change: Callable[[Release], Any], action: str, **fields: str
    ) -> None:
        exc = self.attempt(version, change, "releasebot", action, **fields)
        assert exc is None, f"{action} of {version} failed: {exc}"

    def deploy_staging(self, version: str, deploy: str, gate: str) -> None:
        """Carry a staging deploy of `version` as far as `deploy`, then its automatic gate as
        far as `gate`, as the worker would. A deploy already queued or running is carried on
        (a second one is refused meanwhile); else a new one is queued."""
        current = self.stored(version).deploys.get("staging")
        self.deploys += 1
        deploy_id, status = f"d{self.deploys}", "queued"
        exc = self.attempt(
            version,
            partial(
                releases.queue_deploy, environment="staging", deploy_id=deploy_id, now=self.now
            ),
            "releasebot",
            "deploy.queue",
            environment="staging",
        )
        if exc is not None:
            assert current is not None and current.status in ("queued", "running"), exc
            deploy_id, status = current.id, current.status
        if deploy == "queued":
            return
        if status == "queued":
            self.must(
                version,
                partial(releases.start_deploy, deploy_id=deploy_id, now=self.now),
                "deploy.start",
                environment="staging",
            )
        if deploy == "running":
            return
        self.must(
            version,
            partial(
                releases.finish_deploy, deploy_id=deploy_id, now=self.now, ok=deploy == "succeeded"
            ),
            "deploy.finish",
            environment="staging",
            outcome=deploy,
        )
        if deploy != "succeeded":
            return
        for gate_id in AUTOMATIC_GATES:
            self.must(
                version,
                partial(releases.start_gate, gate_id=gate_id, now=self.now),
                "gate.start",
                environment="staging",
                reason=gate_id,
            )
            if gate == "running":
                continue
            self.must(
                version,
                partial(releases.finish_gate, gate_id=gate_id, now=self.now, ok=gate == "passed"),
                "gate.finish",
                environment="staging",
                outcome=gate,
                reason=gate_id,
            )

    def approve_once(self, version: str, gate_id: str, user: str) -> str:
        expected = expected_approve(self.stored(version), gate_id, user, self.now)
        exc = self.attempt(
            version,
            partial(
                approvals.approve,
                gate_id=gate_id,
                user_id=user,
                user_name=user.lower(),
                now=self.now,
                policy=POLICY,
                is_approver=is_approver(user),
            ),
            user,
            "gate.approve",
            environment="production",
            reason=gate_id,
        )
        got = outcome(exc)
        assert got == expected, f"{user} approving {gate_id} of {version}: {got} ({exc})"
        STATS[f"approve:{got}"] += 1
        return got

    # --- rules ------------------------------------------------------------------------------
    # One rule, whose first choice is the action: Hypothesis's swarm testing switches whole
    # rules off for a run, and runs where time passes but nobody acts, or `final` is tried on
    # candidates nobody may approve, would hardly ever promote anything.

    @initialize(requester=st.sampled_from(CUTTERS))
    def first_candidate(self, requester: str) -> None:
        self.rc(requester, "succeeded", "passed")

    @rule(
        action=st.sampled_from(ACTIONS),
        newest=st.sampled_from([True, True, False]),
        data=st.data(),
        gate=st.sampled_from(MANUAL_GATES),
        user=st.sampled_from(CLICKERS),
    )
    def act(self, action: str, newest: bool, data: st.DataObject, gate: str, user: str) -> None:
        STATS[action] += 1
        if action == "rc":
            self.rc(
                data.draw(st.sampled_from(CUTTERS), label="requester"),
                data.draw(st.sampled_from(DEPLOYS), label="deploy"),
                data.draw(st.sampled_from(GATE_RUNS), label="gate"),
            )
            return
        version = self.pick(data, newest)
        if action == "approve":
            self.approve_once(version, gate, user)
        elif action == "double-click approve":
            self.double_click_approve(version, gate, user)
        elif action == "review":
            others = data.draw(
                st.lists(st.sampled_from(CLICKERS), max_size=2, unique=True), label="with"
            )
            self.review(version, [user, *(u for u in others if u != user)])
        elif action == "reject":
            self.reject(
                version, gate, user, data.draw(st.text(min_size=1, max_size=12), label="reason")
            )
        elif action == "final":
            self.final(version, user)
        elif action == "time passes":
            # Approvals are valid for an hour: land on both sides of that, and on it.
            self.now += data.draw(
                st.sampled_from([60, 300, 900, 1800, 3599, 3600, 3601, 5400]), label="seconds"
            )
        else:
            assert action == "redeploy staging"
            self.deploy_staging(
                version,
                data.draw(st.sampled_from(DEPLOYS), label="deploy"),
                data.draw(st.sampled_from(GATE_RUNS), label="gate"),
            )

    # --- what people do -------------------------------------------------------------------

    def rc(self, requester: str, deploy: str, gate: str) -> None:
        """/release rc: record, activate, supersede the older ones, deploy staging."""
        self.rc_number += 1
        version = f"0.1.{self.patch}-rc.{self.rc_number}"
        release = releases.new_release(
            CONFIG,
            version=version,
            tag=f"v{version}",
            sha=uuid.uuid4().hex + "0" * 8,
            requester=requester,
            requester_name=requester.lower(),
            description="candidate",
            issue=None,
            now=self.now,
        )
        self.run(self.store.create_release(release, actor(requester)))
        self.versions.append(version)
        self.changes[version] += 1
        self.must(
            version,
            partial(releases.activate, channel="C0RELEASES", message_ts=f"{self.now}"),
            "release.tag",
        )
        for older in self.versions[:-1]:
            self.attempt(
                older,
                partial(approvals.supersede, newer=f"v{version}"),
                requester,
                "release.supersede",
                reason=f"superseded by v{version}",
            )
            old = self.stored(older)
            assert old.superseded_by or old.final_tag, f"{older} still open after {version}"
        self.deploy_staging(version, deploy, gate)

    def pick(self, data: st.DataObject, newest: bool) -> str:
        """The newest candidate (the one worth acting on), or any."""
        if newest:
            return self.versions[-1]
        return data.draw(st.sampled_from(self.versions), label="candidate")

    def double_click_approve(self, version: str, gate: str, user: str) -> None:
        first = self.approve_once(version, gate, user)
        second = self.approve_once(version, gate, user)
        assert second != "ok", f"the second click of {user} on {gate} counted again ({first})"

    def review(self, version: str, users: list[str]) -> None:
        """A few people look at a candidate and approve each of its manual gates."""
        for user in users:
            for gate in MANUAL_GATES:
                self.approve_once(version, gate, user)

    def reject(self, version: str, gate: str, user: str, reason: str) -> None:
        expected = expected_reject(self.stored(version), gate, user)
        exc = self.attempt(
            version,
            partial(
                approvals.reject,
                gate_id=gate,
                user_id=user,
                user_name=user.lower(),
                now=self.now,
                reason=reason,
                policy=POLICY,
                is_approver=is_approver(user),
            ),
            user,
            "gate.reject",
            environment="production",
            outcome="rejected",
            reason=f"{gate}: {reason}",
        )
        got = outcome(exc)
        assert got == expected, f"{user} rejecting {gate} of {version}: {got} ({exc})"
        STATS[f"reject:{got}"] += 1

    def final(self, version: str, user: str) -> None:
        """/release final: claim, tag, then production receives what Redis holds."""
        before = self.stored(version)
        ready = (
            not promotion_problems(before, self.now)
            and before.promotion is None
            and before.final_tag is None
        )
        final_version = version.split("-", 1)[0]
        final_tag = f"v{final_version}"
        exc = self.attempt(
            version,
            partial(
                approvals.start_promotion, config=CONFIG, now=self.now, final_version=final_version
            ),
            user,
            "release.promote",
            environment="production",
            outcome="started",
            reason=f"as {final_tag}",
        )
        if exc is not None:
            assert not ready, f"{version} is ready by the rules but was refused: {exc}"
            STATS["final:refused"] += 1
            return
        assert ready, f"{version} was promoted though it lacked: " + "; ".join(
            promotion_problems(before, self.now)
        )
        self.must(
            version,
            partial(approvals.finish_promotion, final_tag=final_tag),
            "release.final-tag",
            environment="production",
        )
        # "Deploy to production": what production receives is what Redis holds right now.
        shipped = self.stored(version)
        self.production.append(
            Shipment(version=version, final_version=final_version, at=self.now, release=shipped)
        )
        self.run(
            self.store.set_environment_version("production", final_version, final_tag, shipped.sha)
        )
        self.must(version, releases.go_live, "release.live", environment="production")
        STATS["final:shipped"] += 1
        self.patch += 1  # the next candidate is of the next version
        self.rc_number = 0

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def stored_state_obeys_the_rules(self) -> None:
        check_stored_state(self)


def check_stored_state(machine: ReleaseMachine) -> None:
    """Every rule, checked against what Redis holds (not against the model)."""
    stored = {v: machine.stored(v) for v in machine.versions}
    recorded = machine.run(machine.redis.zrange(machine.store.keys.releases, 0, -1))
    assert sorted(v.decode() for v in recorded) == sorted(machine.versions)

    for version, release in stored.items():
        # One revision per successful change: nothing was written behind our back or lost.
        assert release.rev == machine.changes[version], (version, release.rev)
        for gate in release.gates:
            users = [a.user_id for a in gate.approvals]
            assert len(users) == len(set(users)), f"{version} {gate.id} twice by one: {users}"
            assert release.requester not in users, f"{version} {gate.id} self-approved"
            assert set(users) <= set(APPROVERS), f"{version} {gate.id} approved by {users}"
            if gate.automatic:
                assert not gate.approvals and gate.rejection is None, (version, gate)
        if release.superseded_by:
            assert release.promotion is None and release.final_tag is None, version
        if release.final_tag:
            assert release.promotion == "done", version
        # The bot's own verdict agrees with the rule, whether or not anyone tries `final` now.
        lacking = promotion_problems(release, machine.now)
        may = not lacking and release.promotion is None and release.final_tag is None
        verdict = approvals.readiness(release, CONFIG, machine.now)
        assert verdict.ready == may, (version, lacking, verdict.missing)
        if lacking and release.promotion is None and not release.superseded_by:
            machine.closest_miss = min(machine.closest_miss, len(lacking))

    # Promotions: each one shipped once, as it should have been at that moment, and it stays so.
    shipped = [s.version for s in machine.production]
    assert len(shipped) == len(set(shipped)), f"promoted twice: {shipped}"
    finals = [s.final_version for s in machine.production]
    assert len(finals) == len(set(finals)), f"a final version shipped twice: {finals}"
    assert sorted(v for v, r in stored.items() if r.promotion or r.final_tag) == sorted(shipped)
    for shipment in machine.production:
        problems = promotion_problems(shipment.release, shipment.at)
        assert not problems, f"production received {shipment.version} lacking: {problems}"
        assert shipment.release.final_tag == f"v{shipment.final_version}"
        now = stored[shipment.version]
        assert now.superseded_by is None and now.final_tag == shipment.release.final_tag
    versions = machine.run(machine.store.environment_versions(["production"]))["production"]
    if machine.production:
        assert versions["version"] == machine.production[-1].final_version
    else:
        assert versions == {}

    # Only the newest candidate may still be open; in flight is exactly what is not done.
    open_ = [
        v
        for v, r in stored.items()
        if r.phase == "active" and not r.superseded_by and not r.final_tag
    ]
    assert open_ in ([], machine.versions[-1:]), f"open candidates: {open_}"
    in_flight = machine.run(machine.store.releases_in_flight())
    assert sorted(r.version for r in in_flight) == sorted(
        v for v, r in stored.items() if r.phase != "done"
    )

    # The audit stream: an entry for every successful change, per release exactly as many.
    entries = machine.run(machine.store.audit_entries())
    assert len(entries) >= sum(machine.changes.values())
    per_release = Counter(e["release"] for e in entries)
    for version in machine.versions:
        assert per_release[version] == machine.changes[version], (
            version,
            per_release[version],
            machine.changes[version],
        )
    if machine.versions:
        newest = machine.versions[-1]
        assert len(machine.run(machine.store.audit_entries(newest))) == machine.changes[newest]


# --- tests ------------------------------------------------------------------------------------


# Passing takes ~10 s. When it finds a bug, Hypothesis shrinks the failing run against Redis,
# which can take minutes; the shrunk run is the report worth waiting for.
@pytest.mark.timeout(600)
def test_release_rules_hold_whatever_people_click(prefix: str) -> None:
    STATS.clear()
    run_state_machine_as_test(
        lambda: ReleaseMachine(prefix, guided=True),
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            # Fixed examples, so the non-vacuity checks never depend on luck.
            derandomize=True,
            database=None,
            report_multiple_bugs=False,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    # Not vacuous: candidates were promoted, and refused, and approvals went every way.
    assert STATS["final:shipped"] > 0 and STATS["final:refused"] > 0, STATS
    for key in ("approve:ok", "approve:refused", "approve:nochange", "reject:ok"):
        assert STATS[key] > 0, STATS

    async def leftovers() -> list[bytes]:
        client = Redis.from_url(REDIS_URL)
        try:
            return [key async for key in client.scan_iter(match=f"{prefix}*")]
        finally:
            await client.aclose()

    assert asyncio.run(leftovers()) == []


def approved_release() -> Release:
    """A candidate with everything production needs, at START + 60."""
    release = releases.new_release(
        CONFIG,
        version="0.1.0-rc.1",
        tag="v0.1.0-rc.1",
        sha="a" * 40,
        requester="U0REQ1",
        requester_name="req1",
        description="",
        issue=None,
        now=START,
    )
    releases.activate(release)
    releases.queue_deploy(release, "staging", "d1", START)
    releases.start_deploy(release, "d1", START)
    releases.finish_deploy(release, "d1", START, ok=True)
    releases.start_gate(release, "e2e", START)
    releases.finish_gate(release, "e2e", START, ok=True)
    release.gate("qa").approvals = [Approval("U0APPR1", "appr1", START)]
    release.gate("signoff").approvals = [Approval("U0APPR2", "appr2", START)]
    return release


def _promote_without_approvals(r: Release) -> None:
    for gate_id in MANUAL_GATES:
        r.gate(gate_id).approvals = []


def _one_approver(r: Release) -> None:
    r.gate("signoff").approvals = [Approval("U0APPR1", "appr1", START)]


def _self_approved(r: Release) -> None:
    r.requester = "U0APPR2"


def _outsider(r: Release) -> None:
    r.gate("signoff").approvals = [Approval(OUTSIDER, "outsider", START)]


def _expired(r: Release) -> None:
    r.gate("qa").approvals = [Approval("U0APPR1", "appr1", START - 3600)]


def _rejected(r: Release) -> None:
    r.gate("qa").rejection = Rejection("U0APPR3", "appr3", START, "broken login")


def _staging_failed(r: Release) -> None:
    r.deploys["staging"].status = "failed"


def _automatic_gate_failed(r: Release) -> None:
    r.gate("e2e").status = "failed"


def _superseded(r: Release) -> None:
    r.superseded_by = "v0.1.0-rc.2"


@pytest.mark.parametrize(
    "spoil",
    [
        _promote_without_approvals,
        _one_approver,
        _self_approved,
        _outsider,
        _expired,
        _rejected,
        _staging_failed,
        _automatic_gate_failed,
        _superseded,
    ],
)
def test_the_checker_flags_each_missing_condition(spoil: Callable[[Release], None]) -> None:
    good = approved_release()
    assert promotion_problems(good, START + 60) == []
    spoil(good)
    assert promotion_problems(good, START + 60) != []


def test_the_machine_catches_a_promotion_without_approvals(prefix: str) -> None:
    """A release promoted by direct mutation, with no approvals, fails the stored-state check."""
    machine = ReleaseMachine(prefix)
    try:
        machine.rc(requester="U0REQ1", deploy="succeeded", gate="passed")
        check_stored_state(machine)  # a fresh candidate is fine
        version = machine.versions[-1]
        release = machine.stored(version)
        assert promotion_problems(release, machine.now) != []
        # What a broken promotion would write: promoted as final, no approvals at all.
        release.promotion, release.final_version, release.final_tag = "done", "0.1.0", "v0.1.0"
        release.rev += 1
        machine.run(machine.redis.set(machine.store.keys.release(version), release.to_json()))
        machine.run(machine.store.audit(actor("U0REQ1"), "release.promote", release=version))
        machine.changes[version] += 1
        machine.production.append(
            Shipment(
                version=version,
                final_version="0.1.0",
                at=machine.now,
                release=machine.stored(version),
            )
        )
        machine.run(
            machine.store.set_environment_version("production", "0.1.0", "v0.1.0", release.sha)
        )
        with pytest.raises(AssertionError, match="lacking"):
            check_stored_state(machine)
    finally:
        machine.teardown()


def test_a_rejection_while_the_final_tag_is_made_is_refused_or_stops_it(prefix: str) -> None:
    machine = ReleaseMachine(prefix)
    try:
        machine.rc("U0REQ1", "succeeded", "passed")
        version = machine.versions[-1]
        machine.review(version, ["U0APPR1", "U0APPR2"])
        claimed = machine.attempt(
            version,
            partial(
                approvals.start_promotion, config=CONFIG, now=machine.now, final_version="0.1.0"
            ),
            "U0REQ1",
            "release.promote",
        )
        assert claimed is None
        # The final tag is being pushed (seconds, in the bot) when U0APPR3 clicks Reject.
        rejected = (
            machine.attempt(
                version,
                partial(
                    approvals.reject,
                    gate_id="qa",
                    user_id="U0APPR3",
                    user_name="appr3",
                    now=machine.now,
                    reason="login broken",
                    policy=POLICY,
                    is_approver=True,
                ),
                "U0APPR3",
                "gate.reject",
            )
            is None
        )
        promoted = (
            machine.attempt(
                version,
                partial(approvals.finish_promotion, final_tag="v0.1.0"),
                "releasebot",
                "release.final-tag",
            )
            is None
        )
        assert not (rejected and promoted), (
            "the rejection was accepted, and the candidate promoted anyway: "
            f"{promotion_problems(machine.stored(version), machine.now)}"
        )
    finally:
        machine.teardown()
