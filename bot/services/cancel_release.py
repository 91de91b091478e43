"""/release cancel: stop an open candidate, audited; its tag stays, it is never promoted."""

from __future__ import annotations

import logging
from functools import partial
from typing import Protocol

from bot.blocks import release as messages
from bot.domain import approvals
from bot.domain.actors import Actor
from bot.domain.approvals import NoChange
from bot.domain.releases import Release, TransitionError
from bot.services import ci_gates
from bot.services.ports import HasChat, HasConfig, HasStore

log = logging.getLogger(__name__)


class CancelNeeds(HasStore, HasChat, HasConfig, Protocol):
    """The release's record, its message and thread, the tag prefix."""


async def cancel_candidate(
    services: CancelNeeds, actor: Actor, version: str | None, reason: str
) -> str:
    """Cancel `version` (a candidate's version or tag), or the newest open candidate; returns
    the answer for the person who asked (every outcome is audited)."""
    store = services.store
    release = await _candidate(services, version)
    if release is None:
        named = f"`{version}`" if version else "an open release candidate"
        text = f"There is no {named} to cancel; `/release status` shows what is in flight."
        await store.audit(actor, "release.cancel", outcome="refused", reason=text[:500])
        return text
    try:
        release, _ = await store.update_release(
            release.version,
            partial(
                approvals.cancel,
                user_id=actor.user_id,
                user_name=actor.user_name,
                now=store.clock(),
                reason=reason,
            ),
            actor,
            "release.cancel",
            reason=reason,
        )
    except NoChange as exc:
        await store.audit(
            actor, "release.cancel", release=release.version, outcome="duplicate", reason=str(exc)
        )
        return f"Nothing changed: {exc}."
    except TransitionError as exc:
        await store.audit(
            actor, "release.cancel", release=release.version, outcome="refused", reason=str(exc)
        )
        return f"I did not cancel `{release.tag}`: {exc}."
    services.chat.refresh(release.version)
    try:
        await ci_gates.stop_waiting(services, release, "the candidate was cancelled")
    except Exception:  # the cancel is recorded; a gate left waiting fails at its timeout
        log.warning("could not stop the CI gates of %s waiting", release.version, exc_info=True)
    await services.chat.thread(
        release.version,
        messages.note(
            f"🚫 {messages.mention(actor.user_id)} cancelled `{release.tag}`: "
            f"{messages.escape(reason)}"
        ),
        f"{actor.user_name} cancelled {release.tag}",
    )
    return (
        f"Cancelled `{release.tag}`: it can no longer be promoted; its tag stays. "
        "`/release rc` makes a new candidate."
    )


async def _candidate(services: CancelNeeds, version: str | None) -> Release | None:
    if version is None:
        candidates = [
            r for r in await services.store.releases_in_flight() if approvals.is_open_candidate(r)
        ]
        return candidates[-1] if candidates else None
    prefix = services.config.repository.tag_prefix
    bare = version[len(prefix) :] if prefix and version.startswith(prefix) else version
    return await services.store.get_release(bare)
