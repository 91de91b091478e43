"""The GitHubDeploys port on GitHub's REST API (bot.adapters.github): workflow runs and
Deployments of the released repository, in the terms bot.services.github_deploys follows."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, cast

from bot.adapters.github import GitHubError, GitHubUnavailable, Run
from bot.adapters.github_repository import GitHubRepository
from bot.domain.github_deploys import DeploymentState, RunState
from bot.services.ports import GitHubDown, GitHubRefused

_PASSED = ("success", "skipped", "neutral", None)
DeploymentStateName = Literal[
    "error", "failure", "inactive", "in_progress", "queued", "pending", "success"
]


class _Translate:
    """GitHub's errors in the port's terms: refused (asking again will not help) or down."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> None:
        if isinstance(exc, GitHubUnavailable):
            raise GitHubDown(exc.reason) from None
        if isinstance(exc, GitHubError):
            raise GitHubRefused(str(exc)) from None


def _state(run: Run) -> RunState:
    return RunState(
        id=run.id,
        status=run.status,
        conclusion=run.conclusion,
        url=run.html_url,
        job=run.job,
        step=run.step,
        failed_jobs=tuple(j.id for j in run.jobs if j.conclusion not in _PASSED),
        head_sha=run.head_sha,
    )


class GitHubDeploysOn:
    def __init__(self, repository: GitHubRepository) -> None:
        self.repository = repository

    @property
    def _where(self) -> tuple[str, str]:
        return self.repository.owner, self.repository.name

    async def dispatch(self, workflow: str, ref: str, inputs: Mapping[str, str]) -> None:
        with _Translate():
            await self.repository.client.dispatch_workflow(*self._where, workflow, ref, inputs)

    async def find_run(self, workflow: str, correlation_id: str, since: float) -> RunState | None:
        with _Translate():
            found = await self.repository.client.find_run(
                *self._where, workflow, correlation_id, datetime.fromtimestamp(since, UTC)
            )
        return _state(found) if found is not None else None

    async def run(self, run_id: int) -> RunState:
        with _Translate():
            return _state(await self.repository.client.run(*self._where, run_id))

    async def log_tail(self, run: RunState, lines: int) -> str:
        tails: list[str] = []
        with _Translate():
            for job_id in run.failed_jobs[:2]:
                tail = await self.repository.client.job_log_tail(*self._where, job_id, lines)
                if tail:
                    tails.append(tail)
        return "\n".join(tails)

    async def cancel(self, run_id: int) -> None:
        with _Translate():
            await self.repository.client.cancel_run(*self._where, run_id)

    async def create_deployment(
        self,
        ref: str,
        environment: str,
        *,
        task: str,
        payload: Mapping[str, Any],
        description: str,
        production: bool,
    ) -> tuple[int, str]:
        with _Translate():
            found = await self.repository.client.create_deployment(
                *self._where,
                ref,
                environment,
                task=task,
                description=description,
                payload=payload,
                production=production,
            )
        return found.id, found.sha

    async def deployment_state(self, deployment_id: int) -> DeploymentState | None:
        with _Translate():
            statuses = await self.repository.client.deployment_statuses(*self._where, deployment_id)
        if not statuses:
            return None
        latest = statuses[0]  # newest first
        return DeploymentState(latest.state, latest.description, latest.log_url)

    async def set_deployment_state(
        self, deployment_id: int, state: str, *, description: str, log_url: str
    ) -> None:
        with _Translate():
            await self.repository.client.create_deployment_status(
                *self._where,
                deployment_id,
                cast(DeploymentStateName, state),
                description=description,
                log_url=log_url or None,
            )

    async def close(self) -> None:
        await self.repository.close()
