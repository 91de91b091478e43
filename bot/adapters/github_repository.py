"""The released repository on GitHub, shared by the adapters that ask GitHub about it (its CI
checks, its deploys): one client, and so one ETag cache, one installation token and one
view of the rate limit, for all of them."""

from __future__ import annotations

from bot.adapters.github import GitHubClient, GitHubConfig


class GitHubRepository:
    def __init__(self, config: GitHubConfig, repository: str) -> None:
        self.config = config
        self.owner, _, self.name = repository.partition("/")
        # Made at first use: its aiohttp session belongs to the running event loop.
        self._client: GitHubClient | None = None

    @property
    def client(self) -> GitHubClient:
        if self._client is None:
            self._client = GitHubClient(self.config)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
