"""Requests to change a feature flag, and ramps: plain data and the rules they follow.

A request is asked for in Slack (`/flag set new_search 80`), read against the flags file,
approved when it shows a feature to more people, then committed, deployed and verified. A ramp
is an approved request that raises a flag step by step. The services keep them in Redis
(bot.adapters.redis.flag_requests); nothing here does I/O.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bot.domain import approval_policy
from bot.domain.actors import Actor
from bot.domain.approval_policy import Approval, Verdict
from bot.domain.config import ApprovalPolicy, Config
from bot.domain.flags import Flag, FlagChange, FlagsError, as_operation, raises_exposure


@dataclass
class FlagRequest:
    id: str
    operation: str
    name: str
    requester: str
    requester_name: str
    created_at: float
    percentage: int | None = None
    description: str = ""
    enable: bool = False  # a ramp step also switches the flag on
    steps: list[int] = field(default_factory=list)  # a ramp: its percentages…
    every_seconds: float = 0.0  # …and the time between them
    # new, awaiting approval, approved, applying, done, failed, refused, voided, cancelled
    status: str = "new"
    # Reported failed because the worker deploying it stopped answering; its own outcome, if
    # it comes later, replaces that.
    lost: bool = False
    approvals: list[Approval] = field(default_factory=list)
    before: str = ""  # the flag's state when the request was read, in words
    after: str = ""
    commit: str = ""
    detail: str = ""
    channel: str = ""
    ts: str = ""
    response_url: str | None = None
    parent: str = ""  # a ramp's step: the ramp request, whose message it reports in

    @property
    def change(self) -> FlagChange:
        operation = "set" if self.operation == "ramp" else as_operation(self.operation)
        return FlagChange(
            operation, self.name, percentage=self.percentage, description=self.description
        )

    @property
    def ramp(self) -> bool:
        return self.operation == "ramp"

    @property
    def requested_by(self) -> Actor:
        return Actor(self.requester, self.requester_name, self.channel)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # Each approval also as the bot read them before approvals had one shape ({"user",
        # "at"}), so a bot rolled back to that version still reads the requests in flight.
        data["approvals"] = [{**a.to_dict(), "user": a.user_id} for a in self.approvals]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlagRequest:
        fields = dict(data)
        fields["approvals"] = [Approval.from_dict(a) for a in fields.get("approvals", [])]
        return cls(**fields)


def new_request(actor: Actor, operation: str, name: str, now: float, **fields: Any) -> FlagRequest:
    return FlagRequest(
        id=secrets.token_hex(6),
        operation=operation,
        name=name,
        requester=actor.user_id,
        requester_name=actor.user_name,
        created_at=now,
        channel=actor.channel,
        **fields,
    )


def describe(flag: Flag | None) -> str:
    """A flag's state in words, as requests and ramps record it."""
    return "new" if flag is None else flag.summary


def check_ramp(request: FlagRequest, flag: Flag | None) -> None:
    """A ramp starts from an existing flag and only goes up; FlagsError says why not."""
    if flag is None:
        raise FlagsError(f"There is no flag `{request.name}`; `/flag create` it first.")
    now = flag.rollout_percentage if flag.enabled else 0
    if request.steps[0] <= now:
        raise FlagsError(
            f"A ramp only goes up, and `{request.name}` is at {now}% already; "
            f"start above it, like `{now + 10 if now < 90 else 100}`."
        )


# --- approvals -----------------------------------------------------------------------------


def needs_approval(config: Config, request: FlagRequest, flag: Flag | None) -> bool:
    """Changes that show a feature to more people need the configured approvals; switching
    off, lowering and creating (off, at 0%) need none."""
    if config.flags.policy.required == 0:
        return False
    return request.ramp or raises_exposure(flag, request.change)


def voided(request: FlagRequest, killed_at: float | None, asked_at: float | None = None) -> bool:
    """Whether the kill switch turned the request's flag off after it was asked (at
    `asked_at`, its own creation by default; a ramp's step counts from its ramp's request):
    then it never goes out. A kill switch is never voided."""
    if request.operation == "disable" or killed_at is None:
        return False
    return (request.created_at if asked_at is None else asked_at) <= killed_at


def flag_policy(config: Config) -> ApprovalPolicy:
    """[flags]'s approvals. They do not expire ([flags] has no valid_hours): a request waits
    for its approvals as long as it is kept."""
    return replace(config.flags.policy, valid_hours=math.inf)


def cancel(request: FlagRequest, *, user_name: str, may: bool) -> str | None:
    """A request waiting for approvals is called off by who asked for it or an approver
    (`may`); returns why not, or None once it is cancelled."""
    if request.status != "awaiting approval":
        return f"that request is {request.status} already; nothing to cancel"
    if not may:
        return "only who asked for a flag change, or an approver of it, cancels it"
    request.status, request.detail = "cancelled", f"cancelled by {user_name}"
    return None


def place(request: FlagRequest, channel: str, ts: str) -> None:
    """Where the request's message is, once posted (its buttons' clicks are bound to it)."""
    request.channel, request.ts = channel, ts


def approve(
    request: FlagRequest,
    *,
    policy: ApprovalPolicy,
    user_id: str,
    user_name: str,
    now: float,
    is_approver: bool,
) -> Verdict:
    """Record an approval if the policy accepts it; the request is approved once it has them
    all. Nothing changes when the verdict refuses."""
    verdict = approval_policy.consider(
        policy,
        request.approvals,
        user_id=user_id,
        user_name=user_name,
        now=now,
        requester=request.requester,
        is_approver=is_approver,
        is_open=request.status == "awaiting approval",
    )
    if verdict.accepted:
        request.approvals = list(verdict.approvals)
        if verdict.met:
            request.status = "approved"
    return verdict


# --- ramps ---------------------------------------------------------------------------------


@dataclass
class Ramp:
    name: str
    request: str  # the approved ramp request, whose thread hears each step
    steps: list[int]
    every_seconds: float
    next_step: int = 0
    next_at: float = 0.0
    paused_by: str = ""  # the critical alert it waits for, in words
    expect: str = ""  # the flag's state after the last step: anything else is a person's hand

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ramp:
        return cls(**data)


def ramp_of(request: FlagRequest, now: float) -> Ramp:
    """The ramp an approved ramp request starts: its first step is due at once."""
    return Ramp(
        name=request.name,
        request=request.id,
        steps=request.steps,
        every_seconds=request.every_seconds,
        next_at=now,
        expect=request.before,
    )


def next_step(ramp: Ramp, request: FlagRequest, *, now: float, before: str) -> FlagRequest:
    """The ramp's next step as a request of its own, approved by the ramp's approvals; it
    reports in the ramp's thread."""
    return FlagRequest(
        id=f"{request.id}-{ramp.next_step + 1}",
        operation="set",
        name=ramp.name,
        requester=request.requester,
        requester_name=request.requester_name,
        created_at=now,
        percentage=ramp.steps[ramp.next_step],
        enable=True,
        status="approved",
        approvals=list(request.approvals),
        before=before,
        channel=request.channel,
        ts=request.ts,
        parent=request.id,
    )
