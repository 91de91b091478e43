"""Approval rules: who may approve a gate, and what a candidate still lacks for promotion.

Pure functions over releases and policies; the store applies them atomically, so a rule checked
here holds at the moment the change is written. Whether one approval counts is the approval
policy engine's to say (bot.domain.approval_policy), as for rollbacks and flag changes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bot.domain import approval_policy
from bot.domain.approval_policy import Approval, Refused
from bot.domain.config import ApprovalPolicy, Config
from bot.domain.releases import (
    Deploy,
    Gate,
    Rejection,
    Release,
    TransitionError,
    Waiver,
    queue_deploy,
)
from bot.domain.releases import NoChange as NoChange  # raised here, caught by the callers


class Refusal(TransitionError):
    """A person may not do this; the message says why (shown to them and audited)."""


def valid_approvals(gate: Gate, policy: ApprovalPolicy, now: float) -> list[Approval]:
    return approval_policy.counted(policy, gate.approvals, now)


def _check_open(release: Release) -> None:
    if release.cancelled is not None:
        raise Refusal(
            f"{release.tag} was cancelled by {release.cancelled.user_name}: "
            f"{release.cancelled.reason}"
        )
    if release.superseded_by:
        raise Refusal(
            f"{release.tag} was superseded by {release.superseded_by}; approve that one instead"
        )
    if release.final_tag:
        raise Refusal(f"{release.tag} has already been promoted as {release.final_tag}")
    if release.promotion is not None:
        # Its approvals were checked when the promotion claimed it; a decision now could not
        # be honoured, so it is refused rather than silently ignored.
        raise Refusal(
            f"{release.tag} is being promoted right now; if something is wrong, "
            "roll back once it is live"
        )
    if release.phase != "active":
        raise Refusal(f"{release.tag} is not open for approvals")


def _manual_gate(release: Release, gate_id: str) -> Gate:
    gate = release.gate(gate_id)
    if gate.automatic:
        raise Refusal(f"{gate.name} is checked automatically; it cannot be approved by hand")
    return gate


def approve(
    release: Release,
    gate_id: str,
    *,
    user_id: str,
    user_name: str,
    now: float,
    policy: ApprovalPolicy,
    is_approver: bool,
) -> Gate:
    """Record an approval of a manual gate; one person counts once per gate."""
    _check_open(release)
    gate = _manual_gate(release, gate_id)
    if gate.rejection is not None:
        raise Refusal(
            f"{gate.name} was rejected by {gate.rejection.user_name}: {gate.rejection.reason}"
        )
    verdict = approval_policy.consider(
        policy,
        gate.approvals,
        user_id=user_id,
        user_name=user_name,
        now=now,
        requester=release.requester,
        is_approver=is_approver,
    )
    if verdict.refused is not None:
        raise _gate_refusal(verdict.refused, release, gate)
    gate.approvals = list(verdict.approvals)  # an approval past its validity is dropped
    gate.status = "passed"
    gate.finished_at = now
    return gate


def _failed_gate(release: Release, gate_id: str) -> Gate:
    _check_open(release)
    gate = release.gate(gate_id)
    if not gate.automatic:
        raise Refusal(f"{gate.name} is decided by people: approve or reject it instead")
    return gate


def ask_waiver(
    release: Release, gate_id: str, *, user_id: str, user_name: str, now: float, reason: str
) -> Gate:
    """Ask that a failed automatic gate count as passed, with why; it does once the
    approvals of [waivers] are in (approve_waiver)."""
    gate = _failed_gate(release, gate_id)
    if gate.status != "failed":
        raise Refusal(f"{gate.name} is {gate.status}: only a failed gate is waived")
    if gate.waiver is not None:
        raise NoChange(f"{gate.waiver.user_name} asked to waive {gate.name} already")
    gate.waiver = Waiver(user_id=user_id, user_name=user_name, at=now, reason=reason)
    return gate


def approve_waiver(
    release: Release,
    gate_id: str,
    *,
    user_id: str,
    user_name: str,
    now: float,
    policy: ApprovalPolicy,
    is_approver: bool,
) -> Gate:
    """An approval of a gate's waiver; the gate is waived (counts as passed) once the policy
    is met. The one who asked never approves it."""
    gate = _failed_gate(release, gate_id)
    waiver = gate.waiver
    if waiver is None or gate.status not in ("failed", "waived"):
        raise Refusal(f"nobody asked to waive {gate.name}")
    if waiver.granted:
        raise NoChange(f"{gate.name} is waived already")
    verdict = approval_policy.consider(
        policy,
        waiver.approvals,
        user_id=user_id,
        user_name=user_name,
        now=now,
        requester=waiver.user_id,
        is_approver=is_approver,
    )
    if verdict.refused == "own request":
        raise Refusal("you asked for this waiver; someone else has to approve it")
    if verdict.refused is not None:
        raise _gate_refusal(verdict.refused, release, gate)
    waiver.approvals = list(verdict.approvals)
    if verdict.met:
        waiver.granted = True
        gate.status = "waived"
        gate.finished_at = now
    return gate


def ask_override(
    release: Release, *, user_id: str, user_name: str, now: float, reason: str
) -> Waiver:
    """`/release final --emergency`: promote through a closed last environment, with why; it
    goes once the approvals of [freeze.override] are in (approve_override)."""
    if not is_open_candidate(release):
        raise Refusal(f"{release.tag} is not an open candidate")
    if release.override is not None and not release.override.granted:
        raise NoChange(f"{release.override.user_name} asked for an emergency override already")
    release.override = Waiver(user_id=user_id, user_name=user_name, at=now, reason=reason)
    return release.override


def approve_override(
    release: Release,
    *,
    user_id: str,
    user_name: str,
    now: float,
    policy: ApprovalPolicy,
    is_approver: bool,
) -> Waiver:
    """An approval of the emergency override; granted once the policy is met. Whoever asked
    for it never approves it, whatever the policy says."""
    override = release.override
    if override is None:
        raise Refusal(f"nobody asked for an emergency override of {release.tag}")
    if override.granted:
        raise NoChange("the emergency override is approved already")
    verdict = approval_policy.consider(
        replace(policy, allow_self_approval=False),
        override.approvals,
        user_id=user_id,
        user_name=user_name,
        now=now,
        requester=override.user_id,
        is_approver=is_approver,
        is_open=is_open_candidate(release),
    )
    if verdict.refused == "own request":
        raise Refusal("you asked for this override; someone else has to approve it")
    if verdict.refused == "not an approver":
        raise Refusal("you are not one of the approvers of emergency overrides")
    if verdict.refused == "already approved":
        raise NoChange("you already approved this override")
    if verdict.refused is not None:
        raise Refusal(f"{release.tag} is not open for approvals")
    override.approvals = list(verdict.approvals)
    override.granted = verdict.met
    return override


def _gate_refusal(why: Refused, release: Release, gate: Gate) -> TransitionError:
    if why == "own request":
        return Refusal(f"you requested {release.tag}, and nobody approves their own release")
    if why == "not an approver":
        return Refusal("you are not one of the approvers for this environment")
    if why == "already approved":
        return NoChange(f"you already approved {gate.name}")
    # The gate's own openness was checked before the engine was asked (_check_open).
    return Refusal(f"{release.tag} is not open for approvals")


def reject(
    release: Release,
    gate_id: str,
    *,
    user_id: str,
    user_name: str,
    now: float,
    reason: str,
    policy: ApprovalPolicy,
    is_approver: bool,
) -> Gate:
    """A rejection stops the candidate: its gate fails and it can no longer be promoted."""
    _check_open(release)
    gate = _manual_gate(release, gate_id)
    if gate.rejection is not None:
        raise NoChange(f"{gate.name} was already rejected by {gate.rejection.user_name}")
    # The requester may stop their own release, whatever the policy says of approving it.
    if user_id != release.requester and not is_approver:
        raise Refusal("you are not one of the approvers for this environment")
    gate.rejection = Rejection(user_id=user_id, user_name=user_name, at=now, reason=reason)
    gate.status = "failed"
    gate.finished_at = now
    return gate


def is_open_candidate(release: Release) -> bool:
    """Still a candidate that may be approved and promoted (the newest of these is what
    `/release final` promotes and `/release cancel` stops by default)."""
    return release.phase == "active" and not release.superseded_by and not release.final_tag


def cancel(release: Release, *, user_id: str, user_name: str, now: float, reason: str) -> None:
    """`/release cancel`: an open candidate stops here. Its tag stays (it was pushed, and git
    keeps what was tested); it leaves the releases in flight and can no longer be promoted."""
    if release.cancelled is not None:
        raise NoChange(f"{release.tag} was cancelled already by {release.cancelled.user_name}")
    if release.final_tag or release.promotion:
        raise Refusal(
            f"{release.final_tag or release.tag} is promoted already; "
            "`/release rollback` takes a release back"
        )
    if release.superseded_by or release.phase != "active":
        raise Refusal(f"{release.tag} is not open (superseded, or no longer in flight)")
    release.cancelled = Rejection(user_id=user_id, user_name=user_name, at=now, reason=reason)
    release.phase = "done"


def supersede(release: Release, newer: str) -> None:
    if release.superseded_by or release.final_tag or release.promotion or release.phase != "active":
        raise NoChange(f"{release.tag} is not open")
    release.superseded_by = newer
    release.phase = "done"  # out of the releases in flight


@dataclass(frozen=True)
class Readiness:
    missing: list[str]
    approvers: list[Approval]  # the distinct approvals that count, oldest first

    @property
    def ready(self) -> bool:
        return not self.missing


def readiness(release: Release, config: Config, now: float) -> Readiness:
    """What `release` still lacks before it may go into the last environment."""
    target = config.last_environment.name
    policy = config.release_policy(
        release.kind, config.environments[-2].name if len(config.environments) > 1 else target
    )
    missing: list[str] = []
    if release.cancelled is not None:
        missing.append(f"it was cancelled by {release.cancelled.user_name}")
    if release.superseded_by:
        missing.append(f"it was superseded by {release.superseded_by}")
    if release.final_tag:
        missing.append(f"it was already promoted as {release.final_tag}")
    elif release.promotion:
        missing.append("it is being promoted right now")
    counted: dict[str, Approval] = {}
    for env in config.environments[:-1]:
        deploy = release.deploys.get(env.name)
        if deploy is None or deploy.status != "succeeded":
            state = deploy.status if deploy else "not deployed"
            missing.append(f"the deploy to {env.name} has not succeeded ({state})")
        for gate in release.gates_of(env.name):
            if gate.rejection is not None:
                missing.append(
                    f"{gate.name} was rejected by {gate.rejection.user_name}: "
                    f"{gate.rejection.reason}"
                )
            elif gate.automatic and gate.status not in ("passed", "waived"):
                missing.append(f"{gate.name} has not passed ({gate.status})")
            elif not gate.automatic and policy.required > 0:
                fresh = valid_approvals(gate, config.release_policy(release.kind, env.name), now)
                if not fresh:
                    missing.append(f"{gate.name} needs an approval")
                for approval in fresh:
                    counted.setdefault(approval.user_id, approval)
    short = policy.required - len(counted)
    if short > 0:
        who = (
            " or ".join(
                f"<!subteam^{a}>" if a.startswith("S") else f"<@{a}>" for a in policy.approvers
            )
            if policy.approvers
            else "any approver"
        )
        missing.append(
            f"needs {short} more approval{'s' if short > 1 else ''} from {who} "
            f"({len(counted)} of {policy.required} distinct approvers)"
        )
    return Readiness(missing=missing, approvers=sorted(counted.values(), key=lambda a: a.at))


# --- promotion ------------------------------------------------------------------------------


def start_promotion(
    release: Release, *, config: Config, now: float, final_version: str
) -> Readiness:
    """Claim the candidate for promotion, if and only if it is ready now. Atomic in the store,
    so two `/release final` at once promote once, and never without the approvals."""
    if release.promotion is not None:
        raise NoChange(f"{release.tag} is already being promoted")
    state = readiness(release, config, now)
    if not state.ready:
        raise Refusal(f"{release.tag} is not ready: " + "; ".join(state.missing))
    release.promotion = "tagging"
    release.final_version = final_version
    return state


def finish_promotion(release: Release, *, final_tag: str) -> None:
    if release.promotion != "tagging":
        raise TransitionError(f"{release.tag} is not being promoted")
    release.promotion = "done"
    release.final_tag = final_tag


def retry_refusal(release: Release, environment: str, config: Config, now: float) -> str | None:
    """Why the failed (or blocked, or lost) deploy of `release` to `environment` may not be
    tried again now; None if it may. The last environment takes a promoted release only, and
    only while the approvals its promotion needed still hold: a retry never deploys there with
    fewer approvals than a promotion would."""
    deploy = release.deploys.get(environment)
    if release.phase != "active" or release.superseded_by:
        return f"{release.tag} is no longer in flight"
    if deploy is None or deploy.status not in ("failed", "blocked"):
        status = deploy.status if deploy else "not deployed"
        return f"its deploy to {environment} is {status}: there is nothing to retry"
    if environment == config.last_environment.name:
        if not release.final_tag:
            return f"only a promoted release goes to {environment}: `/release final` does that"
        as_candidate = replace(release, final_tag=None, promotion=None)
        still = readiness(as_candidate, config, now)
        if not still.ready:
            return "its approvals no longer hold: " + "; ".join(still.missing)
    return None


def retry_deploy(
    release: Release, environment: str, deploy_id: str, *, config: Config, now: float
) -> Deploy:
    """Queue the deploy again, if `retry_refusal` allows it now (checked in the same atomic
    change, so a release superseded meanwhile is not retried)."""
    refusal = retry_refusal(release, environment, config, now)
    if refusal is not None:
        raise Refusal(refusal)
    return queue_deploy(release, environment, deploy_id, now)


def abandon_promotion(release: Release) -> None:
    """The final tag could not be made: the candidate is as it was before."""
    if release.promotion != "tagging":
        raise TransitionError(f"{release.tag} is not being promoted")
    release.promotion = None
    release.final_version = None
