"""`/release status` of a bot of several services, one line each (handlers.commands.
which_service): all the services read in one Redis round trip (plus one for all their
releases in flight), and that read shared as each service's own status is (bot.runtime.
shared_read): callers that arrive while it runs share the next one, and its result is served
again while it is at most `max_age` old and no service's own status was dropped since it
started (a change made through this process: bot.runtime.web, handlers.commands.release), so
it is never older than what a service's own `/release status` would show. Each line shows its
service's freezes (the file's, and Slack's read in the same round trip).

Read service by service, each request cost 50 pipelines for 50 services, and a burst of them
took seconds to ack (bench/many_services.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis.asyncio import Redis

from bot.adapters.redis.store import summaries
from bot.blocks.release import Block
from bot.runtime.shared_read import SharedRead
from bot.services.show_status import all_services_blocks, render_line

if TYPE_CHECKING:
    from bot.runtime.container import Services


class StatusOfAll:
    def __init__(self, redis: Redis, max_age: float) -> None:
        self.redis = redis
        # The services of the bot, in their order (bot.runtime.container adds each).
        self.members: list[Services] = []
        self._read = SharedRead(self._read_all, max_age=max_age)
        # The releases read last time, not decoded again while unchanged (Store.summaries).
        self._known: dict[bytes, tuple[float, str]] = {}

    def _generations(self) -> tuple[int, ...]:
        return tuple(each.status.generation for each in self.members)

    async def _read_all(self) -> tuple[tuple[int, ...], list[Block]]:
        # Taken before the read: a drop that comes while it runs makes its result stale.
        generations = self._generations()
        found = await summaries(
            self.redis,
            [(each.store, [env.name for env in each.config.environments]) for each in self.members],
            self._known,
        )
        lines = [
            render_line(status, each.config, each.clock())
            for status, each in zip(found, self.members, strict=True)
        ]
        # Rendered once per read: every caller it serves gets the same blocks.
        return generations, all_services_blocks(lines)

    async def __call__(self) -> list[Block]:
        """The status of all the services, a line each, in their order."""
        generations = self._generations()
        snapshot = self._read.snapshot()
        if snapshot is not None and snapshot[0] == generations:
            return snapshot[1]
        if snapshot is not None:
            # Read before some service's state changed: not served again. (With no snapshot
            # served, the shared read is one that starts after this call, so after every
            # change this caller could know of.)
            self._read.invalidate()
        return (await self._read())[1]

    async def close(self) -> None:
        await self._read.close()
