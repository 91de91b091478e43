"""What monitoring keeps in Redis, against the real Redis: the same keys as ever, one tick at
a time, bounded histories, first acknowledgement wins, windows closed once."""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.asyncio import Redis

from bot.adapters.redis.locks import held, take_lock
from bot.adapters.redis.monitor_state import RedisMonitorState
from bot.adapters.redis.outbox import RedisOutbox
from bot.adapters.redis.store import Keys, Store
from bot.domain.config import MonitoringConfig
from bot.domain.health.checks import Result
from bot.domain.health.incidents import CheckState, Incident
from bot.domain.health.sketch import LatencySketch
from bot.domain.health.windows import Window, fold, window_aggregate
from bot.domain.outbox import IncidentNews, decode
from bot.services.ports import AckReader, TickNews

HEALTH = ("production", "health")
VERSION = ("production", "build-info")
OUTAGE = ("production", "outage")


@pytest.fixture
def state(redis: Redis, prefix: str) -> RedisMonitorState:
    store = Store(redis, prefix)
    return RedisMonitorState(
        redis, store.keys, store.queue_bot_audit, RedisOutbox(redis, store.keys)
    )


def result(at: float, ok: bool = True, version: str = "1.0.0") -> Result:
    return Result(
        at=at,
        ok=ok,
        ms=at / 10,
        status=200 if ok else 500,
        problem="" if ok else "HTTP 500",
        version=version,
    )


async def test_every_key_is_the_one_a_running_team_already_has(state, redis, prefix):
    incident = Incident(
        id="abc123",
        environment="production",
        check="health",
        severity="critical",
        opened_at=1.0,
        problem="HTTP 500",
    )
    await state.save_check_state(HEALTH, CheckState(failing=3, incident=incident))
    await state.record_results([(HEALTH, result(1.0))], keep=10)
    await state.start_window("production", Window("2", "1", "2.0.0", 1.0, 2.0))
    await state.acknowledge("abc123", "U0ONCALL", 5.0)
    await state.commit({}, [], [])
    assert await state.claim_tick("monitor", 42, 5.0)
    await state.join("m1", 10)
    keys = {k.decode() async for k in redis.scan_iter(match=f"{prefix}*")}
    assert keys == {
        f"{prefix}{k}"
        for k in (
            "mon:state:production:health",
            "mon:results:production:health",
            "mon:window:production",
            "mon:ack:abc123",
            "mon:members",
            "mon:epoch",
            "tick:monitor:42",
        )
    }


async def test_state_written_by_the_previous_release_is_read(state, redis, prefix):
    # As the monitor stored them before this adapter existed.
    await redis.set(
        f"{prefix}mon:state:production:health",
        json.dumps(
            {
                "failing": 2,
                "passing": 0,
                "incident": None,
                "last_failure": None,
                "version": "1.0.0",
                "baseline_ms": 12.5,
            }
        ),
    )
    await redis.lpush(
        f"{prefix}mon:results:production:health",
        json.dumps(result(1.0).to_dict()),
        json.dumps(result(2.0).to_dict()),
    )
    await redis.set(
        f"{prefix}mon:window:production",
        json.dumps({"version": "2", "previous": "1", "release": "", "started": 1.0, "ends": 9.0}),
    )
    await redis.set(f"{prefix}mon:ack:i1", json.dumps({"user": "U0OLGA", "at": 3.0}))
    loaded = await state.check_state(HEALTH)
    assert loaded.failing == 2 and loaded.recent.baseline_ms == 12.5
    [(raw, history)] = await state.stored_checks([HEALTH], 10)
    assert raw is not None and json.loads(raw)["failing"] == 2
    assert [r.at for r in history] == [2.0, 1.0]  # newest first
    assert await state.window("production") == Window("2", "1", "", 1.0, 9.0)
    assert await state.acknowledgements(["i1", "i2"]) == {"i1": ("U0OLGA", 3.0)}


