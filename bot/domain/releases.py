"""Releases, their deploys and gates: plain data and the transitions allowed between states.

Every transition is a pure function that checks the state it expects and raises
`TransitionError` otherwise; the store applies it atomically in Redis.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.domain.approval_policy import Approval as Approval  # where gates' approvals are
from bot.domain.config import Config

GateStatus = Literal["pending", "running", "passed", "failed", "waived"]
DeployStatus = Literal["queued", "running", "succeeded", "failed", "blocked"]
ReleasePhase = Literal["creating", "active", "done"]


class TransitionError(Exception):
    """The release is not in the state a change expects (a duplicate or a stale request)."""


class NoChange(TransitionError):
    """The change is already in place (a double click, a re-delivery, or a write retried after
    its reply was lost): nothing to write."""


def span(started: float | None, finished: float | None) -> float | None:
    """How long something took, once it has both started and finished."""
    return None if started is None or finished is None else finished - started


@dataclass
class Rejection:
    user_id: str
    user_name: str
    at: float
    reason: str


@dataclass
class Waiver:
    """Asked for a failed automatic gate: it counts as passed once the approvals of
    [waivers] are in (Config.waiver_policy)."""

    user_id: str
    user_name: str
    at: float
    reason: str
    approvals: list[Approval] = field(default_factory=list)
    granted: bool = False


@dataclass
class Gate:
    id: str
    name: str
    stage: str
    automatic: bool
    status: GateStatus = "pending"
    started_at: float | None = None
    finished_at: float | None = None
    detail: str = ""
    approvals: list[Approval] = field(default_factory=list)
    rejection: Rejection | None = None
    # A failed automatic gate someone asked to waive: who, why, and the approvals it has.
    waiver: Waiver | None = None

    @property
    def duration(self) -> float | None:
        return span(self.started_at, self.finished_at)


@dataclass
class Deploy:
    environment: str
    id: str
    status: DeployStatus = "queued"
    queued_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    detail: str = ""
    # Reported failed because its worker stopped answering, not by the worker itself: the
    # worker's own outcome, if it arrives later (it was cut off from Redis), replaces it.
    lost: bool = False

    @property
    def duration(self) -> float | None:
        return span(self.started_at, self.finished_at)


@dataclass
class Release:
    version: str
    tag: str
    sha: str
    requester: str
    requester_name: str
    created_at: float
    description: str = ""
    issue: str | None = None
    kind: str = "rc"
    phase: ReleasePhase = "creating"
    channel: str | None = None
    message_ts: str | None = None
    gates: list[Gate] = field(default_factory=list)
    deploys: dict[str, Deploy] = field(default_factory=dict)
    superseded_by: str | None = None
    # Set when /release final promotes this candidate: the final version and its tag.
    final_version: str | None = None
    final_tag: str | None = None
    promotion: Literal["tagging", "done"] | None = None
    rolled_back_to: str | None = None  # the tag its environment went back to
    # Who cancelled the candidate, when and why (`/release cancel`): it is never promoted.
    cancelled: Rejection | None = None
    # `/release final --emergency`: a promotion through a closed last environment, asked for
    # with why; it goes once the approvals of [freeze.override] are in (granted).
    override: Waiver | None = None
    rev: int = 0
    # What it brings (bot.domain.changes.summary_line), counted from `changes_base`: the commit
    # production ran when the candidate was made ("" when unknown).
    changes: str = ""
    changes_base: str = ""
    changes_since: str = ""  # what `changes_base` was: "production (`v0.20.3`)"

    def tag_for(self, environment: str, last_environment: str) -> tuple[str, str]:
        """(version, tag) a deploy to `environment` runs: the final one in the last
        environment once promoted, else the candidate."""
        if environment == last_environment and self.final_tag and self.final_version:
            return self.final_version, self.final_tag
        return self.version, self.tag

    def gate(self, gate_id: str) -> Gate:
        for gate in self.gates:
            if gate.id == gate_id:
                return gate
        raise TransitionError(f"{self.version} has no gate {gate_id!r}")

    def gates_of(self, stage: str) -> list[Gate]:
        return [g for g in self.gates if g.stage == stage]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Release:
        data: dict[str, Any] = json.loads(text)
        data["gates"] = [_gate(g) for g in data.get("gates", [])]
        data["deploys"] = {k: Deploy(**d) for k, d in data.get("deploys", {}).items()}
        cancelled = data.get("cancelled")
        data["cancelled"] = Rejection(**cancelled) if cancelled else None
        override = data.get("override")
        if override:
            override["approvals"] = [Approval.from_dict(a) for a in override.get("approvals", [])]
            data["override"] = Waiver(**override)
        return cls(**data)


def _gate(data: dict[str, Any]) -> Gate:
    data["approvals"] = [Approval.from_dict(a) for a in data.get("approvals", [])]
    rejection = data.get("rejection")
    data["rejection"] = Rejection(**rejection) if rejection else None
    waiver = data.get("waiver")
    if waiver:
        waiver["approvals"] = [Approval.from_dict(a) for a in waiver.get("approvals", [])]
        data["waiver"] = Waiver(**waiver)
    return Gate(**data)


def new_release(
    config: Config,
    *,
    version: str,
    tag: str,
    sha: str,
    requester: str,
    requester_name: str,
    description: str,
    issue: str | None,
    now: float,
    kind: str = "rc",
) -> Release:
    wanted = config.hotfix.gates if kind == "hotfix" else None
    gates = [
        Gate(id=g.id, name=g.name, stage=g.stage, automatic=g.automatic)
        for g in config.gates
        if wanted is None or g.id in wanted
    ]
    return Release(
        version=version,
        tag=tag,
        sha=sha,
        requester=requester,
        requester_name=requester_name,
        description=description,
        issue=issue,
        created_at=now,
        gates=gates,
        kind=kind,
    )


# --- transitions -------------------------------------------------------------------------------


def activate(
    release: Release, *, channel: str | None = None, message_ts: str | None = None
) -> None:
    if release.phase != "creating":
        raise TransitionError(f"{release.version} is already {release.phase}")
    release.phase = "active"
    release.channel = channel
    release.message_ts = message_ts


def place_message(release: Release, *, channel: str, message_ts: str) -> None:
    """The release's message, posted late (Slack refused it when the candidate was made)."""
    if release.message_ts is not None:
        raise NoChange(f"{release.tag} has its message already")
    if release.phase != "active":
        raise TransitionError(f"{release.tag} is no longer in flight")
    release.channel, release.message_ts = channel, message_ts


