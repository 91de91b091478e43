"""What `/release status` shows: environments, releases in flight, locks."""

from __future__ import annotations

from bot.blocks import release as messages
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
    return messages.status_message(config, status.versions, status.in_flight, locks)
