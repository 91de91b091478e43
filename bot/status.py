"""What `/release status` shows: environments, releases in flight, locks."""

from __future__ import annotations

from bot import messages
from bot.config import Config
from bot.locks import parse_lock
from bot.store import Store


async def status_blocks(store: Store, config: Config) -> list[messages.Block]:
    status = await store.status([env.name for env in config.environments])
    locks = {name: info for name, raw in status.raw_locks.items()
             if (info := parse_lock(raw)) is not None}
    return messages.status_message(config, status.versions, status.in_flight, locks)
