"""What `/release status` shows: environments, releases in flight, locks."""

from __future__ import annotations

from bot.blocks import release as messages
from bot.domain import rollbacks
from bot.domain.approvals import Refusal
from bot.domain.config import Config
from bot.domain.locks import parse_lock
from bot.services.ports import StatusReader


async def status_blocks(store: StatusReader, config: Config) -> list[messages.Block]:
    status = await store.status([env.name for env in config.environments])
    locks = {
        name: info
        for name, raw in status.raw_locks.items()
        if (info := parse_lock(raw)) is not None
    }
    rollbacks_to = {
        name: rollback_line(history, name, config.repository.tag_prefix)
        for name, history in status.histories.items()
        if rollbacks.deploys(history)
    }
    return messages.status_message(config, status.versions, status.in_flight, locks, rollbacks_to)


def rollback_line(history: list[dict[str, str]], environment: str, prefix: str) -> str:
    """Where `/release rollback` of `environment` would go now, and why (or why nowhere)."""
    try:
        target = rollbacks.choose_target(history, environment, None, prefix)
    except Refusal as exc:
        return f"No rollback: {exc}."
    return f"A rollback would go to `{target.entry['tag']}`: {target.why}."
