"""A released repository's feature flags file, as a web team keeps it (comments and all)."""

from __future__ import annotations

from typing import Any

from tests.helpers.repos import GitRemote

# Where the bot's default config looks for the flags file in the released repository.
FLAGS_PATH = "data/feature-flags.toml"

FLAGS = """\
# Feature flags of the website. Owned by the web team; see docs/flags.md.

[flags.new_infrastructure]
enabled = false   # flipped by releasebot
description = "The new CDN and load balancers"
rollout_percentage = 0

# Search is half rolled out.
[flags.new_search]
enabled = true
description = "Search v2"
rollout_percentage = 50
"""


def push_flags(remote: GitRemote, text: str, message: str = "flags") -> str:
    """Commit `text` as the flags file on main and push it; the new head."""
    return remote.commit_file(FLAGS_PATH, text, message)


def old_flag_request(**fields: Any) -> dict[str, Any]:
    """A flag request as the bot stored it before approvals had one shape ({user, at}): a
    team's state from before the upgrade, which must still load and be approved."""
    record: dict[str, Any] = {
        "id": "0123abcd",
        "operation": "set",
        "name": "new_search",
        "requester": "U0ALICE",
        "requester_name": "alice",
        "created_at": 1.0,
        "percentage": 80,
        "description": "",
        "enable": False,
        "steps": [],
        "every_seconds": 0.0,
        "status": "awaiting approval",
        "lost": False,
        "approvals": [{"user": "U0BOB", "at": 2.0}],
        "before": "on, 50%",
        "after": "",
        "commit": "",
        "detail": "",
        "channel": "C0DEV",
        "ts": "1.000",
        "response_url": None,
        "parent": "",
    }
    return {**record, **fields}
