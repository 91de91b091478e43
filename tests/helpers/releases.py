"""A release record as `/release rc` leaves it, for tests that build history through the
store's own API instead of through git and Slack."""

from __future__ import annotations

from bot.domain.releases import Release


def recorded(
    version: str, *, created_at: float, sha: str = "", requester: str = "U0ALICE"
) -> Release:
    """The candidate `version` (tag `v{version}`) asked for by `requester` (alice by default:
    the name is the ID's tail, lower case)."""
    return Release(
        version=version,
        tag=f"v{version}",
        sha=sha or "a" * 40,
        requester=requester,
        requester_name=requester.removeprefix("U0").lower(),
        created_at=created_at,
    )
