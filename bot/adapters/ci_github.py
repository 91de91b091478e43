"""The CiChecks port on GitHub (bot.adapters.github): the commit statuses and check runs of
the configured repository, as the CI gate judges them (bot.domain.ci_checks)."""

from __future__ import annotations

from bot.adapters.github import GitHubError, GitHubUnavailable
from bot.adapters.github_repository import GitHubRepository
from bot.domain.ci_checks import CiCheck
from bot.services.ports import CiUnavailable


class GitHubCi:
    def __init__(self, repository: GitHubRepository) -> None:
        self.repository = repository

    async def checks(self, sha: str) -> list[CiCheck]:
        repo = self.repository
        try:
            found = await repo.client.commit_checks(repo.owner, repo.name, sha)
        except GitHubUnavailable as exc:
            raise CiUnavailable(f"GitHub is unavailable: {exc}") from None
        except GitHubError as exc:  # 404 (no access, no such repository), 401, 422…
            raise CiUnavailable(f"GitHub refused to list the checks: {exc}") from None
        return [CiCheck(c.name, c.state, c.conclusion or "", c.link or "") for c in found]

    async def close(self) -> None:
        await self.repository.close()
