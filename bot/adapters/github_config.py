"""How to reach GitHub, as settings read it from the environment.

Apart from :mod:`bot.adapters.github` so that reading the settings does not import aiohttp
and gidgethub (the client's libraries): a process that never calls GitHub, or only checks its
settings, does not pay for them.  Import nothing heavy here."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_API_URL = "https://api.github.com"


@dataclass(frozen=True)
class GitHubConfig:
    """How to reach GitHub.  Either ``token`` or ``app_id`` with ``app_private_key`` (PEM)."""

    api_url: str = DEFAULT_API_URL
    token: str | None = field(default=None, repr=False)
    app_id: str | None = None
    app_private_key: str | None = field(default=None, repr=False)
    # The longest one request may spend waiting out rate limits and retries in all.
    max_wait: float = 60.0
    # Retries of a 5xx answer or a failed connection, with backoff doubling from `backoff`.
    retries: int = 3
    backoff: float = 0.5
    timeout: float = 30.0
    # An installation token is renewed this long before it expires (GitHub's last an hour),
    # so that a request never goes out with one that expires on the way.
    token_refresh_margin: float = 300.0
    # URLs whose ETag and body are kept for conditional requests (the oldest go first).
    cache_size: int = 512
    user_agent: str = "releasebot"

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.token, self.app_private_key) if s)
