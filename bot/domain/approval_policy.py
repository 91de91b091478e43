"""One approval policy engine, for a release's gates, rollbacks and flag changes alike.

A policy (`bot.domain.config.ApprovalPolicy`) says how many distinct people must approve, who
may (user IDs and user groups), whether the requester may approve their own request, and how
long an approval counts. Given the approvals recorded so far, the engine decides whether one
more approval by a person is accepted (and why not), and whether the requirement is met.

What the engine cannot know is handed in: whether the person is one of the approvers (user
groups live in Slack: the service looks them up) and whether the thing is open for approval at
all (each kind has its own states). What each refusal is called in Slack stays with the caller.
No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bot.domain.config import ApprovalPolicy


def approvals_text(count: int, *, more: bool = False) -> str:
    """ "1 approval", "2 approvals" ("2 more approvals" with `more`): for the sentences that
    say how many are needed."""
    return f"{count}{' more' if more else ''} approval{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class Approval:
    """One person's approval: the one shape gates, rollbacks and flag requests store."""

    user_id: str
    user_name: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "user_name": self.user_name, "at": self.at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Approval:
        """Also the shape flag requests stored before there was one engine: `{"user", "at"}`,
        without a name (a team's requests in flight survive the upgrade)."""
        user_id = data["user_id"] if "user_id" in data else data["user"]
        return cls(
            user_id=str(user_id), user_name=str(data.get("user_name", "")), at=float(data["at"])
        )


# Why an approval was not accepted.
Refused = Literal["not open", "own request", "not an approver", "already approved"]


@dataclass(frozen=True)
class Verdict:
    """The engine's answer to one approval."""

    refused: Refused | None  # None: accepted
    approvals: tuple[Approval, ...]  # those that count now, the new one included if accepted
    required: int

    @property
    def accepted(self) -> bool:
        return self.refused is None

    @property
    def missing(self) -> int:
        return max(0, self.required - len(self.approvals))

    @property
    def met(self) -> bool:
        return self.missing == 0


def counted(policy: ApprovalPolicy, approvals: Iterable[Approval], now: float) -> list[Approval]:
    """The approvals that count at `now`: not older than the policy's validity, and one per
    person (their first), oldest first as recorded."""
    horizon = now - policy.valid_hours * 3600
    first: dict[str, Approval] = {}
    for approval in approvals:
        if approval.at >= horizon:
            first.setdefault(approval.user_id, approval)
    return list(first.values())


def missing(policy: ApprovalPolicy, approvals: Iterable[Approval], now: float) -> int:
    """How many more distinct approvers the policy asks for."""
    return max(0, policy.required - len(counted(policy, approvals, now)))


def met(policy: ApprovalPolicy, approvals: Iterable[Approval], now: float) -> bool:
    return missing(policy, approvals, now) == 0


def consider(
    policy: ApprovalPolicy,
    approvals: Iterable[Approval],
    *,
    user_id: str,
    user_name: str,
    now: float,
    requester: str,
    is_approver: bool,
    is_open: bool = True,
) -> Verdict:
    """Whether `user_id` may approve now. The checks go from what concerns everyone to what
    concerns this person: not open, their own request, not an approver, already approved."""
    fresh = counted(policy, approvals, now)

    def refuse(why: Refused) -> Verdict:
        return Verdict(refused=why, approvals=tuple(fresh), required=policy.required)

    if not is_open:
        return refuse("not open")
    if user_id == requester and not policy.allow_self_approval:
        return refuse("own request")
    if not is_approver:
        return refuse("not an approver")
    if any(a.user_id == user_id for a in fresh):
        return refuse("already approved")
    mine = Approval(user_id=user_id, user_name=user_name, at=now)
    return Verdict(refused=None, approvals=(*fresh, mine), required=policy.required)
