"""Fresh reads shared by a burst: callers that arrive while a read runs share the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedRead(Generic[T]):
    """Wraps a read so that concurrent callers share one call without seeing stale data.

    A caller never joins a read that started before it arrived (that read might miss a change
    the caller already knows of); it waits for the next one, which starts as soon as the
    current one ends and serves everyone who arrived meanwhile. A burst of N callers costs two
    reads instead of N.
    """

    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self._read = read
        self._next: asyncio.Future[T] | None = None
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self) -> T:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        future = self._next
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await asyncio.shield(future)

    async def _run(self) -> None:
        while self._next is not None:
            future, self._next = self._next, None
            try:
                result = await self._read()
            except Exception as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
