"""The CiChecks port on GitHub (bot.adapters.github): the commit statuses and check runs of
the configured repository, as the CI gate judges them (bot.domain.ci_checks)."""

from __future__ import annotations

from bot.adapters.github import GitHubClient, GitHubConfig, GitHubError, GitHubUnavailable
from bot.domain.ci_checks import CiCheck
from bot.services.ports import CiUnavailable


class GitHubCi:
    def __init__(self, config: GitHubConfig, repository: str) -> None:
        self.config = config
        self.owner, _, self.name = repository.partition("/")
        # Made at first use: its aiohttp session belongs to the running event loop.
        self._client: GitHubClient | None = None

    async def checks(self, sha: str) -> list[CiCheck]:
        if self._client is None:
            self._client = GitHubClient(self.config)
        try:
            found = await self._client.commit_checks(self.owner, self.name, sha)
        except GitHubUnavailable as exc:
            raise CiUnavailable(f"GitHub is unavailable: {exc}") from None
        except GitHubError as exc:  # 404 (no access, no such repository), 401, 422…
            raise CiUnavailable(f"GitHub refused to list the checks: {exc}") from None
        return [CiCheck(c.name, c.state, c.conclusion or "", c.link or "") for c in found]

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
