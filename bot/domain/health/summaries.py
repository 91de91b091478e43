"""Figures over check results: percentiles, sparklines, the verdict of the monitoring window
after a deploy of the last environment, and the lines of `/release health`. Plain functions,
no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.domain.config import MonitoringConfig
from bot.domain.health.checks import Result
from bot.domain.health.incidents import DEPLOY_CHECK, CheckState

BARS = "▁▂▃▄▅▆▇█"


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def sparkline(values: Sequence[float], width: int = 24) -> str:
    """Values (oldest first) squeezed into `width` buckets, each its bucket's highest value."""
    if not values:
        return ""
    size = max(1, math.ceil(len(values) / width))
    buckets = [max(values[i : i + size]) for i in range(0, len(values), size)]
    low, high = min(buckets), max(buckets)
    if high - low < 1e-9:
        return BARS[0] * len(buckets)
    return "".join(
        BARS[min(len(BARS) - 1, int((v - low) / (high - low) * len(BARS)))] for v in buckets
    )


@dataclass(frozen=True)
class WindowSummary:
    environment: str
    version: str
    previous_version: str
    checks_run: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None
    previous_p50_ms: float | None
    previous_p95_ms: float | None
    sparkline: str
    verdict: str  # healthy | degraded | rolled back

    @property
    def error_rate(self) -> float:
        return 100.0 * self.failures / self.checks_run if self.checks_run else 0.0


def summarize(
    environment: str,
    version: str,
    previous_version: str,
    during: list[Result],
    before: list[Result],
    rolled_back: bool,
    cfg: MonitoringConfig,
) -> WindowSummary:
    """`during`: results of the window (oldest first); `before`: results of the previous
    version, to compare with."""
    good = [r.ms for r in during if r.ok]
    earlier = [r.ms for r in before if r.ok]
    failures = sum(1 for r in during if not r.ok)
    p50, p95 = percentile(good, 50), percentile(good, 95)
    old_p50, old_p95 = percentile(earlier, 50), percentile(earlier, 95)
    verdict = judge_window(len(during), failures, p95, old_p95, rolled_back, cfg)
    return WindowSummary(
        environment=environment,
        version=version,
        previous_version=previous_version,
        checks_run=len(during),
        failures=failures,
        p50_ms=p50,
        p95_ms=p95,
        previous_p50_ms=old_p50,
        previous_p95_ms=old_p95,
        sparkline=sparkline([r.ms for r in during]),
        verdict=verdict,
    )


def judge_window(
    checks_run: int,
    failures: int,
    p95: float | None,
    old_p95: float | None,
    rolled_back: bool,
    cfg: MonitoringConfig,
) -> str:
    """healthy | degraded | rolled back: too many failures, or slower than before."""
    if rolled_back:
        return "rolled back"
    if checks_run and (
        100.0 * failures / checks_run > cfg.error_rate_percent or _degraded(p95, old_p95, cfg)
    ):
        return "degraded"
    return "healthy"


def _degraded(now: float | None, before: float | None, cfg: MonitoringConfig) -> bool:
    if now is None or not before:
        return False
    slower = now - before
    return (
        slower >= cfg.degradation_floor_ms
        and 100.0 * slower / before > cfg.warning_degradation_percent
    )


def health_row(
    environment: str, check: str, state: CheckState, history: list[Result]
) -> dict[str, Any] | None:
    """One line of `/release health` for a check whose state is `state` and whose recent
    results are `history` (newest first); None for the deploy check while no failed deploy is
    open (it is shown only then)."""
    if check == DEPLOY_CHECK and state.incident is None:
        return None
    latencies = [r.ms for r in history if r.ok]
    return {
        "environment": environment,
        "check": check,
        "last": state.last,
        "incident": state.incident,  # the deploy check's
        "alerting": state.alerting,  # a check's severity while it is part of an outage
        "failing": state.failing,
        "last_failure": state.last_failure,
        "samples": len(latencies),
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
    }