async def test_a_tick_starts_from_the_windows_and_the_deploys(state, redis, prefix):
    keys = Keys(prefix)
    assert await state.tick_outlook(["staging", "production"]) == ({}, set())
    window = Window("2", "1", "2.0.0", 1.0, 2.0)
    await state.start_window("production", window)
    await take_lock(redis, keys.env_lock("staging"), "U0ALICE", "maintenance")
    async with held(redis, keys.env_lock("production"), 30, "worker", "deploy of v2"):
        windows, deploying = await state.tick_outlook(["staging", "production"])
    # A lock someone took is no deploy: the version condition is checked there.
    assert windows == {"production": window} and deploying == {"production"}
    # A lock recorded before kinds were: only deploys took locks then.
    await redis.set(keys.env_lock("staging"), json.dumps({"token": "t", "holder": "w"}))
    assert (await state.tick_outlook(["staging"]))[1] == {"staging"}


async def test_members_join_renew_and_leave_and_each_change_is_a_new_epoch(state, redis, prefix):
    first, members = await state.join("a", 10)
    assert members == ["a"]
    assert await state.join("a", 10) == (first, ["a"])  # a renewal changes nothing
    second, members = await state.join("b", 0.2)
    assert second == first + 1 and members == ["a", "b"]
    await asyncio.sleep(0.3)  # b stopped renewing (killed, frozen): its lease ends
    third, members = await state.join("a", 10)
    assert third == second + 1 and members == ["a"]
    await state.join("b", 10)
    await state.leave("b")  # a replica that stops hands over at once
    assert await state.join("a", 10) == (third + 2, ["a"])
    await state.leave("nobody")
    assert await state.join("a", 10) == (third + 2, ["a"])


async def test_one_replica_wins_each_slot_of_a_scheduled_job(state, redis, prefix):
    won = await asyncio.gather(*(state.claim_tick("reap", 7, 0.5) for _ in range(5)))
    assert won.count(True) == 1
    assert await state.claim_tick("reap", 8, 0.5) and await state.claim_tick("monitor", 7, 0.5)
    # The claim outlives its slot (twice its length and a second), then goes.
    assert 1500 < await redis.pttl(f"{prefix}tick:reap:7") <= 2000


async def test_results_are_kept_newest_first_and_trimmed_in_batches(state, redis, prefix):
    for at in range(1, 31):
        await state.record_results([(HEALTH, result(at)), (VERSION, result(at, ok=False))], keep=5)
    key = f"{prefix}mon:results:production:health"
    # Trimmed to the newest 5 when it grew past 25 (the 26th), then growing again.
    assert await redis.llen(key) == 9
    assert [r.at for r in (await state.results([HEALTH], 3))[0]] == [30, 29, 28]
    [health, version] = await state.results([HEALTH, VERSION], 100)
    assert len(health) == len(version) == 9 and not version[0].ok
    await state.record_results([], keep=5)  # nothing to write is no call


async def test_states_are_saved_and_read_back_together(state, redis, prefix):
    incident = Incident(
        id="i9",
        environment="production",
        check="outage",
        severity="warning",
        opened_at=1.0,
        problem="slow",
    )
    saved = {
        HEALTH: CheckState(failing=1).to_json(),
        VERSION: CheckState(incident=incident).to_json(),
    }
    await state.commit(saved, [], [])
    assert [raw for raw, _ in await state.stored_checks([HEALTH, VERSION], 1)] == list(
        saved.values()
    )
    states = await state.check_states([HEALTH, ("production", "deploy"), VERSION])
    assert len(states) == 2 and states[1].incident == incident  # no state: left out
    assert (await state.check_state(("staging", "deploy"))) == CheckState()


async def test_the_first_acknowledgement_counts(state, redis, prefix):
    assert await state.acknowledgements([]) == {}
    assert await state.acknowledge("i1", "U0OLGA", 10.0) is None
    assert await state.acknowledge("i1", "U0BOB", 11.0) == "U0OLGA"
    assert await state.acknowledgements(["i1"]) == {"i1": ("U0OLGA", 10.0)}
    assert 29 * 86400 < await redis.ttl(f"{prefix}mon:ack:i1") <= 30 * 86400


async def test_a_window_is_closed_by_exactly_one_caller(state):
    assert await state.window("production") is None
    await state.start_window("production", Window("2", "1", "", 1.0, 2.0))
    closed = await asyncio.gather(*(state.end_window("production") for _ in range(4)))
    assert closed.count(True) == 1 and await state.window("production") is None


