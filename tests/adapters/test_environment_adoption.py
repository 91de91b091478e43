"""What an environment runs, learnt rather than deployed (day one: a check's /build-info, or
the newest final tag), against the real Redis: recorded with its audit entry only while
nothing is recorded, so a deploy that finished meanwhile is never overwritten by what a check
saw before it, and replicas learning at once record it once."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from bot.adapters.redis.store import Store

NOW = 1_900_000_000.0


async def adoptions(store: Store) -> list[str]:
    return [e["reason"] for e in await store.audit_entries() if e["action"] == "environment.adopt"]


async def test_a_deploy_recorded_first_is_not_replaced_by_an_adoption(redis: Redis, prefix: str):
    store = Store(redis, prefix, clock=lambda: NOW)
    # The check saw 0.14.0 (the version before); the deploy of 0.15.0 finished since.
    assert await store.set_environment_version("production", "0.15.0", "v0.15.0", "b" * 40)
    assert not await store.adopt_unknown(
        "production", "0.14.0", "v0.14.0", "a" * 40, "reported by its build-info check"
    )
    current = (await store.environment_versions(["production"]))["production"]
    assert current["version"] == "0.15.0" and "adopted" not in current
    assert await redis.llen(store.keys.history("production")) == 1
    assert await adoptions(store) == []


async def test_replicas_learning_at_once_record_it_once(redis: Redis, prefix: str):
    store = Store(redis, prefix, clock=lambda: NOW)
    done = await asyncio.gather(
        *(
            store.adopt_unknown(
                "production", "0.14.0", "v0.14.0", "a" * 40, f"reported by replica {i}"
            )
            for i in range(6)
        )
    )
    assert sorted(done) == [False] * 5 + [True]
    current = (await store.environment_versions(["production"]))["production"]
    assert current["version"] == "0.14.0" and current["adopted"].startswith("reported by")
    assert await redis.llen(store.keys.history("production")) == 1
    assert len(await adoptions(store)) == 1
