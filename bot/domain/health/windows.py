"""The close watch after a deploy of the last environment, and when a check is due.

For `window_seconds` after such a deploy the environment's checks run at least every
`window_interval_seconds`; when the window ends, its results are summed up against those of the
version it replaced. Plain data and functions, no I/O."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from bot.domain.config import MonitoringConfig
from bot.domain.health.checks import Result
from bot.domain.health.summaries import WindowSummary, summarize


@dataclass
class Window:
    version: str
    previous: str  # the version it replaced ("" for the first deploy)
    release: str  # whose thread hears the summary ("" for none)
    started: float
    ends: float

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
