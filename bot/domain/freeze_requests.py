"""Freeze requests: `/release freeze` under `[freeze] required` above 0. A request waits for
that many approvals of [freeze] approvers, then the freeze holds from that moment until its
`until`; a Reject by an approver ends it; unapproved, it expires after `request_hours` or at
its `until`, whichever comes first.

Plain data and pure transitions. Each transition returns what it did as audit notes, which
the store writes in the same transaction as the request (bot.adapters.redis.freeze_requests),
so the trail never says more or less than what happened. A transition that may not happen
raises (NoChange, Refusal, Expired) and nothing is written.
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from bot.domain import approval_policy
from bot.domain.approval_policy import Approval
from bot.domain.approvals import NoChange, Refusal
from bot.domain.config import ApprovalPolicy, Config
from bot.domain.releases import TransitionError
from bot.domain.windows import Freeze

FreezeRequestStatus = Literal["waiting", "set", "rejected", "expired"]


class Expired(TransitionError):
    """The request's time is up: it may only expire now (`expire`), not be approved."""


@dataclass(frozen=True)
class Audited:
    """One audit entry a transition asks for, written with the change it records."""

    action: str
    reason: str
    outcome: str = "ok"


@dataclass
class FreezeRequest:
    id: str
    environment: str
    until: float  # when the freeze would end (seconds since the epoch)
    reason: str
    requester: str
    requester_name: str
    requested_at: float
    expires_at: float  # unapproved by then, it expires
    approvals: list[Approval] = field(default_factory=list)
    status: FreezeRequestStatus = "waiting"
    channel: str = ""  # where its message is: its buttons count only there
    ts: str = ""
    decided_by: str = ""  # who rejected it, or whose approval set it
    decided_at: float | None = None
    rev: int = 0

    @property
    def freeze(self) -> Freeze:
        """The freeze it sets: from when it was decided (its last approval) until `until`,
        as the one who asked for it (they may end it early, as their own)."""
        start = self.decided_at if self.decided_at is not None else self.requested_at
        return Freeze(
            start=datetime.fromtimestamp(start, UTC),
            until=datetime.fromtimestamp(self.until, UTC),
            reason=self.reason,
            who=self.requester,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> FreezeRequest:
        data: dict[str, Any] = json.loads(text)
        data["approvals"] = [Approval.from_dict(a) for a in data.get("approvals", [])]
        return cls(**data)


def freeze_policy(config: Config) -> ApprovalPolicy:
    """[freeze]'s approvals: its count and approvers; whoever asks counts as one approval if
    they are an approver (a freeze only stops changes, so one approver may freeze alone when
    one approval is asked), and approvals do not lapse while the request waits (it expires
    as a whole instead)."""
    return ApprovalPolicy(
        required=config.freeze.required,
        approvers=config.freeze.approvers,
        allow_self_approval=True,
        valid_hours=math.inf,
    )


def new_request(
    *,
    environment: str,
    until: float,
    reason: str,
    requester: str,
    requester_name: str,
    now: float,
    request_hours: float,
) -> FreezeRequest:
    return FreezeRequest(
        id=secrets.token_hex(6),
        environment=environment,
        until=until,
        reason=reason,
        requester=requester,
        requester_name=requester_name,
        requested_at=now,
        expires_at=min(until, now + request_hours * 3600),
    )


def missing(request: FreezeRequest, policy: ApprovalPolicy) -> int:
    """How many more approvals it waits for (they do not lapse: counted as of the request)."""
    return approval_policy.missing(policy, request.approvals, request.requested_at)


def placed(request: FreezeRequest, *, channel: str, ts: str) -> list[Audited]:
    """Where its message was posted: its buttons count only on that message."""
    if request.ts:
        raise NoChange("its message is recorded already")
    request.channel, request.ts = channel, ts
    return []


def unposted(request: FreezeRequest, *, now: float) -> list[Audited]:
    """Slack would not take its message, so nobody can approve it: it ends now, no freeze."""
    if request.status != "waiting":
        raise NoChange(f"this freeze request is {describe_status(request)} already")
    request.status, request.decided_at = "expired", now
    return [Audited("freeze.expire", f"its message could not be posted: {request.reason}")]


def _open(request: FreezeRequest, now: float) -> None:
    if request.status != "waiting":
        raise NoChange(f"this freeze request is {describe_status(request)} already")
    if now >= request.expires_at:
        raise Expired("this freeze request's time is up")


def approve(
    request: FreezeRequest,
    *,
    policy: ApprovalPolicy,
    user_id: str,
    user_name: str,
    now: float,
    is_approver: bool,
) -> list[Audited]:
    """One approval; the one that completes the policy sets the freeze, from `now`."""
    _open(request, now)
    verdict = approval_policy.consider(
        policy,
        request.approvals,
        user_id=user_id,
        user_name=user_name,
        now=now,
        requester=request.requester,
        is_approver=is_approver,
    )
    if verdict.refused == "not an approver":
        raise Refusal("you are not one of the [freeze] approvers")
    if verdict.refused == "already approved":
        raise NoChange("you approved this freeze request already")
    if verdict.refused is not None:  # "own request": [freeze] always lets the asker count
        raise Refusal(f"your approval does not count ({verdict.refused})")
    request.approvals = list(verdict.approvals)
    done = [Audited("freeze.approve", f"{verdict.missing} more needed")]
    if verdict.met:
        request.status, request.decided_by, request.decided_at = "set", user_id, now
        who = ", ".join(a.user_id for a in request.approvals)
        done.append(
            Audited(
                "freeze.set",
                f"asked by {request.requester}, approved by {who}: {request.reason}",
            )
        )
    return done


def reject(request: FreezeRequest, *, user_id: str, now: float, may: bool) -> list[Audited]:
    """An approver (`may`) ends the request: no freeze."""
    _open(request, now)
    if not may:
        raise Refusal("only a [freeze] approver, or whoever asked, rejects a freeze request")
    request.status, request.decided_by, request.decided_at = "rejected", user_id, now
    return [Audited("freeze.reject", request.reason)]


class TimeLeft(NoChange):
    """An expiry that came before the request's time (a clock behind the bot's)."""


def expire(request: FreezeRequest, *, now: float) -> list[Audited]:
    """Its time is up unapproved: it ends without a freeze. NoChange once it was decided;
    TimeLeft before its time."""
    if request.status != "waiting":
        raise NoChange(f"this freeze request is {describe_status(request)} already")
    if now < request.expires_at:
        raise TimeLeft("this freeze request has time left")
    request.status, request.decided_at = "expired", now
    return [
        Audited(
            "freeze.expire",
            f"unapproved ({approval_policy.approvals_text(len(request.approvals))} in): "
            f"{request.reason}",
        )
    ]


def describe_status(request: FreezeRequest) -> str:
    return {
        "waiting": "waiting for approvals",
        "set": "in effect",
        "rejected": "rejected",
        "expired": "expired",
    }[request.status]
