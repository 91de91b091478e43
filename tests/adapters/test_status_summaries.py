"""The status of all services in one read (Store.summaries, for bot.runtime.status_of_all):
on real Redis, each service's summary is what its own full status says, and a release that
changed since the last read is decoded again, not taken from what was read before."""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis

from bot.adapters.redis.locks import Locks
from bot.adapters.redis.store import Store, summaries
from bot.domain.actors import Actor
from bot.domain.releases import Release, activate

ALICE = Actor(user_id="U0ALICE", user_name="alice", channel="C0DEV")
ENVIRONMENTS = ["staging", "production"]


async def candidate(store: Store, version: str, tag_prefix: str, created_at: float) -> None:
    release = Release(
        version=version,
        tag=f"{tag_prefix}{version}",
        sha="0" * 40,
        requester="U0ALICE",
        requester_name="alice",
        created_at=created_at,
    )
    await store.create_release(release, ALICE)
    await store.update_release(version, activate, ALICE, "tag")


def finish(tag: str, phase: str = "active") -> Callable[[Release], None]:
    def change(release: Release) -> None:
        release.final_tag = tag
        release.phase = phase  # type: ignore[assignment]

    return change


async def test_each_summary_is_its_own_status_and_changes_are_read_again(
    redis: Redis, prefix: str
) -> None:
    web, api, idle = (Store(redis, f"{prefix}svc:{name}:") for name in ("web", "api", "idle"))
    await web.set_environment_version("staging", "1.2.0", "web/v1.2.0", "a" * 40)
    await api.set_environment_version("production", "3.0.0", "api/v3.0.0", "b" * 40)
    # Created out of order: in flight is listed oldest first.
    await candidate(web, "1.4.0-rc.1", "web/v", 200.0)
    await candidate(web, "1.3.0-rc.1", "web/v", 100.0)
    await candidate(api, "3.1.0-rc.1", "api/v", 150.0)
    await Locks(redis, api.keys, 30).take("staging", "U0BOB", "migration")
    stores = [web, api, idle]
    wanted = [(store, ENVIRONMENTS) for store in stores]
    known: dict[bytes, tuple[float, str]] = {}

    found = await summaries(redis, wanted, known)
    assert found == [(await store.status(ENVIRONMENTS)).summary() for store in stores]
    assert found[0].tags == {"staging": "web/v1.2.0"}
    assert found[0].in_flight == ["web/v1.3.0-rc.1", "web/v1.4.0-rc.1"]
    assert found[1].tags == {"production": "api/v3.0.0"}
    assert found[1].in_flight == ["api/v3.1.0-rc.1"] and list(found[1].raw_locks) == ["staging"]
    assert found[0].raw_locks == {} and found[2].raw_locks == {}
    assert found[2].tags == {} and found[2].in_flight == []
    assert len(known) == 3

    # One release promoted, one finished: the next read with the same memory shows both.
    await web.update_release("1.3.0-rc.1", finish("web/v1.3.0"), ALICE, "promote")
    await api.update_release("3.1.0-rc.1", finish("api/v3.1.0", "done"), ALICE, "done")
    again = await summaries(redis, wanted, known)
    assert again == [(await store.status(ENVIRONMENTS)).summary() for store in stores]
    assert again[0].in_flight == ["web/v1.3.0", "web/v1.4.0-rc.1"]
    assert again[1].in_flight == []
    assert len(known) == 2  # only what this read saw is remembered
