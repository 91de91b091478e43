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
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bot.blocks.release import Block
from bot.domain.actors import Actor
from bot.domain.locks import LockInfo, LockKind

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

    def refresh(self, version: str) -> None: ...


class JobQueue(Protocol):
    """Work for the workers (saq): enqueue returns the job, or None when it already exists."""

    async def enqueue(self, job_or_func: Any, **kwargs: Any) -> Any: ...


# --- the released repository (bot.adapters.git_clone.GitClone) ----------------------------


class GitError(Exception):
    """A git operation failed; the message is fit to show to a person."""


class TagExists(GitError):
    pass


class PushRejected(GitError):
    pass


@dataclass(frozen=True)
class Snapshot:
    """The release branch after a fetch: its head and the tags in its history."""

    head_sha: str
    head_subject: str
    tags_in_history: tuple[str, ...]
    all_tags: dict[str, str]  # tag -> commit sha
    # Why the bot's clone had to be made again on the way (it was damaged), if it did.
    repaired: str | None = None


class Repository(Protocol):
    """The bot's clone of the released repository. Raises GitError (a message fit to show a
    person) when git fails."""

    async def sync_tags(self) -> str | None: ...  # why the clone was made again, if it was

    async def sync(self, branch: str) -> Snapshot: ...

    async def read_branch(self, branch: str) -> Snapshot: ...

    async def newest_branch(self, patterns: tuple[str, ...]) -> str | None: ...

    async def create_and_push_tag(self, tag: str, sha: str, message: str) -> None: ...

    async def delete_remote_tag(self, tag: str) -> None: ...

    async def read_file(self, ref: str, file: str) -> str | None: ...

    async def commit_file(self, branch: str, parent: str, file: str, content: str,
                          message: str, author: tuple[str, str]) -> str: ...

    async def checkout(self, tag: str, sha: str) -> Path: ...

    async def checkout_with_file(self, ref: str, file: str, content: str) -> Path: ...

    async def remove_tree(self, tree: Path) -> None: ...


# --- locks, running deploys, claims (bot.adapters.redis) ----------------------------------


class EnvironmentLock(Protocol):
    """A deploy's lock on its environment, renewed while held, that knows how long it is
    safe (bot.adapters.redis.locks.RenewingLock). Acquiring raises LockHeld."""

    @property
    def ttl(self) -> float: ...

    @property
    def safe(self) -> bool: ...

    @property
    def stop_at(self) -> float: ...

    def listen(self, listener: Callable[[float], None]) -> Callable[[], None]: ...

    async def acquire(self, holder: str, reason: str) -> LockInfo: ...

    async def retake(self) -> bool: ...

    async def hand_over(self, holder: str, reason: str, kind: LockKind) -> bool: ...

    async def release(self) -> bool: ...


class Locks(Protocol):
    def for_deploy(self, environment: str, deploy_id: str) -> EnvironmentLock: ...

    def repository(self, holder: str,
                   reason: str) -> AbstractAsyncContextManager[EnvironmentLock]: ...

    async def take(self, environment: str, user: str, reason: str, *,
                   force: bool = False) -> LockInfo | None: ...  # raises LockRefused

    async def remove(self, environment: str, user: str, *,
                     force: bool = False) -> LockInfo: ...  # raises LockRefused


class RunningDeploys(Protocol):
    async def add(self, deploy_id: str, entry: dict[str, str]) -> None: ...

    async def finish(self, deploy_id: str) -> None: ...

    async def lapsed(self) -> list[tuple[str, dict[str, str]]]: ...

    async def forget(self, deploy_id: str) -> None: ...


class CreationClaims(Protocol):
    async def claim(self, kind: str, request_id: str, user_id: str, now: float,
                    seconds: int) -> dict[str, Any] | None: ...

    async def end(self, kind: str, request_id: str) -> None: ...


class FormTickets(Protocol):
    async def open(self, user_id: str, kind: str, what: dict[str, str], seconds: int) -> str: ...

    async def take(self, ticket: str, user_id: str, kind: str) -> dict[str, str] | None: ...
