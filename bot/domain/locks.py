"""Environment locks as rules: who holds one and why, and who may take or remove it. The
Redis side (tokens, renewal, expiry) is bot.adapters.redis.locks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

LockKind = Literal["deploy", "manual", "rollback"]


@dataclass(frozen=True)
class LockInfo:
    holder: str
    reason: str
    since: float
    token: str
    kind: LockKind = "deploy"


class LockHeld(Exception):
    def __init__(self, key: str, info: LockInfo) -> None:
        super().__init__(f"{key} is held by {info.holder}")
        self.info = info


def format_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def parse_lock(raw: str | bytes | None) -> LockInfo | None:
    return None if raw is None else LockInfo(**json.loads(raw))


class LockRefused(Exception):
    """Taking or removing a lock is not allowed; the message says why and what would work."""


def check_take(current: LockInfo | None, user: str, force: bool) -> None:
    """May `user` lock an environment that `current` holds? Raises LockRefused if not."""
    if current is None or (current.holder == user and current.kind == "manual"):
        return
    if current.kind == "deploy":
        raise LockRefused("a deploy is running there; lock it when the deploy has finished")
    if not force:
        raise LockRefused(
            "it is already locked; add `--force` to take the lock over "
            "(this is announced in the channel and audited)"
        )


def check_release(current: LockInfo | None, user: str, force: bool) -> None:
    """May `user` unlock? A deploy's lock never; a rollback's lock anyone; another person's
    lock only with force."""
    if current is None:
        raise LockRefused("it is not locked")
    if current.kind == "deploy":
        raise LockRefused("a deploy is running there; its lock goes when the deploy ends")
    if current.kind == "manual" and current.holder != user and not force:
        raise LockRefused(
            "someone else holds the lock; add `--force` to unlock it anyway "
            "(this is announced in the channel and audited)"
        )
