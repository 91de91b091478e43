"""The ports use cases talk through: what they need of the outside world, not who provides it.

A use-case module declares, as a Protocol of read-only properties, the few ports it uses (its
"needs"), built from the ports below. The composition root (`bot.runtime.container`) is one
object that provides them all, so every caller passes it unchanged, while each use case sees,
and the type checker lets it touch, only what its needs name: no raw Redis client, no Slack
client, no service locator. Adapters satisfy these protocols structurally; nothing here imports
them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from bot.blocks.release import Block
from bot.domain.actors import Actor
from bot.domain.config import CheckConfig
from bot.domain.health.checks import CheckId, Observation, Result
from bot.domain.health.incidents import CheckState
from bot.domain.health.windows import Window
from bot.domain.releases import Release

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


# --- health monitoring (bot.services.monitor_health) ----------------------------------------


class MonitorState(Protocol):
    """What monitoring keeps between ticks: check states and results, monitoring windows,
    acknowledgements, the one-tick-at-a-time lock and the scheduler's time slots."""

    def tick_lock(self, seconds: float) -> AbstractAsyncContextManager[bool]: ...

    async def claim_tick(self, job: str, slot: int, interval: float) -> bool: ...

    async def tick_outlook(self, environments: Sequence[str]
                           ) -> tuple[dict[str, Window], set[str], str]: ...

    async def stored_checks(self, checks: Sequence[CheckId], results: int
                            ) -> list[tuple[bytes | None, list[Result]]]: ...

    async def results(self, checks: Sequence[CheckId], count: int) -> list[list[Result]]: ...

    async def record_results(self, results: Sequence[tuple[CheckId, Result]],
                             keep: int) -> None: ...

    async def save_states(self, states: Mapping[CheckId, bytes]) -> str: ...

    async def check_state(self, check: CheckId) -> CheckState: ...

    async def save_check_state(self, check: CheckId, state: CheckState) -> None: ...

    async def check_states(self, checks: Sequence[CheckId]) -> list[CheckState]: ...

    async def acknowledgements(self, incident_ids: Sequence[str]
                               ) -> dict[str, tuple[str, float]]: ...

    async def acknowledge(self, incident_id: str, user: str, at: float) -> str | None: ...

    async def window(self, environment: str) -> Window | None: ...

    async def start_window(self, environment: str, window: Window) -> None: ...

    async def end_window(self, environment: str) -> bool: ...


class HealthProbe(Protocol):
    """Runs health checks over HTTP (bot.adapters.http_probe)."""

    async def observe_all(self, checks: Sequence[CheckConfig]) -> list[Observation]: ...

    async def close(self) -> None: ...


class RunningReleases(Protocol):
    """Read only: what each environment runs, and the release records (for their threads)."""

    async def environment_versions(self, names: list[str]) -> dict[str, dict[str, str]]: ...

    async def get_release(self, version: str) -> Release | None: ...
