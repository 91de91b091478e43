"""The freezes set from Slack against the real Redis: ending them early (`/release unfreeze`)
is all or nothing with its audit entry, and two people ending the same freeze at once end it
once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bot.adapters.redis.freezes import RedisFreezes
from bot.adapters.redis.outbox import RedisOutbox
from bot.adapters.redis.store import Store
from bot.domain.actors import Actor
from bot.domain.windows import Freeze

NOW = 1_900_000_000.0
ALICE = Actor("U0ALICE", "alice", "C0DEV")
CAROL = Actor("U0CAROL", "carol", "C0DEV")


def records(redis, prefix) -> tuple[RedisFreezes, Store]:
    store = Store(redis, prefix, clock=lambda: NOW)
    return RedisFreezes(redis, store.keys, store.queue_audit, RedisOutbox(redis, store.keys)), store


def a_freeze(reason: str) -> Freeze:
    return Freeze(
        start=datetime.fromtimestamp(NOW, UTC),
        until=datetime.fromtimestamp(NOW + 7200, UTC),
        reason=reason,
        who=ALICE.user_id,
    )


async def ends(store: Store) -> list[str]:
    return [e["user_id"] for e in await store.audit_entries() if e["action"] == "freeze.end"]


async def test_two_ending_one_freeze_at_once_end_it_once(redis, prefix):
    freezes, store = records(redis, prefix)
    freeze_id = await freezes.add("production", a_freeze("holidays"))
    done = await asyncio.gather(
        *(
            freezes.end_early("production", [freeze_id], who, f"ended by {who.user_name}")
            for who in (ALICE, CAROL) * 4
        )
    )
    assert sorted(done) == [False] * 7 + [True]
    assert await freezes.active("production", NOW) == []
    assert len(await ends(store)) == 1


async def test_ending_a_freeze_that_is_gone_ends_none_of_the_others(redis, prefix):
    freezes, store = records(redis, prefix)
    kept = await freezes.add("production", a_freeze("holidays"))
    assert not await freezes.end_early("production", [kept, "gone"], CAROL, "both")
    assert [i for i, _ in await freezes.active("production", NOW)] == [kept]
    assert await ends(store) == []
    assert await freezes.end_early("production", [kept], CAROL, "the one there")
    assert await ends(store) == [CAROL.user_id]
