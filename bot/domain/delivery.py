"""The four delivery figures a team reviews every month (DORA), from what the bot recorded.

- Deployment frequency: successful deploys per environment, and per day.
- Lead time for changes: from each commit of a release to its production deploy.
- Change failure rate: production deploys followed, within the monitoring window, by a
  rollback of production, a hotfix, or a critical incident in production.
- Time to restore: incidents from open to resolved, rollbacks from asked to finished.

The input is the audit trail (entries as `releasebot audit export` writes them) and the commit
times of each production deploy's changes (from git); plain functions, no I/O.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

_RESOLVED_AFTER = re.compile(r" after (\d+(?:\.\d+)?)s$")
_ROLLBACK_TOOK = re.compile(r"(\d+(?:\.\d+)?)s from request to deploy finished")
DAY = 86400.0


@dataclass(frozen=True)
class ProductionDeploy:
    """A successful deploy of `version` to the last environment at `at`."""

    version: str
    at: float


@dataclass(frozen=True)
class Shipped:
    """A version deployed to production (not a rollback, not adopted): its commit, when, and
    the commit production ran before it ("" if none is known)."""

    version: str
    sha: str
    at: float
    base_sha: str


def shipped(history: Sequence[Mapping[str, str]], since: float, until: float) -> list[Shipped]:
    """From production's history (newest first, as the store keeps it), the versions
    shipped in [since, until]; a rollback brings no change, an adopted version was not
    shipped by the bot."""
    found = []
    for n, entry in enumerate(history):
        at = _float(entry.get("deployed_at", "0"))
        if not since <= at <= until or entry.get("rolled_back_from") or entry.get("adopted"):
            continue
        base = history[n + 1].get("sha", "") if n + 1 < len(history) else ""
        found.append(Shipped(entry.get("version", ""), entry.get("sha", ""), at, base))
    return found


def lead_times(
    deploys: Sequence[Shipped], commit_times: Mapping[str, Sequence[float]]
) -> tuple[float, ...]:
    """Per change shipped, the time from its commit to its production deploy.
    `commit_times`: per shipped commit, the commit times of the changes it brought."""
    return tuple(
        max(0.0, deploy.at - committed)
        for deploy in deploys
        for committed in commit_times.get(deploy.sha, ())
    )


@dataclass(frozen=True)
class Report:
    since: float
    until: float
    production: str
    deploys: Mapping[str, int]  # environment -> successful deploys in the period
    lead_times: tuple[float, ...]  # seconds, one per change deployed to production
    production_deploys: int
    failed_changes: int  # production deploys followed by a failure within the window
    restores: tuple[float, ...] = field(default=())  # seconds, one per incident or rollback

    @property
    def days(self) -> float:
        return max((self.until - self.since) / DAY, 1e-9)

    def per_day(self, environment: str) -> float:
        return self.deploys.get(environment, 0) / self.days

    @property
    def lead_time_median(self) -> float | None:
        return statistics.median(self.lead_times) if self.lead_times else None

    @property
    def lead_time_p90(self) -> float | None:
        return _quantile(self.lead_times, 0.9)

    @property
    def change_failure_rate(self) -> float | None:
        return self.failed_changes / self.production_deploys if self.production_deploys else None

    @property
    def restore_median(self) -> float | None:
        return statistics.median(self.restores) if self.restores else None

    def to_dict(self) -> dict[str, object]:
        return {
            "since": self.since,
            "until": self.until,
            "days": round(self.days, 3),
            "deployment_frequency": {
                env: {"deploys": count, "per_day": round(self.per_day(env), 3)}
                for env, count in self.deploys.items()
            },
            "lead_time_seconds": {
                "changes": len(self.lead_times),
                "median": self.lead_time_median,
                "p90": self.lead_time_p90,
            },
            "change_failure_rate": {
                "production_deploys": self.production_deploys,
                "failed": self.failed_changes,
                "rate": self.change_failure_rate,
            },
            "time_to_restore_seconds": {
                "restores": len(self.restores),
                "median": self.restore_median,
            },
        }


def _quantile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile, None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def _at(entry: Mapping[str, str]) -> float:
    return _float(entry.get("at", "0"))


def production_deploys(
    entries: Iterable[Mapping[str, str]], production: str
) -> list[ProductionDeploy]:
    """The successful deploys of the last environment, oldest first."""
    return sorted(
        (
            ProductionDeploy(entry.get("release", ""), _at(entry))
            for entry in entries
            if entry.get("action") == "deploy.finish"
            and entry.get("environment") == production
            and entry.get("outcome") == "succeeded"
        ),
        key=lambda deploy: deploy.at,
    )


def measure(
    entries: Sequence[Mapping[str, str]],
    production: str,
    since: float,
    until: float,
    window_seconds: float,
    changes: Sequence[float],
) -> Report:
    """The figures over the entries made in [since, until]; `changes` are the lead times of
    the changes shipped to production meanwhile (`lead_times`)."""
    inside = [e for e in entries if since <= _at(e) <= until]
    deploys: dict[str, int] = {}
    for entry in inside:
        if entry.get("action") == "deploy.finish" and entry.get("outcome") == "succeeded":
            env = entry.get("environment", "")
            deploys[env] = deploys.get(env, 0) + 1
    deployed = production_deploys(inside, production)
    failures = [_at(e) for e in entries if _is_failure(e, production)]
    failed = sum(
        1
        for deploy in deployed
        if any(deploy.at < moment <= deploy.at + window_seconds for moment in failures)
    )
    return Report(
        since=since,
        until=until,
        production=production,
        deploys=deploys,
        lead_times=tuple(changes),
        production_deploys=len(deployed),
        failed_changes=failed,
        restores=tuple(_restores(inside)),
    )


def _is_failure(entry: Mapping[str, str], production: str) -> bool:
    """What makes a production change count as failed: a rollback of production, a
    hotfix, a critical incident in production."""
    action, outcome = entry.get("action"), entry.get("outcome")
    if action == "hotfix.create":
        return outcome == "ok"  # a hotfix made (not one refused or failed to make)
    if entry.get("environment") != production:
        return False
    if action == "rollback.finish":
        return outcome == "succeeded"
    return action == "incident.open" and outcome == "critical"


def _restores(entries: Iterable[Mapping[str, str]]) -> Iterable[float]:
    """How long each incident lasted, and each rollback took from asked to finished (as the
    bot wrote them in their entries)."""
    for entry in entries:
        reason = entry.get("reason", "")
        if entry.get("action") == "incident.resolve":
            found = _RESOLVED_AFTER.search(reason)
        elif entry.get("action") == "rollback.finish":
            found = _ROLLBACK_TOOK.search(reason)
        else:
            continue
        if found is not None:
            yield float(found.group(1))


def duration(seconds: float | None) -> str:
    """A figure in words: "—", "45s", "12m", "3.5h", "2.1d"."""
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 2 * DAY:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / DAY:.1f}d"


def as_text(report: Report, environments: Sequence[str]) -> str:
    """The report for a terminal: one figure a line, environments in their order."""
    lines = [
        f"Delivery from {_day(report.since)} to {_day(report.until)} ({report.days:.0f} days)",
        "Deployment frequency:",
    ]
    for env in environments:
        count = report.deploys.get(env, 0)
        lines.append(f"  {env}: {count} deploys, {report.per_day(env):.2f} a day")
    lines += [
        f"Lead time for changes: median {duration(report.lead_time_median)}, "
        f"p90 {duration(report.lead_time_p90)} over {len(report.lead_times)} changes",
        f"Change failure rate: {_percent(report.change_failure_rate)} "
        f"({report.failed_changes} of {report.production_deploys} {report.production} deploys)",
        f"Time to restore: median {duration(report.restore_median)} "
        f"over {len(report.restores)} incidents and rollbacks",
    ]
    return "\n".join(lines)


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{100 * rate:.0f}%"


def _day(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")
