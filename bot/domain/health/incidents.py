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
from bot.domain.health.checks import (
    BASELINE_SAMPLES,
    SEVERITY_RANK,
    Finding,
    Recent,
    Result,
    assess,
)

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
        return orjson.dumps(
            {
                "failing": self.failing,
                "passing": self.passing,
                "incident": asdict(self.incident) if self.incident else None,
                "last_failure": self.last_failure.to_dict() if self.last_failure else None,
                "version": self.recent.version,
                "baseline_ms": self.recent.baseline_ms,
            }
        )

    @classmethod
    def from_json(
        cls,
        raw: str | bytes | None,
        history: list[Result] | None = None,
        cfg: MonitoringConfig | None = None,
    ) -> CheckState:
        """The stored state, with `recent` and `last` rebuilt from `history` (newest first)."""
        state = cls()
        if raw is not None:
            data: dict[str, Any] = orjson.loads(raw)
            state = cls(
                failing=data["failing"],
                passing=data["passing"],
                incident=Incident(**data["incident"]) if data.get("incident") else None,
                last_failure=Result(**data["last_failure"]) if data.get("last_failure") else None,
                recent=Recent(version=data.get("version", ""), baseline_ms=data.get("baseline_ms")),
            )
        if history and cfg is not None:
            state.last = history[0]
            recent = state.recent
            recent.outcomes = "".join(
                "0" if r.ok else "1" for r in history[: cfg.error_rate_samples]
            )
            recent.latencies = [r.ms for r in history if r.ok and r.version == recent.version][
                : cfg.latency_samples
            ]
            recent.good = [(r.ms, r.version) for r in history if r.ok][:BASELINE_SAMPLES]
        return state


def step(
    state: CheckState,
    finding: Finding,
    now: float,
    cfg: MonitoringConfig,
    new_incident: Callable[[], Incident],
) -> tuple[str, Incident] | None:
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


def judge(
    state: CheckState,
    result: Result,
    problems: list[str],
    now: float,
    cfg: MonitoringConfig,
    new_incident: Callable[[], Incident],
    acknowledged: tuple[str, float] | None = None,
) -> tuple[str, Incident] | None:
    """One run of a check: `result` joins the check's recent past, an acknowledgement of its
    incident made since (`acknowledged`: who, when) is taken, and the incident opens, changes
    or ends as `step` says. Returns what to tell people, if anything."""
    state.recent.add(result, cfg)
    state.last = result
    if not result.ok:
        state.last_failure = result
    if state.incident is not None and acknowledged is not None:
        state.incident.acknowledged_by, state.incident.acknowledged_at = acknowledged
    return step(state, assess(problems, state.recent, cfg), now, cfg, new_incident)


# --- deploys -------------------------------------------------------------------------------


def deploy_problem(tag: str, detail: str) -> str:
    return f"the deploy of `{tag}` failed: {detail}"[:500]


def deploy_failed(
    state: CheckState,
    environment: str,
    problem: str,
    now: float,
    release_version: str,
    new_id: Callable[[], str],
) -> tuple[str, Incident]:
    """A failed deploy (`state` is the environment's DEPLOY_CHECK) is a critical incident at
    once, no run of failures to wait for; another failure while it is open is a reminder."""
    if state.incident is not None:
        state.incident.failures += 1
        state.incident.problem = problem
        return "remind", state.incident
    state.incident = Incident(
        id=new_id(),
        environment=environment,
        check=DEPLOY_CHECK,
        severity="critical",
        opened_at=now,
        problem=problem,
        reminded_at=now,
        version=release_version,
    )
    return "open", state.incident


def deploy_succeeded(state: CheckState, now: float) -> Incident | None:
    """A deploy went through: the failed-deploy incident, if one is open, is resolved."""
    incident, state.incident = state.incident, None
    if incident is not None:
        incident.resolved_at = now
    return incident
