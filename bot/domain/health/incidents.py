"""When failing checks become an incident, and when it ends: plain state machines.

Like Gatus: a check starts alerting after `failures_to_alert` failing results in a row and
stops after `successes_to_resolve` good ones, so a single blip pages nobody. Like
Alertmanager's grouping by environment: all the checks of an environment that alert at once
are **one** incident (its outage), which lists each of them, pages on-call once, and reminds
no more often than `reminder_seconds` until someone acknowledges it. Checks joining or
recovering redraw its message; it resolves when the last one recovers. A failed deploy is an
incident of its own (`DEPLOY_CHECK`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import orjson

# Re-exported: the pseudo-checks are named in config, which must refuse them as check names.
from bot.domain.config import DEPLOY_CHECK as DEPLOY_CHECK
from bot.domain.config import OUTAGE_CHECK as OUTAGE_CHECK
from bot.domain.config import MonitoringConfig
from bot.domain.health.checks import (
    BASELINE_SAMPLES,
    SEVERITY_RANK,
    Finding,
    Recent,
    Result,
    assess,
)

SHOWN = 10  # failing checks an incident's news carries (and its message lists) by name
PROBLEM_CHARS = 500


@dataclass
class Trouble:
    """One check failing in an outage: how badly, why (its latest failure), since when."""

    severity: str
    problem: str
    since: float
    failures: int = 1


@dataclass
class Incident:
    id: str
    environment: str
    check: str  # OUTAGE_CHECK (its checks are in `failing`) or DEPLOY_CHECK
    severity: str  # warning | critical: the worst it has been
    opened_at: float
    problem: str  # the latest, in words
    failures: int = 1  # failing results while it lasted, of all its checks
    reminded_at: float = 0.0
    acknowledged_by: str = ""  # a Slack user ID
    acknowledged_at: float = 0.0
    resolved_at: float = 0.0
    version: str = ""  # what ran in the environment when it opened
    # Where its message is: the thread of the release in the environment, else the channel.
    channel: str = ""
    ts: str = ""
    thread_ts: str = ""
    # An outage's checks failing now, and those that failed in it and recovered (in a news
    # copy, only the first SHOWN of each; the counts are always whole).
    failing: dict[str, Trouble] = field(default_factory=dict)
    recovered: list[str] = field(default_factory=list)
    failing_count: int = 0
    recovered_count: int = 0

    @property
    def critical(self) -> bool:
        return self.severity == "critical"

    def duration(self, now: float) -> float:
        return (self.resolved_at or now) - self.opened_at

    @property
    def checks(self) -> tuple[int, list[str]]:
        """How many checks it stands for, and the names of the first of them: those failing
        while it lasts, all that took part once it is over."""
        if self.check != OUTAGE_CHECK:
            return 1, [self.check]
        if self.resolved_at:
            return self.recovered_count, self.recovered[:SHOWN]
        return self.failing_count, list(self.failing)[:SHOWN]

    @property
    def subject(self) -> str:
        """What failed, in a few words: a check's name, "12 checks", "deploy failed"."""
        if self.check == DEPLOY_CHECK:
            return "deploy failed"
        count, names = self.checks
        return names[0] if count == 1 and names else f"{count} checks"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Incident:
        fields_ = dict(data)
        fields_["failing"] = {
            name: Trouble(**trouble) for name, trouble in (data.get("failing") or {}).items()
        }
        return cls(**fields_)

    def news_copy(self) -> Incident:
        """The incident as a message says it: the SHOWN worst failing checks and the first
        SHOWN recovered ones, not all 5,000 of a mass outage in every outbox entry."""
        worst = sorted(
            self.failing.items(),
            key=lambda kv: (-SEVERITY_RANK[kv[1].severity], kv[1].since, kv[0]),
        )[:SHOWN]
        return replace(
            self,
            failing={name: replace(trouble) for name, trouble in worst},
            recovered=self.recovered[:SHOWN],
        )