def queue_deploy(release: Release, environment: str, deploy_id: str, now: float) -> Deploy:
    current = release.deploys.get(environment)
    if current is not None and current.status in ("queued", "running"):
        raise TransitionError(f"{release.version} is already {current.status} for {environment}")
    deploy = Deploy(environment=environment, id=deploy_id, queued_at=now)
    release.deploys[environment] = deploy
    # A new deploy means the gates of that environment must be checked again.
    for gate in release.gates_of(environment):
        if gate.automatic:
            gate.status, gate.started_at, gate.finished_at, gate.detail = (
                "pending",
                None,
                None,
                "",
            )
            gate.waiver = None  # a waiver is of one failure, not of what a new deploy does
    return deploy


def find_deploy(release: Release, deploy_id: str) -> Deploy:
    for deploy in release.deploys.values():
        if deploy.id == deploy_id:
            return deploy
    raise TransitionError(f"{release.version} has no deploy {deploy_id}")


def start_deploy(release: Release, deploy_id: str, now: float) -> Deploy:
    deploy = find_deploy(release, deploy_id)
    if deploy.status != "queued":
        raise TransitionError(f"deploy {deploy_id} is {deploy.status}, not queued")
    deploy.status, deploy.started_at = "running", now
    return deploy


def block_deploy(release: Release, deploy_id: str, now: float, detail: str) -> Deploy:
    deploy = find_deploy(release, deploy_id)
    if deploy.status != "queued":
        raise TransitionError(f"deploy {deploy_id} is {deploy.status}, not queued")
    deploy.status, deploy.finished_at, deploy.detail = "blocked", now, detail
    return deploy


def finish_deploy(
    release: Release, deploy_id: str, now: float, *, ok: bool, detail: str = ""
) -> Deploy:
    """The worker's own outcome; it replaces a "lost" verdict that came first."""
    deploy = find_deploy(release, deploy_id)
    if (
        deploy.finished_at == now
        and deploy.status == ("succeeded" if ok else "failed")
        and not deploy.lost
    ):
        raise NoChange(f"deploy {deploy_id} is already recorded as {deploy.status}")
    if deploy.status != "running" and not (deploy.status == "failed" and deploy.lost):
        raise TransitionError(f"deploy {deploy_id} is {deploy.status}, not running")
    deploy.status = "succeeded" if ok else "failed"
    deploy.finished_at, deploy.detail, deploy.lost = now, detail, False
    return deploy


