"""Fresh reads shared by a burst: callers that arrive while a read runs share the next one."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class _Snapshot(Generic[T]):
    started: float  # when the read that produced it started (the state is at least this new)
    generation: int  # SharedRead's generation then: an invalidate() since makes it unusable
    value: T


class SharedRead(Generic[T]):
    """Wraps a read so that concurrent callers share one call without seeing stale data.

    A caller never joins a read that started before it arrived (that read might miss a change
    the caller already knows of); it waits for the next one, which starts as soon as the
    current one ends and serves everyone who arrived meanwhile. A burst of N callers costs two
    reads instead of N.

    With `max_age` > 0 the last result is also a snapshot: a caller gets it at once, with no
    I/O and no await, while the read that produced it started at most `max_age` seconds ago
    and no `invalidate()` came after that read started, and `fresh` (if given) says it still
    is. So what a caller sees is never older than `max_age` (for changes made anywhere: other
    processes, other replicas), never older than a change this process announced with
    `invalidate()` (for those, a snapshot is not served at all), and never past the moment
    the result itself said it would change (`fresh`). A failed read is never a snapshot: the
    next caller reads again.

    Under steady use nobody waits for a read: once a snapshot is half its `max_age` old, the
    next caller is still served it but starts the read that replaces it.
    """

    def __init__(
        self,
        read: Callable[[], Awaitable[T]],
        *,
        max_age: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        fresh: Callable[[T], bool] | None = None,
    ) -> None:
        self._read = read
        self._max_age = max_age
        self._clock = clock
        # Whether a result is still right on its own terms (what it shows ends at a known
        # instant: a freeze): checked before a snapshot is served, besides its age.
        self._fresh = fresh
        self._next: asyncio.Future[T] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._generation = 0
        self._snapshot: _Snapshot[T] | None = None

    def snapshot(self) -> T | None:
        """The last result if it may still be served (see above), else None. Called within
        the event loop: it may start the read that renews the snapshot."""
        snapshot = self._snapshot
        if snapshot is None or snapshot.generation != self._generation:
            return None
        if self._fresh is not None and not self._fresh(snapshot.value):
            self._snapshot = None
            return None
        age = self._clock() - snapshot.started
        if age > self._max_age:
            return None
        if age > self._max_age / 2 and not self._reading():
            self._next_read()
        return snapshot.value

    async def __call__(self) -> T:
        value = self.snapshot()
        if value is not None:
            return value
        return await asyncio.shield(self._next_read())

    @property
    def generation(self) -> int:
        """How many times `invalidate()` was called: a read built on this one's results (a
        summary of several, bot.runtime.status_of_all) is stale once it changes."""
        return self._generation

    def invalidate(self) -> None:
        """Something may have changed what the read returns: no snapshot taken before now is
        served again (a read already running still answers the callers waiting for it, who
        arrived before the change was announced)."""
        self._generation += 1
        self._snapshot = None

    async def close(self) -> None:
        """Waits for a read in flight (one that renews the snapshot has no caller to wait)."""
        if self._runner is not None and not self._runner.done():
            with contextlib.suppress(Exception):
                await self._runner

    def _reading(self) -> bool:
        return self._runner is not None and not self._runner.done()

    def _next_read(self) -> asyncio.Future[T]:
        """The read the next caller gets: one that starts after now."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            # A renewal's failure has nobody waiting for it: retrieved here, not logged as lost.
            self._next.add_done_callback(_retrieve)
        if not self._reading():
            self._runner = asyncio.create_task(self._run())
        return self._next

    async def _run(self) -> None:
        while self._next is not None:
            future, self._next = self._next, None
            started, generation = self._clock(), self._generation
            try:
                result = await self._read()
            except Exception as exc:
                future.set_exception(exc)
            else:
                if self._max_age > 0 and generation == self._generation:
                    self._snapshot = _Snapshot(started, generation, result)
                future.set_result(result)


def _retrieve(future: asyncio.Future[T]) -> None:
    if not future.cancelled():
        future.exception()
