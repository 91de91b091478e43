"""One optimistic transaction for every record the bot changes (a release, a rollback
request, a flag request): read under WATCH, apply a pure change, write the record with what
goes with it (its audit entry, index updates) in one MULTI, and start again on a concurrent
write. A change that raises (TransitionError) writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from bot.domain.releases import TransitionError


class Record(Protocol):
    """A stored record with a revision (which every write moves on) and a JSON form."""

    rev: int

    def to_json(self) -> str: ...


R = TypeVar("R", bound=Record)
T = TypeVar("T")


async def update_atomically(
    redis: Redis,
    key: str,
    *,
    load: Callable[[bytes | str], R],
    change: Callable[[R], T],
    also: Callable[[Pipeline, R], None],
    missing: str,
) -> tuple[R, T]:
    """Apply `change` to the record at `key`; `also` queues what is written with it. Raises
    TransitionError(`missing`) if there is no such record. Returns the new record and what
    `change` returned."""
    while True:
        async with redis.pipeline(transaction=True) as pipe:
            await pipe.watch(key)
            raw = await pipe.get(key)
            if raw is None:
                raise TransitionError(missing)
            record = load(raw)
            result = change(record)
            record.rev += 1
            pipe.multi()
            pipe.set(key, record.to_json())
            also(pipe, record)
            try:
                await pipe.execute()
            except WatchError:
                continue
            return record, result