def report_lost(release: Release, deploy_id: str, now: float, *, detail: str) -> Deploy:
    """The deploy's worker stopped answering (or is shutting down): failed, unless the worker
    itself reports otherwise later."""
    deploy = find_deploy(release, deploy_id)
    if deploy.status != "running":
        raise TransitionError(f"deploy {deploy_id} is {deploy.status}, not running")
    deploy.status, deploy.finished_at, deploy.detail, deploy.lost = "failed", now, detail, True
    return deploy


def start_gate(release: Release, gate_id: str, now: float) -> Gate:
    gate = release.gate(gate_id)
    if gate.status != "pending":
        raise TransitionError(f"gate {gate_id} is {gate.status}, not pending")
    gate.status, gate.started_at = "running", now
    return gate


def note_waiting(release: Release, gate_id: str, detail: str) -> Gate:
    """What a running gate waits for (a CI gate: the contexts still pending), in its `detail`
    until it finishes, for its checklist line. Unchanged, there is nothing to write."""
    gate = release.gate(gate_id)
    if gate.status != "running":
        raise TransitionError(f"gate {gate_id} is {gate.status}, not running")
    if gate.detail == detail:
        raise NoChange(f"gate {gate_id} says {detail!r} already")
    gate.detail = detail
    return gate


def finish_gate(release: Release, gate_id: str, now: float, *, ok: bool, detail: str = "") -> Gate:
    gate = release.gate(gate_id)
    if gate.status != "running":
        raise TransitionError(f"gate {gate_id} is {gate.status}, not running")
    gate.status = "passed" if ok else "failed"
    gate.finished_at, gate.detail = now, detail
    return gate


def rerun_refusal(release: Release, gate: Gate, last_environment: str) -> str | None:
    """Why the failed automatic `gate` may not run again now (None if it may): against what
    its environment runs, while the release is in flight there."""
    if not gate.automatic:
        return f"{gate.name} is decided by people, not run"
    if release.phase != "active" or release.superseded_by or release.cancelled is not None:
        return f"{release.tag} is no longer in flight"
    if (release.final_tag or release.promotion) and gate.stage != last_environment:
        return f"{release.tag} is promoted already; its {gate.stage} gates are behind it"
    deploy = release.deploys.get(gate.stage)
    if deploy is None or deploy.status != "succeeded":
        state = deploy.status if deploy else "not deployed"
        return f"its deploy to {gate.stage} is {state}; Retry deploy runs the gates with it"
    if gate.status != "failed":
        return f"{gate.name} is {gate.status}: there is nothing to re-run"
    return None


def rerun_gate(release: Release, gate_id: str, last_environment: str) -> Gate:
    """A failed automatic gate, pending again (a job runs it: bot.services.deploy_release)."""
    gate = release.gate(gate_id)
    refusal = rerun_refusal(release, gate, last_environment)
    if refusal is not None:
        raise TransitionError(refusal)
    gate.status, gate.started_at, gate.finished_at, gate.detail = "pending", None, None, ""
    gate.waiver = None
    return gate


def fail_unfinished_gates(
    release: Release, environment: str, now: float, detail: str
) -> list[Gate]:
    """The automatic gates of `environment` that a run left pending or running (its worker
    stopped, or the environment moved on) are failed, with why: never left "running"."""
    unfinished = [
        g
        for g in release.gates_of(environment)
        if g.automatic and g.status in ("pending", "running")
    ]
    if not unfinished:
        raise TransitionError(f"no gate of {release.tag} in {environment} is unfinished")
    for gate in unfinished:
        gate.status, gate.finished_at, gate.detail = "failed", now, detail
    return unfinished


def go_live(release: Release) -> None:
    """The promoted release is in the last environment: it is no longer in flight."""
    if not release.final_tag or release.phase != "active":
        raise TransitionError(f"{release.tag} is not a promotion in flight")
    release.phase = "done"


def overtake(release: Release, newer: str) -> None:
    """A newer release went live in the last environment: an older promotion that never got
    there (its deploy blocked or failed) is no longer in flight, and says by what it was
    overtaken. Deploying it now would go backwards; a rollback is how one does that."""
    if release.phase != "active" or not release.final_tag:
        raise TransitionError(f"{release.tag} is not a promotion in flight")
    release.superseded_by = newer
    release.phase = "done"


def mark_rolled_back(release: Release, to_tag: str) -> None:
    release.rolled_back_to = to_tag
