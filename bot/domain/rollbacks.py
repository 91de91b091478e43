"""Rollbacks: back to a previous good version of an environment, with the approvals the
config sets, and the environment locked afterwards until someone unlocks it.

Plain data and rules here; the job that deploys is in bot.services.create_candidate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from bot.domain import approval_policy
from bot.domain.approval_policy import Approval
from bot.domain.approvals import NoChange, Refusal
from bot.domain.config import ApprovalPolicy, Config
from bot.domain.releases import TransitionError

RollbackStatus = Literal["waiting", "running", "succeeded", "failed", "cancelled"]


@dataclass
class RollbackRequest:
    id: str
    environment: str
    to_version: str
    to_tag: str
    to_sha: str
    from_version: str
    from_release: str  # the release record whose thread hears about it ("" if none)
    reason: str
    requester: str
    requester_name: str
    requested_at: float
    approvals: list[Approval] = field(default_factory=list)
    status: RollbackStatus = "waiting"
    channel: str = ""
    message_ts: str = ""
    finished_at: float | None = None
    # Reported failed because its worker stopped answering; the worker's own outcome, if it
    # arrives later, replaces that.
    lost: bool = False
    rev: int = 0
    why: str = ""  # why this target (choose_target), said to the requester and approvers
    from_tag: str = ""  # the tag of from_version ("" in a request stored before it was kept)
    to_release: str = ""  # the release record that deployed the target there, if any
    cancelled_by: str = ""  # who cancelled it while it waited for approvals

    @property
    def releases(self) -> str:
        """The releases its audit entries are about, for each one's trail: the one it leaves
        and the one it goes back to (space-separated, as the audit's `release` field takes)."""
        return " ".join(dict.fromkeys(r for r in (self.from_release, self.to_release) if r))

    @property
    def from_shown(self) -> str:
        """The version rolled back from, written as the target is: as a tag."""
        return self.from_tag or self.from_version

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> RollbackRequest:
        data = json.loads(text)
        data["approvals"] = [Approval.from_dict(a) for a in data.get("approvals", [])]
        return cls(**data)


# What every rollback's approvals share, whatever [rollback] says: whoever asks for a rollback
# counts as one approval if they are an approver (in an emergency, one approver can act alone
# unless the config asks for more), and approvals do not expire ([rollback] has no valid_hours):
# a request waits until it is approved.
_ANY_ROLLBACK = ApprovalPolicy(
    required=1, approvers=(), allow_self_approval=True, valid_hours=math.inf
)


def rollback_policy(config: Config, environment: str) -> ApprovalPolicy:
    """[rollback] in the config, with the environment's approvers when it names none."""
    base = config.rollback
    approvers = base.approvers or config.policy(environment).approvers
    return replace(_ANY_ROLLBACK, required=base.required, approvers=approvers)


# An environment's history (bot.adapters.redis.store, newest first) holds what ran there:
# each deploy (`{"version", "tag", "sha", "deployed_at", "release"}`, with `rolled_back_from`
# when a rollback put it there), and marks that a version failed there (`"event": "failed"`,
# its gates or its monitoring window). A version is known bad in an environment once it was
# rolled back from or failed there; a rollback never goes back to one unless it is named.
FAILED = "failed"


def deploys(history: list[dict[str, str]]) -> list[dict[str, str]]:
    """The deploys of a history, newest (what runs now) first."""
    return [entry for entry in history if not entry.get("event")]


def known_bad(history: list[dict[str, str]]) -> set[str]:
    """The versions rolled back from, or that failed, in this environment."""
    rolled_back_from = {e["rolled_back_from"] for e in history if e.get("rolled_back_from")}
    return rolled_back_from | {e["version"] for e in history if e.get("event") == FAILED}


@dataclass(frozen=True)
class Target:
    """The deploy a rollback goes back to, and why that one, in words."""

    entry: dict[str, str]
    why: str


def choose_target(
    history: list[dict[str, str]],
    environment: str,
    to: str | None,
    prefix: str,
    final_tags: Mapping[str, str] | None = None,
) -> Target:
    """The deploy to go back to: the one named, or the newest before the current that
    deployed there and is not known bad there (`known_bad`). A version named that never ran
    there may still be a final tag of the repository (`final_tags`: tag -> commit)."""
    ran = deploys(history)
    if not ran:
        raise Refusal(
            f"I do not know what {environment} runs: the bot never deployed it. "
            f"`/release adopt {environment} VERSION --reason TEXT` tells me"
        )
    current, bad = ran[0], known_bad(history)
    if to is None:
        skipped: list[str] = []
        for entry in ran[1:]:
            if entry["sha"] == current["sha"] or entry["version"] == current["version"]:
                continue
            if entry["version"] in bad:
                if entry["tag"] not in skipped:
                    skipped.append(entry["tag"])
                continue
            why = (
                f"the newest version before `{current['tag']}` that deployed to {environment} "
                "and was never rolled back from or failed there"
            )
            if skipped:
                why += f" (passing over {', '.join(f'`{t}`' for t in skipped)})"
            return Target(entry, why)
        if skipped:
            raise Refusal(
                f"{environment} has no earlier version known good to go back to "
                f"({', '.join(f'`{t}`' for t in skipped)} was rolled back from or failed "
                f"there); name one with `--to VERSION`"
            )
        raise Refusal(f"{environment} has no earlier version to go back to")
    wanted = to[len(prefix) :] if prefix and to.startswith(prefix) else to
    if wanted in (current["version"], current["tag"]):
        raise Refusal(f"{environment} already runs {to}")
    for entry in ran[1:]:
        if wanted in (entry["version"], entry["tag"]):
            why = "named with `--to`"
            if entry["version"] in bad:
                why += f"; it was rolled back from or failed in {environment} before"
            return Target(entry, why)
    tag = wanted if wanted.startswith(prefix) else f"{prefix}{wanted}"
    sha = (final_tags or {}).get(tag)
    if sha:
        entry = {"version": tag[len(prefix) :], "tag": tag, "sha": sha, "release": ""}
        return Target(
            entry, f"a final tag of the repository; the bot never ran it in {environment}"
        )
    raise Refusal(
        f"{to} was never deployed to {environment}, nor is it a final tag of the repository; "
        "`/release status` shows what runs where"
    )


def has_target(history: list[dict[str, str]], environment: str, prefix: str) -> bool:
    """Whether `/release rollback` of `environment` would find a version to go back to."""
    try:
        choose_target(history, environment, None, prefix)
    except Refusal:
        return False
    return True


def approve(
    request: RollbackRequest, *, user_id: str, user_name: str, now: float, eligible: bool
) -> None:
    # Of a rollback's policy only the approvers (handed in as `eligible`) and the count (for
    # `ready`) depend on the environment; whether one approval is accepted does not.
    verdict = approval_policy.consider(
        _ANY_ROLLBACK,
        request.approvals,
        user_id=user_id,
        user_name=user_name,
        now=now,
        requester=request.requester,
        is_approver=eligible,
        is_open=request.status == "waiting",
    )
    if verdict.refused == "not open":
        raise NoChange(f"this rollback is already {request.status}")
    if verdict.refused == "not an approver":
        raise Refusal(f"you are not one of the approvers for {request.environment}")
    if verdict.refused == "already approved":
        raise NoChange("you already approved this rollback")
    request.approvals = list(verdict.approvals)


def cancel(request: RollbackRequest, *, user_name: str, now: float, may: bool) -> None:
    """A rollback waiting for approvals is called off by who asked for it or an approver
    (`may`); one running or done is not."""
    if request.status != "waiting":
        raise NoChange(f"this rollback is already {request.status}")
    if not may:
        raise Refusal("only who asked for a rollback, or an approver of it, cancels it")
    request.status, request.finished_at, request.cancelled_by = "cancelled", now, user_name


def placed(request: RollbackRequest, *, channel: str, message_ts: str) -> None:
    """Where the request was posted: its Approve buttons count only on that message."""
    request.channel, request.message_ts = channel, message_ts


def missing(request: RollbackRequest, policy: ApprovalPolicy) -> int:
    """How many more approvals the rollback waits for. Its approvals do not expire, so they
    are counted as of the request (every one of them came after it)."""
    return approval_policy.missing(policy, request.approvals, request.requested_at)


def ready(request: RollbackRequest, policy: ApprovalPolicy) -> bool:
    return request.status == "waiting" and missing(request, policy) == 0


def start(request: RollbackRequest, policy: ApprovalPolicy) -> None:
    if request.status != "waiting":
        raise NoChange(f"this rollback is already {request.status}")
    short = missing(request, policy)
    if short:
        raise Refusal(f"needs {approval_policy.approvals_text(short, more=True)}")
    request.status = "running"


def finish(request: RollbackRequest, *, ok: bool, now: float) -> None:
    """The worker's own outcome; it replaces a "lost" verdict that came first."""
    if request.status != "running" and not (request.status == "failed" and request.lost):
        raise TransitionError(f"this rollback is {request.status}, not running")
    request.status = "succeeded" if ok else "failed"
    request.finished_at = now
    request.lost = False


def report_lost(request: RollbackRequest, *, now: float) -> None:
    """Its worker stopped answering: failed, unless the worker reports otherwise later."""
    if request.status != "running":
        raise TransitionError(f"this rollback is {request.status}, not running")
    request.status = "failed"
    request.finished_at = now
    request.lost = True
