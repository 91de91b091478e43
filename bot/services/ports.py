"""The ports use cases talk through: what they need of the outside world, not who provides it.

A use-case module declares, as a Protocol of read-only properties, the few ports it uses (its
"needs"), built from the ports below. The composition root (`bot.runtime.container`) is one
object that provides them all, so every caller passes it unchanged, while each use case sees,
and the type checker lets it touch, only what its needs name: no raw Redis client, no Slack
client, no service locator. Adapters satisfy these protocols structurally; nothing here imports
them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from bot.blocks.release import Block
from bot.domain.actors import Actor

# Seconds since the epoch; tests and the demo give their own.
Clock = Callable[[], float]

class AuditLog(Protocol):
    """The append-only audit trail (the Redis stream `audit`)."""

    async def audit(self, actor: Actor, action: str, **fields: str) -> str: ...


class Chat(Protocol):
    """What the bot says in Slack. None of these raise: a report of what happened must not undo
    or stop it (a failure is logged)."""

    async def post(
        self, channel: str, blocks: list[Block], text: str, thread_ts: str | None = None
    ) -> dict[str, Any] | None: ...

    async def thread(self, version: str, blocks: list[Block], text: str) -> None: ...

    async def answer(self, response_url: str | None, blocks: list[Block], text: str) -> None: ...

    async def update(self, channel: str, ts: str, blocks: list[Block], text: str) -> None: ...

    def refresh(self, version: str) -> None: ...


class JobQueue(Protocol):
    """Work for the workers (saq): enqueue returns the job, or None when it already exists."""

    async def enqueue(self, job_or_func: Any, **kwargs: Any) -> Any: ...
