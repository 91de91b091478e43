"""The close watch after a deploy of the last environment, and when a check is due.

For `window_seconds` after such a deploy the environment's checks run at least every
`window_interval_seconds`; when the window ends, its results are summed up against those of the
version it replaced. Plain data and functions, no I/O."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bot.domain.config import MonitoringConfig
from bot.domain.health.checks import Result
from bot.domain.health.sketch import LatencySketch, bucket_of
from bot.domain.health.summaries import WindowSummary, judge_window, sparkline, summarize


@dataclass
class Window:
    version: str
    previous: str  # the version it replaced ("" for the first deploy)
    release: str  # whose thread hears the summary ("" for none)
    started: float
    ends: float
    # Whether its results are summed up as they come (see `fold`); a window opened by a version
    # of the bot before that is summed up from the results kept.
    aggregated: bool = False

    def to_json(self) -> str:
        # The same JSON as ever: a window open during an upgrade is read back by the new code.
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Window:
        return cls(**json.loads(raw))

    def over(self, now: float) -> bool:
        return now >= self.ends

    def minutes_watched(self, now: float) -> float:
        """How long it watched, ended early or not (a new deploy, a rollback)."""
        return round((min(now, self.ends) - self.started) / 60, 1)


def open_window(
    version: str, previous: str, release: str, now: float, cfg: MonitoringConfig
) -> Window:
    # Its checks run at once (their last result is older than the window), then every window
    # interval.
    return Window(
        version=version,
        previous=previous,
        release=release,
        started=now,
        ends=now + cfg.window_seconds,
        aggregated=True,
    )


def is_due(
    last: Result | None, interval: float, window: Window | None, now: float, cfg: MonitoringConfig
) -> bool:
    """Whether a check whose last result is `last` runs now: never run, checked at once after
    a deploy opened `window`, then at its interval (shorter while the window lasts)."""
    if last is None:
        return True
    if window is not None:
        if last.at < window.started:
            return True
        interval = min(interval, cfg.window_interval_seconds)
    return last.at + interval <= now


def window_results(
    window: Window, histories: Iterable[list[Result]]
) -> tuple[list[Result], list[Result]]:
    """From the checks' histories: the results of the window (oldest first), and those of the
    version before it, to compare with."""
    during: list[Result] = []
    before: list[Result] = []
    for history in histories:
        for result in history:
            if result.at >= window.started and result.version == window.version:
                during.append(result)
            elif window.previous and result.version == window.previous:
                before.append(result)
    during.sort(key=lambda r: r.at)
    return during, before


def summarize_window(
    environment: str,
    window: Window,
    histories: Iterable[list[Result]],
    rolled_back: bool,
    cfg: MonitoringConfig,
) -> WindowSummary:
    during, before = window_results(window, histories)
    return summarize(environment, window.version, window.previous, during, before, rolled_back, cfg)


# --- results summed up as they come ----------------------------------------------------------

SPARK_SLOTS = 24  # a window's sparkline: the highest latency in each 24th of it

# What a result is summed up into: ("version", environment, version), every result of that
# version there; ("window", environment, window start), the results of an open window.
AggregateId = tuple[str, str, str]


@dataclass
class Aggregate:
    """Results summed up: how many, how many failed, the latencies of the good ones as a
    sketch, and (for a window) the highest latency per slot of it."""

    count: int = 0
    failures: int = 0
    sketch: LatencySketch = field(default_factory=LatencySketch)
    peaks: dict[int, float] = field(default_factory=dict)

    @classmethod
    def from_fields(cls, fields: Mapping[str | bytes, str | bytes]) -> Aggregate:
        aggregate = cls()
        counts: dict[int, int] = {}
        for raw_name, raw_value in fields.items():
            name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
            value = raw_value.decode() if isinstance(raw_value, bytes) else raw_value
            kind, _, key = name.partition(":")
            if kind == "n":
                aggregate.count = int(value)
            elif kind == "f":
                aggregate.failures = int(value)
            elif kind == "b":
                counts[int(key)] = int(value)
            elif kind == "s":
                aggregate.peaks[int(key)] = float(value)
        aggregate.sketch = LatencySketch.from_counts(counts)
        return aggregate


@dataclass
class Delta:
    """What one tick adds to an aggregate: counters to add, and slots' highest latencies."""

    add: Counter[str] = field(default_factory=Counter)
    peaks: dict[str, float] = field(default_factory=dict)

    def count(self, result: Result) -> None:
        self.add["n"] += 1
        if result.ok:
            self.add[f"b:{bucket_of(result.ms)}"] += 1
        else:
            self.add["f"] += 1


def version_aggregate(environment: str, version: str) -> AggregateId:
    return ("version", environment, version)


def window_aggregate(environment: str, window: Window) -> AggregateId:
    return ("window", environment, f"{window.started:.3f}")


def fold(
    results: Iterable[tuple[str, Result]], windows: Mapping[str, Window]
) -> dict[AggregateId, Delta]:
    """A tick's results (environment, result) as the additions to their aggregates."""
    deltas: dict[AggregateId, Delta] = {}
    for environment, result in results:
        if result.version:
            target = version_aggregate(environment, result.version)
            deltas.setdefault(target, Delta()).count(result)
        window = windows.get(environment)
        if (
            window is not None
            and window.aggregated
            and result.version == window.version
            and window.started <= result.at
        ):
            delta = deltas.setdefault(window_aggregate(environment, window), Delta())
            delta.count(result)
            if result.ok:
                slot = f"s:{window_slot(window, result.at)}"
                delta.peaks[slot] = max(delta.peaks.get(slot, 0.0), result.ms)
    return deltas


def window_slot(window: Window, at: float) -> int:
    length = max(window.ends - window.started, 1e-9)
    return min(SPARK_SLOTS - 1, max(0, math.floor((at - window.started) / length * SPARK_SLOTS)))


def summarize_aggregates(
    environment: str,
    window: Window,
    during: Aggregate,
    before: Aggregate | None,
    rolled_back: bool,
    cfg: MonitoringConfig,
) -> WindowSummary:
    """The window's verdict from its aggregate and that of the version it replaced: the same
    figures as `summarize` over every result, percentiles within the sketch's error."""
    p95 = during.sketch.percentile(95)
    old_p95 = before.sketch.percentile(95) if before else None
    return WindowSummary(
        environment=environment,
        version=window.version,
        previous_version=window.previous,
        checks_run=during.count,
        failures=during.failures,
        p50_ms=during.sketch.percentile(50),
        p95_ms=p95,
        previous_p50_ms=before.sketch.percentile(50) if before else None,
        previous_p95_ms=old_p95,
        sparkline=sparkline([during.peaks[slot] for slot in sorted(during.peaks)]),
        verdict=judge_window(during.count, during.failures, p95, old_p95, rolled_back, cfg),
    )
