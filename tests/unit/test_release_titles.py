"""A release message's header says what the release is now: a candidate, a release, or why it
is neither any more; a hotfix says HOTFIX in every state."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.blocks.release import release_fallback_text, release_title
from bot.domain.releases import Gate, Rejection, Release
from tests.helpers.releases import recorded

CANDIDATE = recorded("0.15.0-rc.1", created_at=1.0)
REJECTED = replace(
    CANDIDATE,
    gates=[Gate("qa", "QA", "staging", False, rejection=Rejection("U0BOB", "bob", 2.0, "no"))],
)
PROMOTED = replace(CANDIDATE, final_tag="v0.15.0", final_version="0.15.0")


@pytest.mark.parametrize(
    ("release", "title"),
    [
        (CANDIDATE, "🚀 v0.15.0-rc.1 · release candidate"),
        (replace(CANDIDATE, superseded_by="v0.15.0-rc.2"), "⏭️ v0.15.0-rc.1 · superseded"),
        (REJECTED, "❌ v0.15.0-rc.1 · rejected"),
        (PROMOTED, "🚀 v0.15.0 · release (from v0.15.0-rc.1)"),
        (
            replace(PROMOTED, rolled_back_to="v0.14.1"),
            "⏪ v0.15.0 · release, rolled back (from v0.15.0-rc.1)",
        ),
        (
            replace(PROMOTED, superseded_by="v0.16.0"),
            "⏭️ v0.15.0 · overtaken by v0.16.0 (from v0.15.0-rc.1)",
        ),
        (replace(CANDIDATE, kind="hotfix"), "🚑 HOTFIX v0.15.0-rc.1 · candidate"),
        (replace(PROMOTED, kind="hotfix"), "🚑 HOTFIX v0.15.0 · release (from v0.15.0-rc.1)"),
        (replace(REJECTED, kind="hotfix"), "❌ HOTFIX v0.15.0-rc.1 · rejected"),
    ],
)
def test_the_header_says_what_the_release_is_now(release: Release, title: str) -> None:
    assert release_title(release) == title
    assert release_fallback_text(release) == f"{title.split(' ', 1)[1]} by alice"