async def test_results_are_compact_and_old_ones_still_read(state, redis, prefix):
    keys = Keys(prefix)
    check = ("production", "health")
    old = json.dumps(
        {"at": 1.0, "ok": False, "ms": 12.5, "status": 503, "problem": "HTTP 503", "version": "1"}
    )
    await redis.lpush(keys.check_results(*check), old)  # as the version before wrote it
    new = Result(at=2.0, ok=True, ms=9.25, status=200, problem="", version="1.0.0")
    await state.record_results([(check, new)], 150)
    assert await state.results([check], 10) == [
        [new, Result(at=1.0, ok=False, ms=12.5, status=503, problem="HTTP 503", version="1")]
    ]


async def test_a_full_default_history_stays_under_10_kb_per_check(state, redis, prefix):
    keys = Keys(prefix)
    check = ("production", "a-check-with-a-longish-name")
    keep = MonitoringConfig().history
    for tick in range(keep + 20):
        result = Result(
            at=1_764_700_000.0 + tick * 60.123,
            ok=tick % 17 != 0,
            ms=100 + (tick * 7919) % 900 / 7,
            status=200 if tick % 17 else 503,
            problem="" if tick % 17 else "HTTP 503",
            version="0.21.3",
        )
        await state.record_results([(check, result)], keep)
    size = await redis.memory_usage(keys.check_results(*check))
    assert size is not None and size <= 10_000, size


async def test_aggregates_add_up_in_redis_as_the_ticks_folded_them(state, redis, prefix):
    window = Window(
        version="2", previous="1", release="", started=100.0, ends=700.0, aggregated=True
    )
    check = ("production", "health")
    ticks = [
        [Result(at=100.0 + 10 * t, ok=t % 5 != 0, ms=10.0 + t, status=200, problem="", version="2")]
        for t in range(30)
    ]
    for results in ticks:
        await state.record_results(
            [(check, r) for r in results],
            150,
            fold((("production", r) for r in results), {"production": window}),
        )
    (during,) = await state.aggregates([window_aggregate("production", window)])
    everything = [r for results in ticks for r in results]
    assert during.count == 30 and during.failures == 6
    assert during.sketch.counts == LatencySketch.of(r.ms for r in everything if r.ok).counts
    assert max(during.peaks.values()) == max(r.ms for r in everything if r.ok)
    await state.drop_aggregate(window_aggregate("production", window))
    assert (await state.aggregates([window_aggregate("production", window)]))[0].count == 0


async def test_a_tick_whose_members_changed_records_nothing(state, redis, prefix):
    """Its check states, outages, audit entries and news are all or nothing, and nothing once
    the members changed: another replica may run its checks now."""
    incident = Incident("i1", "production", "outage", "critical", 1.0, "health: HTTP 500")
    raw = CheckState(incident=incident).to_json()
    audits = [("incident.open", {"environment": "production", "reason": "health: HTTP 500"})]
    news = [("C0RELEASE", IncidentNews("open", incident, "1.0.0", 1.0))]

    async def merge(stored: list[bytes | None], acknowledgements: AckReader) -> TickNews:
        assert stored == [None]
        return {OUTAGE: raw}, audits, news

    epoch, _ = await state.join("a", 10)
    await state.join("b", 10)  # joined during a's tick
    window = Window("2", "1", "", 1.0, 900.0, aggregated=True)
    stale = [(HEALTH, result(2.0, version="2"))]
    deltas = fold((("production", r) for _, r in stale), {"production": window})
    await state.record_results(stale, 10, deltas, epoch=epoch)
    assert await redis.llen(f"{prefix}mon:results:production:health") == 0  # b records now
    assert (await state.aggregates([window_aggregate("production", window)]))[0].count == 0
    await state.record_results(stale, 10, deltas, epoch=epoch + 1)
    assert await redis.llen(f"{prefix}mon:results:production:health") == 1
    assert (await state.aggregates([window_aggregate("production", window)]))[0].count == 1
    healthy = CheckState(failing=1).to_json()
    assert await state.commit_tick(epoch, {HEALTH: healthy}, [OUTAGE], merge) is None
    assert await redis.get(f"{prefix}mon:state:production:outage") is None
    assert await redis.get(f"{prefix}mon:state:production:health") is None
    assert await redis.xlen(f"{prefix}audit") == 0
    assert await redis.llen(f"{prefix}outbox:C0RELEASE") == 0
    epoch, _ = await state.join("a", 10)
    assert epoch == 2
    assert await state.commit_tick(epoch, {HEALTH: healthy}, [OUTAGE], merge) == (
        {OUTAGE: raw},
        audits,
        news,
    )
    assert (await state.check_state(OUTAGE)).incident == incident
    assert (await state.check_state(HEALTH)).failing == 1
    [entry] = await redis.xrange(f"{prefix}audit")
    assert entry[1][b"action"] == b"incident.open" and entry[1][b"user_id"] == b"releasebot"
    [said] = await redis.lrange(f"{prefix}outbox:C0RELEASE", 0, -1)
    assert decode(said) == news[0][1]
    assert await redis.smembers(f"{prefix}outboxes") == {b"C0RELEASE"}


