"""A gate passed by the team's CI, judged on its own; while it waits, its checklist line says
for what."""

from __future__ import annotations

import pytest

from bot.blocks.release import gate_line
from bot.domain import releases
from bot.domain.ci_checks import ALL, NAMED, CiCheck, judge, listed
from bot.domain.releases import Gate
from tests.helpers.releases import recorded

E2E = CiCheck("ci/e2e", "success")
A11Y = CiCheck("Accessibility", "success")
LINT = CiCheck("lint", "failure", "failure", "https://ci.example/lint/7")


def test_it_waits_while_a_required_context_is_pending_or_missing_then_passes():
    waiting = judge([CiCheck("ci/e2e", "pending")], ("ci/e2e", "Accessibility"), (), 10, 600)
    assert waiting.outcome == "waiting"
    assert waiting.waiting_for == ("ci/e2e", "Accessibility")
    assert waiting.detail == "waiting for ci/e2e, Accessibility"
    passed = judge([E2E, A11Y, LINT], ("ci/e2e", "Accessibility"), (), 20, 600)
    assert passed.outcome == "passed" and passed.detail == "CI passed: ci/e2e, Accessibility"


def test_a_failure_fails_at_once_with_its_link_unless_allowed():
    failed = judge([E2E, LINT], (ALL,), (), 5, 600)
    assert failed.outcome == "failed" and failed.detail == "lint: failure https://ci.example/lint/7"
    allowed = judge([E2E, LINT], (ALL,), ("lint",), 5, 600)
    assert allowed.outcome == "passed"
    assert "lint: failure https://ci.example/lint/7, allowed to fail" in allowed.detail


def test_the_newest_report_of_a_context_counts():
    rerun = [CiCheck("ci/e2e", "success"), CiCheck("ci/e2e", "failure", "failure")]
    assert judge(rerun, ("ci/e2e",), (), 1, 600).outcome == "passed"


def test_at_the_timeout_what_never_reported_or_is_still_pending_fails_the_gate():
    late = judge([CiCheck("ci/e2e", "pending")], ("ci/e2e", "Accessibility"), (), 600, 600)
    assert late.outcome == "failed"
    assert late.detail == "after 600s, never reported: Accessibility; still pending: ci/e2e"
    nothing = judge([], (ALL,), (), 30, 600)
    assert nothing.outcome == "waiting" and nothing.waiting_for == ("any check",)
    assert judge([], (ALL,), (), 600, 600).detail == "after 600s, never reported: any check"


def test_a_long_list_of_pending_contexts_is_cut_with_how_many_more():
    contexts = tuple(f"integration/shard-{n:02}" for n in range(30))
    waiting = judge([], contexts, (), 10, 600)
    assert waiting.waiting_for == contexts  # all of them, for whoever reads the verdict
    assert waiting.detail.startswith("waiting for integration/shard-00, integration/shard-01")
    shown = waiting.detail.removeprefix("waiting for ").rsplit(" and ", 1)[0]
    assert len(shown) <= NAMED
    named = shown.count("integration/shard-")
    assert waiting.detail.endswith(f" and {30 - named} more") and 1 < named < 30
    assert listed(["ci/e2e", "Accessibility"]) == "ci/e2e, Accessibility"
    assert listed(["x" * 500, "y"]) == "x" * (NAMED - 1) + "… and 1 more"


def test_a_waiting_gate_keeps_what_it_waits_for_until_it_is_decided():
    release = recorded("0.15.0-rc.1", created_at=1.0)
    release.gates = [Gate("ci", "CI checks", "staging", True)]
    with pytest.raises(releases.TransitionError):  # not running yet
        releases.note_waiting(release, "ci", "waiting for ci/e2e")
    releases.start_gate(release, "ci", 2.0)
    assert gate_line(release.gate("ci")) == "⏳ CI checks — running"
    releases.note_waiting(release, "ci", "waiting for ci/e2e, Accessibility")
    assert gate_line(release.gate("ci")) == "⏳ CI checks — waiting for ci/e2e, Accessibility"
    with pytest.raises(releases.NoChange):  # the same again: nothing to write
        releases.note_waiting(release, "ci", "waiting for ci/e2e, Accessibility")
    releases.note_waiting(release, "ci", "waiting for <Accessibility>")
    assert gate_line(release.gate("ci")) == "⏳ CI checks — waiting for &lt;Accessibility&gt;"
    releases.finish_gate(release, "ci", 5.0, ok=True, detail="CI passed: ci/e2e, Accessibility")
    assert gate_line(release.gate("ci")) == "✅ CI checks — passed in 3.0s"
    with pytest.raises(releases.TransitionError):  # decided: a late look changes nothing
        releases.note_waiting(release, "ci", "waiting for ci/e2e")
