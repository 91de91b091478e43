"""The delivery figures (DORA) against a recorded month whose answers are worked out by hand."""

from __future__ import annotations

import json

from bot.domain.delivery import as_text, lead_times, measure, shipped

DAY = 86400.0
T0 = 1_790_000_000.0  # the period starts here and lasts 10 days
WINDOW = 3600.0


def entry(at: float, action: str, environment: str = "", outcome: str = "ok", **more: str):
    return {
        "at": f"{at:.3f}",
        "action": action,
        "environment": environment,
        "outcome": outcome,
        **more,
    }


ENTRIES = [
    entry(T0 - DAY, "deploy.finish", "production", "succeeded"),  # before the period
    entry(T0 + 1 * DAY, "deploy.finish", "staging", "succeeded"),
    entry(T0 + 1 * DAY + 600, "deploy.finish", "staging", "failed"),
    entry(T0 + 2 * DAY, "deploy.finish", "production", "succeeded", release="1.1.0"),
    # Within the hour after it: a critical incident, resolved after 20 minutes.
    entry(T0 + 2 * DAY + 600, "incident.open", "production", "critical", reason="api: HTTP 503"),
    entry(T0 + 2 * DAY + 1800, "incident.resolve", "production", reason="api after 1200s"),
    entry(T0 + 4 * DAY, "deploy.finish", "staging", "succeeded"),
    entry(T0 + 5 * DAY, "deploy.finish", "production", "succeeded", release="1.2.0"),
    # A warning two hours later: neither in the window nor critical.
    entry(T0 + 5 * DAY + 7200, "incident.open", "production", "warning", reason="slow"),
    entry(T0 + 7 * DAY, "deploy.finish", "production", "succeeded", release="1.3.0"),
    # Rolled back 30 minutes later; the rollback took 300 s from asked to finished.
    entry(
        T0 + 7 * DAY + 1800,
        "rollback.finish",
        "production",
        "succeeded",
        reason="exit 0; 300.0s from request to deploy finished",
    ),
    entry(T0 + 8 * DAY, "deploy.finish", "production", "succeeded", release="1.4.0"),
    entry(T0 + 8 * DAY + 60, "hotfix.create", "", "refused"),  # refused: no failure
]

# Production's history, newest first, as the store keeps it.
HISTORY = [
    {"version": "1.4.0", "sha": "d" * 40, "deployed_at": f"{T0 + 8 * DAY:.3f}"},
    {
        "version": "1.2.0",
        "sha": "b" * 40,
        "deployed_at": f"{T0 + 7 * DAY + 1800:.3f}",
        "rolled_back_from": "1.3.0",
    },
    {"version": "1.3.0", "sha": "c" * 40, "deployed_at": f"{T0 + 7 * DAY:.3f}"},
    {"version": "1.2.0", "sha": "b" * 40, "deployed_at": f"{T0 + 5 * DAY:.3f}"},
    {"version": "1.1.0", "sha": "a" * 40, "deployed_at": f"{T0 + 2 * DAY:.3f}"},
    {"version": "1.0.0", "sha": "0" * 40, "deployed_at": f"{T0 - DAY:.3f}"},
]


def test_a_month_of_releases_gives_the_figures_worked_out_by_hand():
    deploys = shipped(HISTORY, T0, T0 + 10 * DAY)
    # The rollback ships nothing; 1.4.0's changes are those since what ran before it (1.2.0).
    assert [(d.version, d.base_sha[0]) for d in deploys] == [
        ("1.4.0", "b"),
        ("1.3.0", "b"),
        ("1.2.0", "a"),
        ("1.1.0", "0"),
    ]
    commits = {
        "a" * 40: [T0 + 2 * DAY - 3600, T0 + 2 * DAY - 7200],  # 1 h and 2 h before
        "b" * 40: [T0 + 5 * DAY - DAY],  # a day before
        "c" * 40: [T0 + 7 * DAY - 1800],  # 30 min before
        "d" * 40: [T0 + 8 * DAY - 4 * 3600, T0 + 8 * DAY - 3600],  # 4 h and 1 h before
    }
    changes = lead_times(deploys, commits)
    assert sorted(changes) == [1800, 3600, 3600, 7200, 14400, DAY]
    report = measure(ENTRIES, "production", T0, T0 + 10 * DAY, WINDOW, changes)
    assert report.deploys == {"staging": 2, "production": 4}
    assert report.per_day("production") == 0.4 and report.per_day("staging") == 0.2
    assert report.lead_time_median == 5400  # between 3600 and 7200
    assert report.lead_time_p90 == DAY
    # 1.1.0 (critical incident within the hour) and 1.3.0 (rolled back) failed; 1.2.0's
    # warning came too late and was no critical one; 1.4.0's hotfix was refused.
    assert (report.failed_changes, report.production_deploys) == (2, 4)
    assert report.change_failure_rate == 0.5
    assert sorted(report.restores) == [300.0, 1200.0] and report.restore_median == 750.0
    figures = report.to_dict()
    assert json.loads(json.dumps(figures))["change_failure_rate"]["rate"] == 0.5
    text = as_text(report, ["staging", "production"])
    assert "production: 4 deploys, 0.40 a day" in text
    assert "Change failure rate: 50% (2 of 4 production deploys)" in text
    assert "Lead time for changes: median 1.5h, p90 24.0h over 6 changes" in text


def test_a_quiet_period_has_no_figures_rather_than_wrong_ones():
    report = measure([], "production", T0, T0 + DAY, WINDOW, ())
    assert report.change_failure_rate is None and report.lead_time_median is None
    assert "Time to restore: median — over 0" in as_text(report, ["production"])