async def test_an_outage_another_replica_changed_meanwhile_is_merged_again(state, redis, prefix):
    """Two replicas' checks failing at once: the second merge sees the first's incident."""
    epoch, _ = await state.join("a", 10)
    seen: list[list[bytes | None]] = []
    theirs = CheckState(incident=Incident("i1", "production", "outage", "critical", 1.0, "x"))

    async def merge(stored: list[bytes | None], acknowledgements: AckReader) -> TickNews:
        seen.append(stored)
        if len(seen) == 1:  # another replica writes the outage while this one merges
            await redis.set(f"{prefix}mon:state:production:outage", theirs.to_json())
        return {OUTAGE: b'{"mine": true}'}, [], []

    assert await state.commit_tick(epoch, {}, [OUTAGE], merge) is not None
    assert seen == [[None], [theirs.to_json()]]
    assert await redis.get(f"{prefix}mon:state:production:outage") == b'{"mine": true}'


async def test_an_acknowledgement_made_during_a_tick_is_seen_before_it_writes(state, prefix):
    """An on-call engineer acknowledges while a tick merges its outage: the write does not
    go through on what the merge read before; the merge runs again and sees who did."""
    epoch, _ = await state.join("a", 10)
    seen: list[dict[str, tuple[str, float]]] = []
    incident = Incident("i1", "production", "outage", "critical", 1.0, "health: HTTP 500")

    async def merge(stored: list[bytes | None], acknowledgements: AckReader) -> TickNews:
        seen.append(await acknowledgements(["i1"]))
        if len(seen) == 1:  # the click lands between the tick's read and its write
            assert await state.acknowledge("i1", "U0ONCALL", 5.0) is None
        return {}, [], [("C0RELEASE", IncidentNews("remind", incident, "1.0.0", 6.0))]

    assert await state.commit_tick(epoch, {}, [OUTAGE], merge) is not None
    assert seen == [{}, {"i1": ("U0ONCALL", 5.0)}]


async def test_one_sender_per_channel_and_a_lapsed_one_drops_nothing(redis, prefix):
    outbox = RedisOutbox(redis, Keys(prefix))
    await outbox.put("C1", [b"a", b"b", b"c"])
    assert await outbox.lease("C1", "one", 0.1)
    assert not await outbox.lease("C1", "two", 10)
    assert await outbox.peek("C1", 2) == [b"a", b"b"]
    assert await outbox.sent("C1", "one", 1) and await outbox.peek("C1", 5) == [b"b", b"c"]
    await asyncio.sleep(0.15)  # "one" stalled past its lease; "two" sends from here
    assert await outbox.lease("C1", "two", 10)
    assert not await outbox.sent("C1", "one", 2)  # the stalled one drops nothing
    assert not await outbox.renew("C1", "one", 10)
    assert await outbox.let_go("C1", "one") == 2  # and frees nothing of "two"'s
    assert not await outbox.lease("C1", "three", 10)
    assert await outbox.sent("C1", "two", 2)
    assert await outbox.let_go("C1", "two") == 0
    assert await outbox.channels() == []  # empty: no longer swept


async def test_the_pace_is_one_slot_per_interval_per_channel(redis, prefix):
    outbox = RedisOutbox(redis, Keys(prefix))
    waits = [await outbox.reserve("C1", 1.0) for _ in range(3)]
    assert waits[0] == 0.0 and 0.95 < waits[1] <= 1.0 and 1.95 < waits[2] <= 2.0
    assert await outbox.reserve("C2", 1.0) == 0.0  # another channel has its own
