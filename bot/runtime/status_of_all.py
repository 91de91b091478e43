"""`/release status` of a bot of several services, one line each (handlers.commands.
which_service): all the services read in one Redis round trip (plus one for all their
releases in flight), and that read shared as each service's own status is (bot.runtime.
shared_read): callers that arrive while it runs share the next one, and its result is served
again while it is at most `max_age` old and no service's own status was dropped since it
started (a change made through this process: bot.runtime.web, handlers.commands.release), so
it is never older than what a service's own `/release status` would show. Each line shows its
service's freezes (the file's, and Slack's read in the same round trip); the read is not
served past the moment one of them ends or one of the file starts.

Read service by service, each request cost 50 pipelines for 50 services, and a burst of them
took seconds to ack (bench/many_services.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from bot.adapters.redis.store import summaries
from bot.blocks.release import Block
from bot.runtime.shared_read import SharedRead
from bot.services.show_status import all_services_blocks, line_changes_at, render_line

if TYPE_CHECKING:
    from bot.runtime.container import Services


@dataclass(frozen=True)
class _Read:
    generations: tuple[int, ...]  # the services' status generations before it started
    blocks: list[Block]
    # Per service, when the freezes its line shows change (its clock), or None.
    changes_at: tuple[float | None, ...]


class StatusOfAll:
    def __init__(self, redis: Redis, max_age: float) -> None:
        self.redis = redis
        # The services of the bot, in their order (bot.runtime.container adds each).
        self.members: list[Services] = []
        self._read = SharedRead(self._read_all, max_age=max_age, fresh=self._fresh)
        # The releases read last time, not decoded again while unchanged (Store.summaries).
        self._known: dict[bytes, tuple[float, str]] = {}

    def _generations(self) -> tuple[int, ...]:
        return tuple(each.status.generation for each in self.members)

    async def _read_all(self) -> _Read:
        # Taken before the read: a drop that comes while it runs makes its result stale.
        generations = self._generations()
        found = await summaries(
            self.redis,
            [(each.store, [env.name for env in each.config.environments]) for each in self.members],
            self._known,
        )
        lines = []
        changes_at = []
        for status, each in zip(found, self.members, strict=True):
            now = each.clock()
            lines.append(render_line(status, each.config, now))
            # When its line changes by the clock alone (a freeze, a window), by its own clock.
            changes_at.append(line_changes_at(each.config, status.freezes, now))
        # Rendered once per read: every caller it serves gets the same blocks.
        return _Read(generations, all_services_blocks(lines), tuple(changes_at))

    def _fresh(self, read: _Read) -> bool:
        """Whether no line's freezes or windows changed since the read, by each service's
        clock."""
        return all(
            at is None or each.clock() < at
            for each, at in zip(self.members, read.changes_at, strict=True)
        )

    async def __call__(self) -> list[Block]:
        """The status of all the services, a line each, in their order."""
        generations = self._generations()
        snapshot = self._read.snapshot()
        if snapshot is not None and snapshot.generations == generations:
            return snapshot.blocks
        if snapshot is not None:
            # Read before some service's state changed: not served again. (With no snapshot
            # served, the shared read is one that starts after this call, so after every
            # change this caller could know of.)
            self._read.invalidate()
        return (await self._read()).blocks

    async def close(self) -> None:
        await self._read.close()
