"""Locking and unlocking environments on people's request, with audit and announcements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.blocks import release as messages
from bot.domain.actors import Actor
from bot.domain.locks import LockRefused
from bot.services.ports import HasConfig, HasLocks, HasStore


class LockNeeds(HasConfig, HasStore, HasLocks, Protocol):
    """Locks people take, audited."""


@dataclass(frozen=True)
class LockOutcome:
    answer: str  # to the person who asked
    announcement: str | None = None  # to the release channel, when someone else's lock moved


async def lock(
    services: LockNeeds, actor: Actor, environment: str, reason: str, force: bool
) -> LockOutcome:
    services.config.check_environment(environment)
    try:
        previous = await services.locks.take(environment, actor.user_id, reason, force=force)
    except LockRefused as exc:
        await services.store.audit(
            actor, "lock.take", environment=environment, outcome="refused", reason=str(exc)
        )
        raise
    taken_over = previous is not None and previous.holder != actor.user_id
    await services.store.audit(
        actor,
        "lock.take",
        environment=environment,
        outcome="forced" if taken_over else "ok",
        reason=reason,
    )
    answer = (
        f"🔒 *{environment}* is locked: {messages.escape(reason)}. Deploys to it wait "
        f"until `/release unlock {environment}`."
    )
    if not taken_over or previous is None:
        return LockOutcome(answer)
    return LockOutcome(
        answer,
        announcement=(
            f"🔒 {messages.mention(actor.user_id)} took over the *{environment}* lock from "
            f"{messages.mention(previous.holder)} (who had it for "
            f"“{messages.escape(previous.reason)}”). New reason: {messages.escape(reason)}"
        ),
    )


async def unlock(services: LockNeeds, actor: Actor, environment: str, force: bool) -> LockOutcome:
    services.config.check_environment(environment)
    try:
        previous = await services.locks.remove(environment, actor.user_id, force=force)
    except LockRefused as exc:
        await services.store.audit(
            actor, "lock.release", environment=environment, outcome="refused", reason=str(exc)
        )
        raise
    someone_else = previous.kind == "manual" and previous.holder != actor.user_id
    await services.store.audit(
        actor,
        "lock.release",
        environment=environment,
        outcome="forced" if someone_else else "ok",
        reason=previous.reason,
    )
    answer = f"🔓 *{environment}* is unlocked; deploys may go ahead."
    if not someone_else and previous.kind != "rollback":
        return LockOutcome(answer)
    return LockOutcome(
        answer,
        announcement=(
            f"🔓 {messages.mention(actor.user_id)} unlocked *{environment}* (locked by "
            f"{messages.mention(previous.holder)}: “{messages.escape(previous.reason)}”)."
        ),
    )
