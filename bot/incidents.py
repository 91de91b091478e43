"""When a failing check becomes an incident, and when it ends: a plain state machine.

Like Gatus: an incident opens after `failures_to_alert` failing results in a row and resolves
after `successes_to_resolve` good ones, so a single blip pages nobody. While it lasts it is one
message, updated in place; reminders come no more often than `reminder_seconds` and stop once
someone acknowledges it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.checks import SEVERITY_RANK, Finding, Recent, Result
from bot.config import MonitoringConfig

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
    """All the monitor remembers of one check between ticks (one JSON value in Redis)."""

    failing: int = 0  # results in a row that were not ok
    passing: int = 0  # results in a row that were ok
    recent: Recent = field(default_factory=Recent)
    incident: Incident | None = None
    last: Result | None = None
    last_failure: Result | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> CheckState:
        if raw is None:
            return cls()
        data: dict[str, Any] = json.loads(raw)
        return cls(failing=data["failing"], passing=data["passing"],
                   recent=Recent(**data["recent"]),
                   incident=Incident(**data["incident"]) if data.get("incident") else None,
                   last=Result(**data["last"]) if data.get("last") else None,
                   last_failure=Result(**data["last_failure"]) if data.get("last_failure")
                   else None)


def step(state: CheckState, finding: Finding, now: float, cfg: MonitoringConfig,
         new_incident: Incident) -> tuple[str, Incident] | None:
    """Apply one assessed result to the check's state. Returns what to tell people, if
    anything: ("open" | "escalate" | "remind" | "resolve", the incident). `new_incident` is
    the incident to open should one open now (its id, environment and check filled in)."""
    if finding.severity == "ok":
        state.failing, state.passing = 0, state.passing + 1
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
        new_incident.severity, new_incident.problem = finding.severity, finding.summary
        new_incident.opened_at = new_incident.reminded_at = now
        new_incident.failures = state.failing
        state.incident = new_incident
        return "open", new_incident
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
