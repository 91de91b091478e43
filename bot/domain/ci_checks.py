"""A gate passed by the team's CI: the commit statuses and check runs on the release commit
(GitHub's, read together), judged against the contexts the gate names. Plain rules, no I/O.

Passed when every required context succeeded (success, neutral or skipped); failed as soon as
one failed (with its name, conclusion and link), when a required context never reported by
the timeout, or when one is still pending then; waiting otherwise, saying for what. Contexts
in `allow_failures` are shown, never blocking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ALL = "all"  # `contexts = "all"`: every context that reports on the commit
GOOD = ("success", "neutral", "skipped")
NAMED = 120  # characters of context names a verdict lists before "and N more"


@dataclass(frozen=True)
class CiCheck:
    """One status or check run as reported, newest first when a name repeats."""

    name: str
    state: str  # pending | success | failure | neutral | skipped
    conclusion: str = ""  # as GitHub said it: failure, timed_out, cancelled, error…
    link: str = ""


@dataclass(frozen=True)
class CiVerdict:
    outcome: str  # passed | failed | waiting
    detail: str  # in words, for the thread and the checklist
    waiting_for: tuple[str, ...] = ()


def latest(checks: Sequence[CiCheck]) -> dict[str, CiCheck]:
    """Each context's latest report (the first of a name: newest first)."""
    found: dict[str, CiCheck] = {}
    for check in checks:
        found.setdefault(check.name, check)
    return found


def judge(
    checks: Sequence[CiCheck],
    contexts: tuple[str, ...],
    allow_failures: tuple[str, ...],
    waited: float,
    timeout: float,
) -> CiVerdict:
    """The gate's verdict after `waited` seconds of its `timeout`. `contexts` is (ALL,) for
    every context that reports."""
    reported = latest(checks)
    everything = contexts == (ALL,)
    required = [
        n for n in (sorted(reported) if everything else contexts) if n not in allow_failures
    ]
    failed = [
        reported[n]
        for n in required
        if n in reported and reported[n].state not in (*GOOD, "pending")
    ]
    if failed:
        return CiVerdict("failed", "; ".join(_failure(c) for c in failed))
    pending = [n for n in required if n not in reported or reported[n].state == "pending"]
    if everything and not reported:
        pending = ["any check"]
    tolerated = [
        reported[n] for n in allow_failures if n in reported and reported[n].state not in GOOD
    ]
    shown = f" ({'; '.join(_failure(c) for c in tolerated)}, allowed to fail)" if tolerated else ""
    if not pending:
        names = ", ".join(required) if required else "no required check"
        return CiVerdict("passed", f"CI passed: {names}{shown}"[:500])
    if waited >= timeout:
        missing = [n for n in pending if n not in reported]
        stuck = [n for n in pending if n in reported]
        parts = []
        if missing:
            parts.append(f"never reported: {', '.join(missing)}")
        if stuck:
            parts.append(f"still pending: {', '.join(stuck)}")
        return CiVerdict("failed", f"after {timeout:.0f}s, {'; '.join(parts)}"[:500])
    return CiVerdict("waiting", f"waiting for {listed(pending)}", tuple(pending))


def listed(names: Sequence[str], limit: int = NAMED) -> str:
    """`names` joined, as many as fit in `limit` characters (at least one, cut if it alone is
    longer), then "and N more": a verdict is shown on a checklist line, kept short."""
    shown: list[str] = []
    used = 0
    for name in names:
        if shown and used + len(name) + 2 > limit:
            break
        shown.append(name if len(name) <= limit else name[: limit - 1] + "…")
        used += len(shown[-1]) + (2 if len(shown) > 1 else 0)
    rest = len(names) - len(shown)
    return ", ".join(shown) + (f" and {rest} more" if rest else "")


def _failure(check: CiCheck) -> str:
    link = f" {check.link}" if check.link else ""
    return f"{check.name}: {check.conclusion or check.state}{link}"
