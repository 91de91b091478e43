"""Everything a role of the bot shares: config, Redis, the store, Slack and the job queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from saq import Queue

from bot.coalesce import SharedRead
from bot.config import Config
from bot.messages import Block
from bot.settings import Settings
from bot.slack import Notifier, web_client
from bot.status import status_blocks
from bot.store import Store

log = logging.getLogger(__name__)

CLOSE_STEP_SECONDS = 15.0


@dataclass
class Services:
    settings: Settings
    config: Config
    redis: Redis
    store: Store
    notifier: Notifier
    queue: Queue
    # /release status: a burst of requests shares fresh reads (and their rendering) instead
    # of one each.
    status: SharedRead[list[Block]] = field(init=False)
    # Work a handler starts after its ack without the queue (the flag kill switch).
    _tasks: set[asyncio.Task[Any]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.status = SharedRead(lambda: status_blocks(self.store, self.config))

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        async def logged() -> None:
            try:
                await work
            except Exception:
                log.exception("background work failed")

        self.track(asyncio.create_task(logged()))

    async def drain_background(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def track(self, task: asyncio.Task[Any] | None) -> None:
        """Close waits for `task` (background work that must not lose Redis under it)."""
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def clone_path(self) -> Path:
        return self.settings.state_dir / "repo"

    @classmethod
    def create(cls, settings: Settings, config: Config) -> Services:
        if settings.redis_url is None:
            raise ValueError("no Redis URL: start the embedded Redis first (bot.cli does)")
        if settings.embedded_redis:
            from bot.embedded_redis import PollingQueue, client

            redis: Redis = client(settings.redis_url)
            store = Store(redis, settings.redis_prefix)
            queue: Queue = PollingQueue(client(settings.redis_url), name=store.keys.queue_name)
        else:
            # A burst of requests waits briefly for a free connection instead of failing.
            pool = BlockingConnectionPool.from_url(settings.redis_url, max_connections=64,
                                                   timeout=2, socket_connect_timeout=2,
                                                   socket_timeout=10)
            redis = Redis.from_pool(pool)
            store = Store(redis, settings.redis_prefix)
            queue = Queue.from_url(settings.redis_url, name=store.keys.queue_name)
        slack = web_client(settings.bot_token, settings.slack_api_url)
        notifier = Notifier(slack, store, config, settings.update_delay)
        return cls(settings=settings, config=config, redis=redis, store=store,
                   notifier=notifier, queue=queue)

    async def close(self) -> None:
        # Each step on its own: a Redis that is down must not keep the rest from closing.
        await self.drain_background()
        for step in (self.notifier.drain, self.queue.disconnect, self.redis.aclose):
            try:
                # Bounded: a connection that never answers (seen with the embedded Redis)
                # must not keep the process from ending.
                await asyncio.wait_for(step(), CLOSE_STEP_SECONDS)
            except Exception:
                log.warning("closing: %s failed", step.__qualname__, exc_info=True)
