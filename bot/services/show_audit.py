"""`/release audit [VERSION]`: the trail of one release (or the latest entries), privately."""

from __future__ import annotations

from typing import Protocol

from bot.blocks import release as messages
from bot.blocks.audit import audit_message
from bot.domain.actors import Actor
from bot.services.ports import HasChat, HasConfig, HasStore

LATEST_SHOWN = 100  # what audit_message shows at most


class AuditNeeds(HasConfig, HasStore, HasChat, Protocol):
    """Reading the trail and answering with it."""


async def find_release_version(services: AuditNeeds, name: str) -> str | None:
    """A candidate by its version or tag, or a promoted release by its final version."""
    prefix = services.config.repository.tag_prefix
    version = name[len(prefix) :] if prefix and name.startswith(prefix) else name
    if await services.store.get_release(version) is not None:
        return version
    return await services.store.release_by_final_version(version)


async def answer_audit(
    services: AuditNeeds, actor: Actor, response_url: str | None, name: str | None
) -> None:
    """After the ack (the trail can be long): the release's history, privately; reading it
    is itself audited."""
    version = None
    if name is not None:
        version = await find_release_version(services, name)
        if version is None:
            text = f"I know no release `{name}`."
            await services.chat.answer(response_url, messages.problem(text), text)
            return
    total = None
    if version is None:
        # The newest entries only, read from the stream's end: the trail may be years long.
        entries, total = await services.store.latest_audit(LATEST_SHOWN)
    else:
        entries = [e async for e in services.store.audit_trail(version)]
    await services.store.audit(actor, "audit.read", release=version or "")
    await services.chat.answer(
        response_url, audit_message(version, entries, total=total), "Audit trail"
    )
