"""Deploys that GitHub runs, as rules: what a workflow dispatch carries, what a run's or a
Deployment's state means for the deploy, and how its progress reads.

The adapter (bot.adapters.github_deploys) asks GitHub; the use case
(bot.services.github_deploys) dispatches, follows and decides with these."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# The placeholders a workflow's inputs may hold, and the deploy value each one takes (the
# same values a deploy command gets in its environment).
PLACEHOLDERS: Mapping[str, str] = {
    "env": "RELEASE_ENV",
    "version": "RELEASE_VERSION",
    "tag": "RELEASE_TAG",
    "sha": "RELEASE_SHA",
    "rollback": "RELEASE_ROLLBACK",
    "flags_commit": "FLAGS_COMMIT",
}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

# A run ends in one of these (GitHub's conclusions); only success deploys.
SUCCEEDED = "success"


def unknown_placeholders(template: str) -> list[str]:
    """The `{name}`s of `template` that are no placeholder (a config mistake)."""
    return [name for name in _PLACEHOLDER.findall(template) if name not in PLACEHOLDERS]


def fill(template: str, values: Mapping[str, str]) -> str:
    """`template` with each placeholder replaced by its deploy value; a value a deploy does
    not have (flags_commit outside a flag deploy) is empty. `rollback` is "true" or "false",
    as a workflow's boolean input takes it."""

    def value(match: re.Match[str]) -> str:
        name = match[1]
        raw = values.get(PLACEHOLDERS.get(name, ""), "")
        if name == "rollback":
            return "true" if raw == "1" else "false"
        return raw

    return _PLACEHOLDER.sub(value, template)


def workflow_inputs(
    templates: Mapping[str, str], values: Mapping[str, str], correlation_input: str, run_id: str
) -> dict[str, str]:
    """The dispatch's inputs: the configured ones filled in, and the correlation id the bot
    finds its run by (the workflow shows it in its run-name)."""
    inputs = {name: fill(template, values) for name, template in templates.items()}
    inputs[correlation_input] = run_id
    return inputs


def dispatch_ref(ref: str, values: Mapping[str, str], branch: str) -> str:
    """The git ref a workflow runs on: "tag" (the deployed tag), "branch" (the release
    branch), or a ref named as it is."""
    if ref == "tag":
        return values.get("RELEASE_TAG", "")
    if ref == "branch":
        return branch
    return ref


@dataclass(frozen=True)
class RunState:
    """A workflow run as the deploy follows it."""

    id: int
    status: str  # queued, in_progress, completed (or waiting, requested, pending)
    conclusion: str | None
    url: str
    job: str | None = None
    step: str | None = None
    failed_jobs: tuple[int, ...] = ()  # ids of the jobs that failed, for their logs
    head_sha: str = ""  # the commit it runs

    @property
    def finished(self) -> bool:
        return self.status == "completed"

    @property
    def started(self) -> bool:
        """Picked up by a runner: no longer only waiting in GitHub's queue."""
        return self.status not in ("queued", "requested", "pending", "waiting")

    def progress(self) -> str:
        """One line for the release message: where the run is now."""
        if self.finished:
            return f"completed: {self.conclusion or 'no conclusion'}"
        if self.status == "waiting":
            return "waiting on GitHub (an environment's reviewers, a timer or a concurrency group)"
        if not self.started:
            return f"{self.status} on GitHub Actions"
        where = " → ".join(part for part in (self.job, self.step) if part)
        return f"in progress: {where}" if where else "in progress"


@dataclass(frozen=True)
class DeploymentState:
    """The latest status an executor reported on a GitHub Deployment."""

    state: str  # queued, pending, in_progress, success, failure, error, inactive
    description: str
    log_url: str

    @property
    def finished(self) -> bool:
        return self.state in ("success", "failure", "error", "inactive")

    @property
    def started(self) -> bool:
        return self.state not in ("queued", "pending")

    @property
    def succeeded(self) -> bool:
        return self.state == "success"

    def progress(self) -> str:
        said = f": {self.description}" if self.description else ""
        return f"{self.state.replace('_', ' ')}{said}"


def workflow_problems(
    workflow: Mapping[object, object], inputs: Iterable[str], correlation_input: str
) -> list[str]:
    """What keeps a workflow file (as YAML reads it) from being dispatched the way the
    config says: it must take `workflow_dispatch` with every input the bot passes, and show
    the correlation id in its `run-name` (else the bot cannot find its run)."""
    # YAML 1.1 reads a bare `on:` key as the boolean true.
    triggers = workflow.get("on", workflow.get(True))
    if isinstance(triggers, str):
        triggers = {triggers: None}
    elif isinstance(triggers, list):
        triggers = {name: None for name in triggers}
    if not isinstance(triggers, Mapping) or "workflow_dispatch" not in triggers:
        return ["it does not take workflow_dispatch (add `on: workflow_dispatch:` with its inputs)"]
    dispatch = triggers.get("workflow_dispatch") or {}
    declared = dispatch.get("inputs") if isinstance(dispatch, Mapping) else None
    declared_names = set(declared) if isinstance(declared, Mapping) else set()
    problems = []
    wanted = [*inputs, correlation_input]
    missing = [name for name in wanted if name not in declared_names]
    if missing:
        problems.append(
            f"its workflow_dispatch does not declare the inputs {', '.join(missing)} "
            "(GitHub refuses a dispatch with inputs it does not declare)"
        )
    run_name = str(workflow.get("run-name") or "")
    if not re.search(rf"inputs\.{re.escape(correlation_input)}\b", run_name):
        problems.append(
            f"its run-name does not show inputs.{correlation_input}, so the bot could not "
            "find the run it started: run-name: Deploy ${{ inputs.version }} "
            f"[${{{{ inputs.{correlation_input} }}}}]"
        )
    return problems
