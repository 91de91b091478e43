"""Scheduler replicas share the health checks by hash: each runs about its part, an outage
across both parts is one incident, and a replica that leaves or is killed (SIGKILL) hands its
checks over, to real endpoints on 127.0.0.1 and a real Redis."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.domain.health.checks import Result
from bot.services.monitor_health import MEMBER_LEASE_SECONDS, Monitor
from tests.helpers.config import make_config, worker_config_text, write_config
from tests.helpers.processes import running
from tests.helpers.sites import Fleet

CHECKS = 40


def fleet_checks(fleet: Fleet, interval: float, tick: float) -> str:
    checks = "".join(
        f"""
[[environments.checks]]
name = "svc-{n:02d}"
url = "{fleet.url}/health/{n}"
interval_seconds = {interval}
timeout_seconds = 2
"""
        for n in range(CHECKS)
    )
    return (
        checks
        + f"""
[monitoring]
tick_seconds = {tick}
failures_to_alert = 2
successes_to_resolve = 1
reminder_seconds = 3600
oncall = ["U0ONCALL"]
"""
    )


@pytest.fixture
async def fleet():
    async with Fleet() as running_fleet:
        yield running_fleet


async def audited(bot, action: str) -> list[dict[str, str]]:
    return [e for e in await bot.services.store.audit_entries() if e["action"] == action]


async def test_two_replicas_share_the_checks_and_an_outage_across_both_is_one_incident(
    start_bot, git_remote, tmp_path: Path, fleet: Fleet
):
    cfg = make_config(git_remote, tmp_path, extra=fleet_checks(fleet, interval=1, tick=1))
    one = await start_bot(cfg, role="web", name="one")
    two = await start_bot(cfg, role="web", name="two")
    first, second = Monitor(one.services), Monitor(two.services)
    try:
        # The first tick of the first replica runs all (it is alone); the second finds
        # them all just run.
        assert (await first.tick(1000.0), await second.tick(1000.0)) == (CHECKS, 0)
        ran = (await first.tick(1001.0), await second.tick(1001.0))
        assert sum(ran) == CHECKS and min(ran) > 0, ran  # each its part, none twice

        fleet.down = True  # both parts fail: one incident, opened by one, joined by the other
        for now in (1002.0, 1003.0):
            await first.tick(now)
            await second.tick(now)
        outage = await one.services.monitor_state.check_state(("production", "outage"))
        assert outage.incident is not None and outage.incident.failing_count == CHECKS
        assert len(await audited(one, "incident.open")) == 1
        assert len(await audited(one, "incident.change")) == 1  # the other part joined

        fleet.down = False  # and it ends once, with the last part to recover
        await first.tick(1004.0)
        await second.tick(1004.0)
        assert len(await audited(one, "incident.resolve")) == 1
        [resolved] = await audited(one, "incident.resolve")
        assert f"and {CHECKS - 10} more after 1s" in resolved["reason"]

        await second.close()  # leaves: the first runs every check from its next tick
        assert await first.tick(1005.0) == CHECKS
        # Each replica's results are in its /metrics (the registry is this test process's).
        async with one.http.get(f"{one.url}/metrics") as response:
            page = await response.text()
        results = {
            (s.labels["check"], s.labels["outcome"]): s.value
            for family in text_string_to_metric_families(page)
            for s in family.samples
            if s.name == "releasebot_check_results_total"
            and s.labels["environment"] == "production"
        }
        assert results[("svc-00", "ok")] >= 2 and results[("svc-00", "failed")] >= 2
    finally:
        await first.close()
        await second.close()


def scheduler_process(config: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bot.runtime.cli",
                "serve",
                "--role",
                "scheduler",
                "--port",
                "0",
                "--host",
                "127.0.0.1",
                "--config",
                str(config),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


async def results_of(bot, check: str) -> list[Result]:
    key = bot.services.store.keys.check_results("staging", check)
    return sorted(
        (Result.from_json(raw) for raw in await bot.services.redis.lrange(key, 0, -1)),
        key=lambda r: r.at,
    )


async def test_a_killed_replica_hands_its_checks_over_when_its_lease_ends(
    start_bot, git_remote, tmp_path: Path, fleet: Fleet, subprocess_env, redis, prefix
):
    text = worker_config_text(git_remote, tmp_path) + fleet_checks(fleet, interval=0.5, tick=0.1)
    path = write_config(tmp_path, text)
    from bot.domain.config import load_config

    here = await start_bot(load_config(path), role="scheduler", name="here")
    other = scheduler_process(path, subprocess_env, tmp_path / "scheduler.log")
    try:
        for _ in range(200):  # until the process has joined
            if await redis.zcard(f"{prefix}mon:members") == 2:
                break
            await asyncio.sleep(0.05)
        assert await redis.zcard(f"{prefix}mon:members") == 2
        await asyncio.sleep(3.0)
        # Shared, each check still ran about once per interval, never by both at once.
        for n in range(0, CHECKS, 7):
            times = [r.at for r in await results_of(here, f"svc-{n:02d}")][-5:]
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert gaps and min(gaps) >= 0.45, (n, gaps)

        os.kill(other.pid, signal.SIGKILL)
        killed = time.time()
        other.wait(timeout=10)
        assert not running(other.pid)
        handed_over = killed + MEMBER_LEASE_SECONDS + 2.0  # its lease, then a tick or two

        async def all_checked_since(moment: float) -> bool:
            for n in range(CHECKS):
                newest = (await results_of(here, f"svc-{n:02d}"))[-1:]
                if not newest or newest[0].at < moment:
                    return False
            return True

        while time.time() < handed_over + 5.0:
            if await all_checked_since(killed + MEMBER_LEASE_SECONDS):
                break
            await asyncio.sleep(0.2)
        assert await all_checked_since(killed + MEMBER_LEASE_SECONDS)
        assert time.time() < handed_over + 5.0
        # Some checks were the killed replica's: nobody ran them until its lease ended.
        orphaned = []
        for n in range(CHECKS):
            results = await results_of(here, f"svc-{n:02d}")
            if not [r for r in results if killed + 0.6 < r.at < killed + MEMBER_LEASE_SECONDS - 1]:
                orphaned.append(n)
        assert 0 < len(orphaned) < CHECKS, orphaned
        assert await redis.zcard(f"{prefix}mon:members") == 1
    finally:
        if running(other.pid):
            other.kill()
            other.wait(timeout=10)
