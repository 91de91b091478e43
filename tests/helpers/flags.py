"""A released repository's feature flags file, as a web team keeps it (comments and all)."""

from __future__ import annotations

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
