"""Property test of the emergency paths against the real store: hotfixes and rollbacks.

Random people cut hotfixes of what runs in production, approve them (twice, sometimes), try
`/release final`, ask for rollbacks and approve them. After every step, from what Redis holds,
by rules written out here: production only received a hotfix with its own gate set passed and
its own approval count from eligible people other than its requester, and only a rollback with
the approvals `[rollback]` sets, from approvers, each counted once. Every successful change has
its audit entry.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections import Counter
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

from bot.adapters.redis.store import Store
from bot.domain import approvals, releases, rollbacks
from bot.domain.actors import Actor
from bot.domain.releases import Release, TransitionError
from bot.domain.rollbacks import RollbackRequest
from tests.helpers.config import STAGING_AND_PRODUCTION, automatic_gate, build_config, manual_gate
from tests.helpers.redis_server import REDIS_URL

T = TypeVar("T")

APPROVERS = ("U0APPR1", "U0APPR2", "U0APPR3")
USERS = (*APPROVERS, "U0OUTSIDER", "U0REQ")
ROLLBACK_REQUIRED = 2
# Weighted so that hotfixes often get far enough to be shipped: else little is checked.
CLICKERS = (*APPROVERS, *APPROVERS, "U0OUTSIDER", "U0REQ")
MOSTLY_TRUE = st.sampled_from([True, True, True, False])
CONFIG = build_config(
    environments=STAGING_AND_PRODUCTION,
    gates=[
        automatic_gate("e2e", "Automated tests"),
        automatic_gate("infra", "Infrastructure validation"),
        manual_gate("qa", "Manual QA"),
        manual_gate("perf", "Performance"),
    ],
    approvals={"production": {"required": 2, "approvers": list(APPROVERS)}},
    rollback={"required": ROLLBACK_REQUIRED},
    hotfix={"gates": ["e2e", "qa"], "required": 1},
)
HOTFIX_POLICY = CONFIG.release_policy("hotfix", "staging")
ROLLBACK_POLICY = rollbacks.rollback_policy(CONFIG, "production")
START = 1_700_000_000.0
STATS: Counter[str] = Counter()


def actor(user: str) -> Actor:
    return Actor(user, user.lower(), "C0RELEASES")


def hotfix_problems(release: Release, at: float) -> list[str]:
    """What a hotfix lacked to go to production: written out here, not taken from the bot."""
    problems = []
    if release.kind != "hotfix":
        problems.append("not a hotfix")
    if release.superseded_by:
        problems.append("superseded")
    if [g.id for g in release.gates] != ["e2e", "qa"]:
        problems.append(f"gate set {[g.id for g in release.gates]}")
    deploy = release.deploys.get("staging")
    if deploy is None or deploy.status != "succeeded":
        problems.append("staging not deployed")
    approvers: set[str] = set()
    for gate in release.gates:
        if gate.automatic and gate.status != "passed":
            problems.append(f"{gate.id} {gate.status}")
        if not gate.automatic:
            valid = [a for a in gate.approvals if at - 72 * 3600 <= a.at <= at]
            if gate.rejection is not None or not valid:
                problems.append(f"{gate.id} not approved")
            for approval in valid:
                if approval.user_id == release.requester or approval.user_id not in APPROVERS:
                    problems.append(f"{gate.id} approved by {approval.user_id}")
                approvers.add(approval.user_id)
    if len(approvers) < 1:
        problems.append("no approver")
    return problems


class EmergencyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.prefix = f"rbtest:emergency:{uuid.uuid4().hex[:8]}:"
        self.redis = Redis.from_url(REDIS_URL)
        self.now = START
        self.store = Store(self.redis, self.prefix, clock=lambda: self.now)
        self.hotfixes: list[str] = []
        self.requests: list[str] = []
        self.successes = 0  # successful changes, each of which must have an audit entry
        # What production received: ("hotfix"|"rollback", the state then, the time then).
        self.shipped: list[tuple[str, Release | RollbackRequest, float]] = []
        self.patch = 0
        # The model of what is known bad in production: rolled back from, or failed there.
        self.known_bad: set[str] = set()

    def teardown(self) -> None:
        async def clean() -> None:
            async for key in self.redis.scan_iter(match=f"{self.prefix}*", count=500):
                await self.redis.delete(key)
            await self.redis.aclose()

        self.run(clean())
        self.loop.close()

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    def change(self, version: str, fn: object, user: str, action: str) -> bool:
        before = self.run(self.redis.get(self.store.keys.release(version)))
        try:
            self.run(self.store.update_release(version, fn, actor(user), action))  # type: ignore[arg-type]
        except TransitionError:
            assert self.run(self.redis.get(self.store.keys.release(version))) == before
            return False
        self.successes += 1
        return True

    def ship(self, version: str, tag: str, sha: str, rolled_back_from: str = "") -> None:
        self.run(
            self.store.set_environment_version(
                "production", version, tag, sha, rolled_back_from=rolled_back_from
            )
        )

    @initialize()
    def production_runs_something(self) -> None:
        for version in ("0.9.0", "1.0.0"):
            self.ship(version, f"v{version}", secrets.token_hex(20))

    @rule(requester=st.sampled_from(USERS), deploy_ok=MOSTLY_TRUE, gate_ok=MOSTLY_TRUE)
    def hotfix(self, requester: str, deploy_ok: bool, gate_ok: bool) -> None:
        self.patch += 1
        version = f"1.0.{self.patch}-rc.1"
        release = releases.new_release(
            CONFIG,
            version=version,
            tag=f"v{version}",
            sha=secrets.token_hex(20),
            requester=requester,
            requester_name=requester.lower(),
            description="fix",
            issue=None,
            now=self.now,
            kind="hotfix",
        )
        self.run(self.store.create_release(release, actor(requester)))
        self.successes += 1
        self.hotfixes.append(version)
        assert self.change(
            version,
            partial(releases.activate, channel="C", message_ts="1"),
            requester,
            "release.tag",
        )
        for older in self.hotfixes[:-1]:
            self.change(
                older,
                partial(approvals.supersede, newer=f"v{version}"),
                requester,
                "release.supersede",
            )
        for step in (
            partial(releases.queue_deploy, environment="staging", deploy_id="d", now=self.now),
            partial(releases.start_deploy, deploy_id="d", now=self.now),
            partial(releases.finish_deploy, deploy_id="d", now=self.now, ok=deploy_ok),
        ):
            assert self.change(version, step, "releasebot", "deploy")
        if deploy_ok:
            assert self.change(
                version,
                partial(releases.start_gate, gate_id="e2e", now=self.now),
                "releasebot",
                "gate.start",
            )
            assert self.change(
                version,
                partial(releases.finish_gate, gate_id="e2e", now=self.now, ok=gate_ok),
                "releasebot",
                "gate.finish",
            )

    @rule(user=st.sampled_from(CLICKERS), twice=st.booleans(), which=st.integers(0, 3))
    def approve_hotfix(self, user: str, twice: bool, which: int) -> None:
        if not self.hotfixes:
            return
        version = self.hotfixes[-1 - which % len(self.hotfixes)]
        for _ in range(2 if twice else 1):
            ok = self.change(
                version,
                partial(
                    approvals.approve,
                    gate_id="qa",
                    user_id=user,
                    user_name=user.lower(),
                    now=self.now,
                    policy=HOTFIX_POLICY,
                    is_approver=user in APPROVERS,
                ),
                user,
                "gate.approve",
            )
            STATS[f"hotfix approve {ok}"] += 1

    @rule(approver=st.sampled_from(APPROVERS), user=st.sampled_from(USERS))
    def approve_then_final(self, approver: str, user: str) -> None:
        """What usually happens in an emergency: someone approves the newest, then final."""
        self.approve_hotfix(approver, False, 0)
        self.final(user, 0)

    @rule(user=st.sampled_from(USERS), which=st.sampled_from([0, 0, 0, 1]))
    def final(self, user: str, which: int) -> None:
        if not self.hotfixes:
            return
        version = self.hotfixes[-1 - which % len(self.hotfixes)]
        state = self.run(self.store.get_release(version))
        assert state is not None
        final_version = version.split("-")[0]
        if not self.change(
            version,
            partial(
                approvals.start_promotion, config=CONFIG, now=self.now, final_version=final_version
            ),
            user,
            "release.promote",
        ):
            STATS["final refused"] += 1
            return
        assert self.change(
            version,
            partial(approvals.finish_promotion, final_tag=f"v{final_version}"),
            user,
            "release.final-tag",
        )
        self.shipped.append(("hotfix", state, self.now))
        self.ship(final_version, f"v{final_version}", state.sha)
        STATS["hotfix shipped"] += 1

    @rule(user=st.sampled_from(USERS))
    def ask_for_rollback(self, user: str) -> None:
        history = self.run(self.store.environment_history("production"))
        try:
            target = rollbacks.choose_target(history, "production", None, "v")
        except approvals.Refusal:
            STATS["rollback target refused"] += 1
            return
        # Never back to a version rolled back from or failed there, over any sequence.
        assert target.entry["version"] not in self.known_bad, (target, self.known_bad)
        request = RollbackRequest(
            id=uuid.uuid4().hex[:8],
            environment="production",
            to_version=target.entry["version"],
            to_tag=target.entry["tag"],
            to_sha=target.entry["sha"],
            from_version=rollbacks.deploys(history)[0]["version"],
            from_release="",
            reason="errors",
            requester=user,
            requester_name=user.lower(),
            requested_at=self.now,
        )
        self.run(self.store.create_rollback(request, actor(user)))
        self.successes += 1
        self.requests.append(request.id)
        if user in APPROVERS:  # asking counts as approving, for an approver
            self.approve_rollback(user, 0)

    @rule(user=st.sampled_from(USERS), which=st.integers(0, 3))
    def approve_rollback(self, user: str, which: int) -> None:
        if not self.requests:
            return
        request_id = self.requests[-1 - which % len(self.requests)]
        try:
            request, _ = self.run(
                self.store.update_rollback(
                    request_id,
                    partial(
                        rollbacks.approve,
                        user_id=user,
                        user_name=user.lower(),
                        now=self.now,
                        eligible=user in APPROVERS,
                    ),
                    actor(user),
                    "rollback.approve",
                )
            )
        except TransitionError:
            STATS["rollback approve refused"] += 1
            return
        self.successes += 1
        try:
            request, _ = self.run(
                self.store.update_rollback(
                    request_id,
                    partial(rollbacks.start, policy=ROLLBACK_POLICY),
                    actor(user),
                    "rollback.start",
                )
            )
        except TransitionError:
            return  # not enough approvals yet
        self.successes += 1
        self.shipped.append(("rollback", request, self.now))
        self.ship(
            request.to_version,
            request.to_tag,
            request.to_sha,
            rolled_back_from=request.from_version,
        )
        self.known_bad.add(request.from_version)
        self.run(
            self.store.update_rollback(
                request_id,
                partial(rollbacks.finish, ok=True, now=self.now),
                actor(user),
                "rollback.finish",
            )
        )
        self.successes += 1
        STATS["rollback shipped"] += 1

    @rule()
    def production_fails(self) -> None:
        """What runs fails its gates or its monitoring window in production."""
        runs = self.run(self.store.environment_versions(["production"]))["production"]
        self.run(self.store.mark_failed_in("production", runs["version"], runs["tag"], "gate"))
        self.known_bad.add(runs["version"])
        STATS["failed in production"] += 1

    @rule(seconds=st.sampled_from([60, 3600, 80 * 3600]))
    def time_passes(self, seconds: int) -> None:
        self.now += seconds

    @invariant()
    def production_only_got_what_was_approved(self) -> None:
        for kind, state, at in self.shipped:
            if isinstance(state, Release):
                assert kind == "hotfix"
                problems = hotfix_problems(state, at)
                assert not problems, f"production received {state.version}: {problems}"
            else:
                users = [a.user_id for a in state.approvals]
                assert len(users) == len(set(users)), users
                assert set(users) <= set(APPROVERS), users
                assert len(users) >= ROLLBACK_REQUIRED, users
        # Each rollback request ran at most once.
        started = [s.id for _, s, _ in self.shipped if isinstance(s, RollbackRequest)]
        assert len(started) == len(set(started))
        versions = self.run(self.store.environment_versions(["production"]))["production"]
        if self.shipped:
            last = self.shipped[-1][1]
            assert versions["version"] == (
                last.to_version if isinstance(last, RollbackRequest) else last.version.split("-")[0]
            )
        entries = self.run(self.store.audit_entries())
        assert len(entries) == self.successes, (len(entries), self.successes)


def test_hotfixes_and_rollbacks_ship_only_with_their_approvals() -> None:
    STATS.clear()
    run_state_machine_as_test(
        EmergencyMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=30,
            deadline=None,
            # Fixed examples: the non-vacuity checks below must not
            # depend on luck (a random run sometimes shipped no hotfix).
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    assert STATS["hotfix shipped"] and STATS["final refused"], STATS
    assert STATS["rollback shipped"] and STATS["rollback approve refused"], STATS
    assert STATS["failed in production"] and STATS["rollback target refused"], STATS


def test_the_hotfix_checker_is_not_vacuous() -> None:
    release = releases.new_release(
        CONFIG,
        version="1.0.1-rc.1",
        tag="v1.0.1-rc.1",
        sha="a",
        requester="U0REQ",
        requester_name="req",
        description="",
        issue=None,
        now=START,
        kind="hotfix",
    )
    assert "staging not deployed" in hotfix_problems(release, START)
    assert "qa not approved" in hotfix_problems(release, START)
    release.gate("qa").approvals.append(releases.Approval("U0REQ", "req", START))
    assert "qa approved by U0REQ" in hotfix_problems(release, START)
