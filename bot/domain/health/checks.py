"""Health check rules: what one answer says (conditions) and what recent answers say (latency
against the baseline before the release, error rate). Plain functions, no I/O."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import orjson

from bot.domain.config import CheckConfig, MonitoringConfig

SEVERITY_RANK = {"ok": 0, "warning": 1, "critical": 2}
_MISSING = object()

CheckId = tuple[str, str]  # (environment, check name): a configured check, or the deploy one


@dataclass(frozen=True)
class Observation:
    """One HTTP answer (or the lack of one) as the prober saw it."""

    elapsed_ms: float
    status: int | None = None  # None: no HTTP answer at all
    body: str = ""
    error: str = ""  # why there was no answer: timed out, connection refused, …


@dataclass(frozen=True)
class Result:
    """One check run as kept in Redis (bounded history per check)."""

    at: float
    ok: bool
    ms: float
    status: int | None
    problem: str  # "" when ok
    version: str  # what the bot had deployed in the environment at the time ("" = nothing)

    def to_dict(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies, and a tick writes a thousand of these.
        return {
            "at": self.at,
            "ok": self.ok,
            "ms": self.ms,
            "status": self.status,
            "problem": self.problem,
            "version": self.version,
        }

    def to_json(self) -> bytes:
        # A list, not an object: a check keeps its recent results, thousands of checks keep
        # theirs, and the field names were half of each one.
        return orjson.dumps(
            [self.at, 1 if self.ok else 0, self.ms, self.status, self.problem, self.version]
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Result:
        data = orjson.loads(raw)
        if isinstance(data, dict):  # as results were kept before the compact form
            return cls(**data)
        at, ok, ms, status, problem, version = data
        return cls(at=at, ok=bool(ok), ms=ms, status=status, problem=problem, version=version)

    @classmethod
    def decode_many(cls, raws: list[bytes]) -> list[Result]:
        """Many stored results at once: one parse of them all (a check's history, read when a
        replica loads thousands of states), each alone only if one of them is damaged."""
        try:
            rows = orjson.loads(b"[" + b",".join(raws) + b"]")
            return [
                cls(row[0], bool(row[1]), row[2], row[3], row[4], row[5])
                if isinstance(row, list)
                else cls(**row)
                for row in rows
            ]
        except (orjson.JSONDecodeError, TypeError, IndexError, KeyError):
            # One damaged entry must not stop the monitor: the others still count.
            found = []
            for raw in raws:
                try:
                    found.append(cls.from_json(raw))
                except (orjson.JSONDecodeError, TypeError, ValueError, KeyError):
                    continue
            return found

    @classmethod
    def of(cls, seen: Observation, problems: list[str], at: float, version: str) -> Result:
        """The result of a check run that saw `seen` and found `problems` (its conditions)."""
        return cls(
            at=at,
            ok=not problems,
            ms=round(seen.elapsed_ms, 2),
            status=seen.status,
            problem="; ".join(problems),
            version=version,
        )


@dataclass(frozen=True)
class Finding:
    severity: str  # ok | warning | critical
    problems: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        return "; ".join(self.problems)


def conditions(check: CheckConfig, seen: Observation, deployed_version: str) -> list[str]:
    """The conditions of `check` that this answer fails, in words; [] when it is healthy."""
    if seen.status is None:
        return [f"down: {seen.error or 'no answer'}"]
    problems: list[str] = []
    if seen.status >= 500:
        problems.append(f"HTTP {seen.status}")
    elif check.status is not None and seen.status != check.status:
        problems.append(f"HTTP {seen.status}, expected {check.status}")
    if check.max_response_ms is not None and seen.elapsed_ms > check.max_response_ms:
        problems.append(
            f"answered in {seen.elapsed_ms:,.0f} ms, limit {check.max_response_ms:,.0f} ms"
        )
    if check.body_contains is not None and check.body_contains not in seen.body:
        problems.append(f"the answer does not contain “{check.body_contains}”")
    if check.json or check.version_field:
        try:
            document = orjson.loads(seen.body)
        except orjson.JSONDecodeError:
            return [*problems, "the answer is not JSON"]
        for path, expected in check.json:
            actual = field_at(document, path)
            if actual is _MISSING:
                problems.append(f"`{path}` is missing, expected {expected!r}")
            elif actual != expected:
                problems.append(f"`{path}` is {actual!r}, expected {expected!r}")
        if check.version_field and deployed_version:
            reported = field_at(document, check.version_field)
            if reported is _MISSING or not same_version(reported, deployed_version):
                shown = "nothing" if reported is _MISSING else f"`{reported}`"
                problems.append(
                    f"reports version {shown}, but `{deployed_version}` was deployed here"
                )
    return problems


def reported_version(check: CheckConfig, seen: Observation) -> str | None:
    """The version a healthy answer of a check with `version_field` reports (a string or a
    number there), else None: what an environment runs, when the bot did not deploy it."""
    if not check.version_field or seen.status is None or not 200 <= seen.status < 300:
        return None
    try:
        document = orjson.loads(seen.body)
    except orjson.JSONDecodeError:
        return None
    reported = field_at(document, check.version_field)
    if isinstance(reported, bool) or not isinstance(reported, str | int | float):
        return None
    return str(reported).strip() or None


def field_at(document: Any, path: str) -> Any:
    """The value at a dotted path (`db.status`), or _MISSING."""
    value = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def same_version(reported: Any, deployed: str) -> bool:
    def bare(v: str) -> str:
        return v[1:] if v[:1] in ("v", "V") and v[1:2].isdigit() else v

    return isinstance(reported, str) and bare(reported.strip()) == bare(deployed)


# --- the recent past of a check ------------------------------------------------------------


@dataclass
class Recent:
    """What a check needs of its recent results to judge the next one, kept in its state so a
    tick never re-reads the history: outcomes (newest first, "1" failed / "0" passed) and the
    latencies of good answers since the current version was deployed."""

    outcomes: str = ""
    latencies: list[float] | None = None
    version: str = ""  # the version the latencies (and the baseline) belong to
    baseline_ms: float | None = None  # median latency before that version was deployed
    # The newest good answers (latency, version), newest first, that a baseline is taken from
    # when a new version appears: in memory only (rebuilt from the recent results when the
    # state is loaded), so that a deploy costs no read of any history.
    good: list[tuple[float, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcomes": self.outcomes,
            "latencies": self.latencies,
            "version": self.version,
            "baseline_ms": self.baseline_ms,
        }

    def add(self, result: Result, cfg: MonitoringConfig) -> None:
        self.outcomes = ("0" if result.ok else "1") + self.outcomes[: cfg.error_rate_samples - 1]
        if result.version != self.version:
            self.version, self.latencies = result.version, []
        if result.ok:
            self.latencies = [result.ms, *(self.latencies or [])][: cfg.latency_samples]
            self.good.insert(0, (result.ms, result.version))
            del self.good[BASELINE_SAMPLES:]


BASELINE_SAMPLES = 50  # good answers of earlier versions a baseline is the median of


def baseline_of(good: list[tuple[float, str]], version: str, cfg: MonitoringConfig) -> float | None:
    """The median latency of good answers (latency, version; newest first) while a version
    other than `version` ran (newest 50), or None when there are too few to compare with."""
    before = [ms for ms, seen in good if seen != version][:BASELINE_SAMPLES]
    return statistics.median(before) if len(before) >= cfg.latency_samples else None


def error_rate(outcomes: str, cfg: MonitoringConfig) -> float | None:
    """Failures in the window as a percentage, not counting outages (runs of at least
    `failures_to_alert` failures, which alert as such and must not keep an incident open after
    the recovery). None until the window is full, so one early blip is never a high rate."""
    if len(outcomes) < cfg.error_rate_samples:
        return None
    runs = [len(run) for run in outcomes.split("0") if run]
    counted = sum(n for n in runs if n < cfg.failures_to_alert)
    return 100.0 * counted / len(outcomes)


def assess(problems: list[str], recent: Recent, cfg: MonitoringConfig) -> Finding:
    """The severity of a check now: its latest answer's problems, its latency against the
    baseline, its error rate."""
    found: list[tuple[str, str]] = [("critical", p) for p in problems]
    latencies = recent.latencies or []
    if not problems and recent.baseline_ms and len(latencies) >= cfg.latency_samples:
        now = statistics.median(latencies)
        slower = now - recent.baseline_ms
        percent = 100.0 * slower / recent.baseline_ms
        if slower >= cfg.degradation_floor_ms and percent > cfg.warning_degradation_percent:
            level = "critical" if percent > cfg.critical_degradation_percent else "warning"
            found.append(
                (
                    level,
                    f"responses take {now:,.0f} ms, {percent:.0f}% slower than "
                    f"before this release ({recent.baseline_ms:,.0f} ms)",
                )
            )
    rate = error_rate(recent.outcomes, cfg)
    if rate is not None and rate > cfg.error_rate_percent:
        found.append(
            ("critical", f"error rate {rate:.1f}% over the last {len(recent.outcomes)} checks")
        )
    if not found:
        return Finding("ok")
    severity = max((level for level, _ in found), key=SEVERITY_RANK.__getitem__)
    return Finding(severity, tuple(text for _, text in found))
