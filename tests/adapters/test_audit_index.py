"""A release's audit trail is read through its own index, whatever the length of the stream;
the newest entries from the stream's end; and what an earlier version recorded without indexes
is still shown, before, during and after the backfill that indexes it."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from bot.adapters.redis.store import Store
from bot.domain.actors import Actor
from bot.domain.releases import Release
from tests.helpers.redis_monitor import commands_on
from tests.helpers.releases import recorded
from tests.helpers.rollbacks import rollback_request

ALICE = Actor(user_id="U0ALICE", user_name="alice", channel="C0DEV")


async def noise(store: Store, count: int, release: str = "other") -> None:
    """`count` entries of other releases, written as the bot writes them (in batches)."""
    for start in range(0, count, 1000):
        await asyncio.gather(
            *(
                store.audit(ALICE, "gate.finish", release=f"{release}-{i % 50}")
                for i in range(start, min(count, start + 1000))
            )
        )


async def trail(store: Store, release: str) -> list[dict[str, str]]:
    return [entry async for entry in store.audit_trail(release)]


async def test_one_release_is_read_at_the_cost_of_its_own_entries(
    redis: Redis, prefix: str
) -> None:
    store = Store(redis, prefix)
    for n in range(30):
        await store.audit(ALICE, f"step.{n}", release="1.0.0")
    await noise(store, 2_000)
    async with commands_on(prefix) as small:
        first = await trail(store, "1.0.0")
    await noise(store, 20_000)
    async with commands_on(prefix) as large:
        second = await trail(store, "1.0.0")
    assert [e["action"] for e in first] == [f"step.{n}" for n in range(30)]
    assert second == first
    assert large.count == small.count, (small.commands, large.commands)
    # No scan of the stream: each entry is fetched by its own ID.
    assert not [c for c in large.commands if '"-"' in c or '"+"' in c]


async def test_the_latest_entries_come_from_the_end_of_the_stream(
    redis: Redis, prefix: str
) -> None:
    store = Store(redis, prefix)
    await noise(store, 3_000)
    for n in range(5):
        await store.audit(ALICE, f"last.{n}")
    async with commands_on(prefix) as seen:
        entries, total = await store.latest_audit(100)
    assert total == 3_005
    assert len(entries) == 100
    assert [e["action"] for e in entries[-5:]] == [f"last.{n}" for n in range(5)]
    assert [e["id"] for e in entries] == sorted(
        (e["id"] for e in entries), key=lambda i: tuple(map(int, i.split("-")))
    )
    assert len(seen.named("XREVRANGE")) == 1 and not seen.named("XRANGE")


async def _old_entry(redis: Redis, store: Store, release: str, action: str) -> None:
    """An entry as the version before indexes wrote it: a bare XADD."""
    fields = store._audit_fields(ALICE, action, release=release)
    await redis.xadd(store.keys.audit, fields)  # type: ignore[arg-type]


async def test_entries_from_before_the_upgrade_are_shown_before_during_and_after_the_backfill(
    redis: Redis, prefix: str
) -> None:
    store = Store(redis, prefix)
    for n in range(25):
        await _old_entry(redis, store, "0.9.0" if n % 5 == 0 else "0.8.0", f"old.{n}")
    old = [f"old.{n}" for n in range(0, 25, 5)]
    assert [e["action"] for e in await trail(store, "0.9.0")] == old  # nothing indexed yet
    await store.audit(ALICE, "new.0", release="0.9.0")  # the upgraded bot writes indexed
    assert [e["action"] for e in await trail(store, "0.9.0")] == [*old, "new.0"]
    assert not await store.index_older_audit(batch=10)  # mid-way
    assert [e["action"] for e in await trail(store, "0.9.0")] == [*old, "new.0"]
    steps = 0
    while not await store.index_older_audit(batch=10):
        steps += 1
        assert steps < 10
    await store.audit(ALICE, "new.1", release="0.9.0")
    after = await trail(store, "0.9.0")
    assert [e["action"] for e in after] == [*old, "new.0", "new.1"]
    assert len({e["id"] for e in after}) == len(after)
    assert await store.index_older_audit()  # done stays done: a step is three reads
    async with commands_on(prefix) as seen:
        await trail(store, "0.9.0")
    assert not [c for c in seen.named("XRANGE") if '"-"' in c]


async def test_a_promoted_release_is_found_by_its_final_version_however_old(
    redis: Redis, prefix: str
) -> None:
    store = Store(redis, prefix)
    release = recorded("1.4.0-rc.2", created_at=1.0)
    await store.create_release(release, ALICE)

    def promote(r: Release) -> None:
        r.final_version, r.final_tag = "1.4.0", "v1.4.0"

    await store.update_release(release.version, promote, ALICE, "release.promote")
    assert await store.release_by_final_version("1.4.0") == "1.4.0-rc.2"
    # A release promoted by the version before this index: found once the backfill ran.
    older = recorded("1.3.0-rc.1", sha="b" * 40, created_at=0.5)
    older.final_version, older.final_tag = "1.3.0", "v1.3.0"
    await redis.set(store.keys.release(older.version), older.to_json())
    await redis.zadd(store.keys.releases, {older.version: older.created_at})
    assert await store.release_by_final_version("1.3.0") is None
    while not await store.index_older_audit(batch=1):
        pass
    assert await store.release_by_final_version("1.3.0") == "1.3.0-rc.1"
    assert await store.release_by_final_version("1.4.0") == "1.4.0-rc.2"


async def test_one_run_of_the_backfill_takes_several_bounded_steps(redis: Redis, prefix: str):
    store = Store(redis, prefix)
    for n in range(35):
        await _old_entry(redis, store, "0.7.0", f"old.{n}")
    await store.audit(ALICE, "new", release="0.7.0")
    assert not await store.index_older_audit(batch=10, steps=2)  # 20 of 35 indexed
    assert await store.index_older_audit(batch=10, steps=5)
    assert len(await trail(store, "0.7.0")) == 36


async def test_an_entry_about_two_releases_is_in_both_trails(redis: Redis, prefix: str) -> None:
    """A rollback is about the release it leaves and the one it goes back to: its entries
    are on both trails, written indexed or indexed by the backfill."""
    store = Store(redis, prefix)
    await _old_entry(redis, store, "0.9.0-rc.1 0.8.0-rc.2", "rollback.old")
    request = rollback_request("r1", to_release="0.8.0-rc.2")
    await store.create_rollback(request, ALICE)
    for release in ("0.9.0-rc.1", "0.8.0-rc.2"):
        actions = [e["action"] for e in await trail(store, release)]
        assert actions == ["rollback.old", "rollback.request"], release
    while not await store.index_older_audit(batch=10):
        pass
    for release in ("0.9.0-rc.1", "0.8.0-rc.2"):
        actions = [e["action"] for e in await trail(store, release)]
        assert actions == ["rollback.old", "rollback.request"], release
    assert [e["action"] for e in await trail(store, "0.9.0")] == []