@dataclass
class CheckState:
    """What the monitor remembers of one check between ticks. What changes on every result
    (`recent`, `last`) is rebuilt from the check's history when the state is loaded, so a
    healthy check's state in Redis does not change, and is not rewritten, tick after tick.
    The pseudo-checks DEPLOY_CHECK and OUTAGE_CHECK keep their incident here."""

    failing: int = 0  # results in a row that were not ok
    passing: int = 0  # results in a row that were ok (counted up to successes_to_resolve)
    alerting: str = ""  # the check's severity while it is part of its environment's outage
    incident: Incident | None = None  # a pseudo-check's
    last_failure: Result | None = None
    recent: Recent = field(default_factory=Recent)
    last: Result | None = None

    def to_json(self) -> bytes:
        # By hand, not dataclasses.asdict: that deep-copies.
        return orjson.dumps(
            {
                "failing": self.failing,
                "passing": self.passing,
                "alerting": self.alerting,
                "incident": self.incident.to_dict() if self.incident else None,
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
            incident = Incident.from_dict(data["incident"]) if data.get("incident") else None
            alerting = str(data.get("alerting", ""))
            if incident is not None and incident.check not in (DEPLOY_CHECK, OUTAGE_CHECK):
                # Stored before outages were one incident per environment: the check is
                # alerting, and joins its environment's outage when it runs next.
                alerting, incident = incident.severity, None
            state = cls(
                failing=data["failing"],
                passing=data["passing"],
                alerting=alerting,
                incident=incident,
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


@dataclass(frozen=True)
class CheckNews:
    """What one run of a check means for its environment's outage: it starts or goes on
    alerting ("alert", with how badly and why) or it recovered ("recover")."""

    check: str
    what: str  # alert | recover
    severity: str = ""
    problem: str = ""


def step(
    state: CheckState, check: str, finding: Finding, cfg: MonitoringConfig
) -> CheckNews | None:
    """Apply one assessed result to the check's state: what it means for the outage, if
    anything (nothing while it is healthy, or failing fewer than `failures_to_alert` times)."""
    if finding.severity == "ok":
        state.failing, state.passing = 0, min(state.passing + 1, cfg.successes_to_resolve)
        if state.alerting and state.passing >= cfg.successes_to_resolve:
            state.alerting = ""
            return CheckNews(check, "recover")
        return None
    state.failing, state.passing = state.failing + 1, 0
    if not state.alerting and state.failing < cfg.failures_to_alert:
        return None
    state.alerting = finding.severity
    return CheckNews(check, "alert", finding.severity, finding.summary)


def judge(
    state: CheckState,
    check: str,
    result: Result,
    problems: list[str],
    cfg: MonitoringConfig,
) -> CheckNews | None:
    """One run of a check: `result` joins the check's recent past, and `step` says what it
    means for the environment's outage."""
    state.recent.add(result, cfg)
    state.last = result
    if not result.ok:
        state.last_failure = result
    return step(state, check, assess(problems, state.recent, cfg), cfg)


def describe(incident: Incident) -> str:
    """An outage's problem in words: the check and why if one fails, else how many and the
    first few."""
    failing = sorted(
        incident.failing.items(),
        key=lambda kv: (-SEVERITY_RANK[kv[1].severity], kv[1].since, kv[0]),
    )
    if len(failing) == 1:
        name, trouble = failing[0]
        return f"{name}: {trouble.problem}"[:PROBLEM_CHARS]
    shown = "; ".join(f"{name} ({trouble.problem})" for name, trouble in failing[:3])
    more = f"; and {len(failing) - 3} more" if len(failing) > 3 else ""
    return f"{len(failing)} checks failing: {shown}{more}"[:PROBLEM_CHARS]


def outage_step(
    state: CheckState,
    news: Sequence[CheckNews],
    now: float,
    cfg: MonitoringConfig,
    new_incident: Callable[[], Incident],
    acknowledged: tuple[str, float] | None = None,
) -> list[tuple[str, Incident]]:
    """Apply one tick's news of an environment's checks to its outage (`state` is the
    environment's OUTAGE_CHECK), and an acknowledgement made since (`acknowledged`: who,
    when). Returns what to tell people (and the trail), in order: ("open" | "change" |
    "escalate" | "remind" | "resolve", the incident). "change" is checks joining or
    recovering: the message is redrawn, nobody is paged for it."""
    incident = state.incident
    if incident is not None and acknowledged is not None and not incident.acknowledged_by:
        incident.acknowledged_by, incident.acknowledged_at = acknowledged
    opened = changed = False
    for item in news:
        if item.what == "recover":
            if incident is not None and incident.failing.pop(item.check, None) is not None:
                if item.check not in incident.recovered:
                    incident.recovered.append(item.check)
                changed = True
            continue
        if incident is None:
            incident = state.incident = new_incident()
            incident.opened_at = incident.reminded_at = now
            incident.failures = 0
            opened = True
        incident.failures += 1
        trouble = incident.failing.get(item.check)
        if trouble is None:
            incident.failing[item.check] = Trouble(item.severity, item.problem, now)
            if item.check in incident.recovered:
                incident.recovered.remove(item.check)
            changed = True
        else:
            trouble.severity, trouble.problem = item.severity, item.problem
            trouble.failures += 1
    if incident is None:
        return []
    incident.failing_count = len(incident.failing)
    incident.recovered_count = len(incident.recovered)
    if not incident.failing:
        incident.resolved_at = now
        state.incident = None
        return [("resolve", incident)]
    incident.problem = describe(incident)
    worst = max((t.severity for t in incident.failing.values()), key=SEVERITY_RANK.__getitem__)
    if opened:
        incident.severity = worst
        return [("open", incident)]
    said = [("change", incident)] if changed else []
    if SEVERITY_RANK[worst] > SEVERITY_RANK[incident.severity]:
        incident.severity = worst
        incident.reminded_at = now
        said.append(("escalate", incident))
    elif not incident.acknowledged_by and now - incident.reminded_at >= cfg.reminder_seconds:
        incident.reminded_at = now
        said.append(("remind", incident))
    return said


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
