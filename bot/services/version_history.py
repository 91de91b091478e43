"""The tags a next candidate is made from, read through the version index.

git is the truth of which tags exist, but listing them grows with the history (0.15 s of git
at 20,000 tags, on every `/release rc`). The index (the `VersionIndex` port) keeps the bot's
tags sorted as versions: the newest few are read at once, and git only says which of them are
in the release branch's history. It is rebuilt from git's whole tag list in the background
(bot.runtime.scheduler), on first use, and after a push meets a tag the index did not know
(someone tagged by hand): a tag made outside the bot is seen within one rebuild, and never
reused, since its push is refused. Every tag the bot pushes or takes back goes through
`push_tag` and `take_back_tag` here, which keep the index with it.
"""

from __future__ import annotations

import logging
from typing import Protocol

from bot.domain.versions import is_final_tag
from bot.services.ports import HasClock, HasConfig, HasRepository, HasVersionIndex

log = logging.getLogger(__name__)

# Read this many index entries at a time: a next version needs the candidates above the last
# final and that final, a handful in a real history.
PAGE = 8
# Past this many entries without a final in the branch's history (a branch far behind the
# others' tags), git's own listing answers instead.
MOST_WALKED = 256


class VersionHistoryNeeds(HasRepository, HasVersionIndex, HasConfig, HasClock, Protocol):
    """The clone, the index, the tag prefix, and the time for the rebuild's record."""


async def rebuild_version_index(needs: VersionHistoryNeeds) -> int:
    """Fetch every tag and rebuild the index from them; returns how many it holds. Safe
    beside creators: a tag pushed while git's list is read is kept (`begin_rebuild`)."""
    await needs.versions.begin_rebuild()
    await needs.git.sync_tags()
    return await needs.versions.rebuild(await needs.git.version_tags(), needs.clock())


async def refresh_version_index(needs: VersionHistoryNeeds) -> None:
    """The scheduler's rebuild, which follows tags pushed or deleted by hand."""
    count = await rebuild_version_index(needs)
    log.debug("version index rebuilt: %d tags", count)


async def push_tag(needs: VersionHistoryNeeds, tag: str, sha: str, message: str) -> None:
    """Tag `sha` and push it (GitError, TagExists as the Repository port raises), then index
    it: a tag that could not be indexed is taken back, and the error raised. Left pushed, a
    final version missing from the index would make the next candidate one of that version
    again (v1.4.0-rc.3 after v1.4.0), which no push would refuse."""
    await needs.git.create_and_push_tag(tag, sha, message)
    try:
        await needs.versions.add(tag, sha)
    except Exception:
        log.warning("could not index %s; taking the tag back", tag)
        try:
            await take_back_tag(needs, tag)
        except Exception:
            log.exception("could not take back %s, which is not indexed", tag)
        raise


async def take_back_tag(needs: VersionHistoryNeeds, tag: str) -> None:
    """Delete a pushed tag again, and its index entry (left behind, it would only make the
    next candidate skip a number)."""
    await needs.git.delete_remote_tag(tag)
    try:
        await needs.versions.remove(tag)
    except Exception:
        log.warning("could not remove %s from the version index", tag, exc_info=True)


async def tags_in_history(
    needs: VersionHistoryNeeds, branch: str, head: str, *, may_rebuild: bool
) -> tuple[str, ...]:
    """The tags in `head`'s history from the newest version down to the newest final, newest
    first (what `bot.domain.versions.next_candidate` needs).

    An index not built yet is built first when `may_rebuild` (the caller holds the repository
    lock); otherwise, as when the index holds no final of this history near its top, git's own
    listing answers, after a fetch of every tag.
    """
    if not await needs.versions.is_built():
        if not may_rebuild:
            return await _from_git(needs, branch)
        await rebuild_version_index(needs)
    prefix = needs.config.repository.tag_prefix
    found: list[str] = []
    for skip in range(0, MOST_WALKED, PAGE):
        page = await needs.versions.newest(skip, PAGE)
        ours = await needs.git.in_history(head, tuple(sha for _, sha in page))
        for tag, sha in page:
            if sha in ours:
                found.append(tag)
                if is_final_tag(tag, prefix):
                    return tuple(found)
        if len(page) < PAGE:
            return tuple(found)  # no final in this history at all: every tag there is
    log.info("no final version in the newest %d indexed tags; asking git", MOST_WALKED)
    return await _from_git(needs, branch)


async def _from_git(needs: VersionHistoryNeeds, branch: str) -> tuple[str, ...]:
    await needs.git.sync_tags()
    return (await needs.git.read_branch(branch)).tags_in_history
