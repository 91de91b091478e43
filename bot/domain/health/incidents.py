"""When a failing check becomes an incident, and when it ends: a plain state machine.

Like Gatus: an incident opens after `failures_to_alert` failing results in a row and resolves
after `successes_to_resolve` good ones, so a single blip pages nobody. While it lasts it is one
message, updated in place; reminders come no more often than `reminder_seconds` and stop once
someone acknowledges it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from bot.domain.config import MonitoringConfig
from bot.domain.health.checks import SEVERITY_RANK, Finding, Recent, Result

DEPLOY_CHECK = "deploy"  # the pseudo-check under which a failed deploy is an incident


@dataclass
class Incident:
    id: str
    environment: str
    check: str
    severity: str  # warning | critical
    opened_at: float
    problem: str  # the latest
    failures: int = 1  # failing results while it lasted
    reminded_at: float = 0.0
    acknowledged_by: str = ""  # a Slack user ID
    acknowledged_at: float = 0.0
    resolved_at: float = 0.0
    version: str = ""  # what ran in the environment when it opened
    # Where its message is: the thread of the release in the environment, else the channel.
    channel: str = ""
    ts: str = ""
    thread_ts: str = ""

    @property
    def critical(self) -> bool:
        return self.severity == "critical"

    def duration(self, now: float) -> float:
        return (self.resolved_at or now) - self.opened_at


@dataclass
class CheckState:
    """What the monitor remembers of one check between ticks. What changes on every result
    (`recent`, `last`) is rebuilt from the check's history when the state is loaded, so a
    healthy check's state in Redis does not change, and is not rewritten, tick after tick."""

    failing: int = 0  # results in a row that were not ok
    passing: int = 0  # results in a row that were ok (counted up to successes_to_resolve)
    incident: Incident | None = None
    last_failure: Result | None = None
    recent: Recent = field(default_factory=Recent)
    last: Result | None = None

    def to_json(self) -> bytes:
        # By hand, not dataclasses.asdict: that deep-copies.
        return orjson.dumps({
            "failing": self.failing, "passing": self.passing,
            "incident": asdict(self.incident) if self.incident else None,
            "last_failure": self.last_failure.to_dict() if self.last_failure else None,
            "version": self.recent.version, "baseline_ms": self.recent.baseline_ms})

    @classmethod
    def from_json(cls, raw: str | bytes | None, history: list[Result] | None = None,
                  cfg: MonitoringConfig | None = None) -> CheckState:
        """The stored state, with `recent` and `last` rebuilt from `history` (newest first)."""
        state = cls()
        if raw is not None:
            data: dict[str, Any] = orjson.loads(raw)
            state = cls(failing=data["failing"], passing=data["passing"],
                        incident=Incident(**data["incident"]) if data.get("incident") else None,
                        last_failure=Result(**data["last_failure"])
                        if data.get("last_failure") else None,
                        recent=Recent(version=data.get("version", ""),
                                      baseline_ms=data.get("baseline_ms")))
        if history and cfg is not None:
            state.last = history[0]
            recent = state.recent
            recent.outcomes = "".join("0" if r.ok else "1"
                                      for r in history[:cfg.error_rate_samples])
            recent.latencies = [r.ms for r in history if r.ok
                                and r.version == recent.version][:cfg.latency_samples]
        return state


def step(state: CheckState, finding: Finding, now: float, cfg: MonitoringConfig,
         new_incident: Callable[[], Incident]) -> tuple[str, Incident] | None:
    """Apply one assessed result to the check's state. Returns what to tell people, if
    anything: ("open" | "escalate" | "remind" | "resolve", the incident). `new_incident`
    makes the incident to open should one open now (its id, environment and check set)."""
    if finding.severity == "ok":
        state.failing, state.passing = 0, min(state.passing + 1, cfg.successes_to_resolve)
        incident = state.incident
        if incident is not None and state.passing >= cfg.successes_to_resolve:
            incident.resolved_at = now
            state.incident = None
            return "resolve", incident
        return None
    state.failing, state.passing = state.failing + 1, 0
    incident = state.incident
    if incident is None:
        if state.failing < cfg.failures_to_alert:
            return None
        opened = new_incident()
        opened.severity, opened.problem = finding.severity, finding.summary
        opened.opened_at = opened.reminded_at = now
        opened.failures = state.failing
        state.incident = opened
        return "open", opened
    incident.failures += 1
    incident.problem = finding.summary
    if SEVERITY_RANK[finding.severity] > SEVERITY_RANK[incident.severity]:
        incident.severity = finding.severity
        incident.reminded_at = now
        return "escalate", incident
    if not incident.acknowledged_by and now - incident.reminded_at >= cfg.reminder_seconds:
        incident.reminded_at = now
        return "remind", incident
    return None
