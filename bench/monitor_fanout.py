"""Monitoring fan-out: one tick of the bot's health monitor against plain aiohttp GETs.

    python bench/monitor_fanout.py [--endpoints 1000] [--rounds 6]
                                   [--redis-url redis://127.0.0.1:6379/0]

Layout: a child process serves `--endpoints` health endpoints (`/e/<i>`, each answering
`{"status": "ok", "version": "1.0.0"}`) with aiohttp on 127.0.0.1, so the server's CPU does not
share a loop with the side under test. In this process, two sides take turns on the same
endpoints, in ABBA order over `--rounds` rounds each:

- releasebot: `Monitor.tick()` with one environment holding all the endpoints as checks (an
  HTTP status, a JSON field and the version condition each), so every check is due each tick:
  the bot's own prober (one shared session, bounded concurrency), condition evaluation, the
  incident state machine, and the Redis writes of every result and state (real Redis, key
  prefix `bench:<uuid>:`, deleted at the end).
- raw aiohttp: `asyncio.gather` of GETs on one session with the same connection limit, each
  body read.

With `--services N` (issue 18) the endpoints are spread over N services of one bot (a
`[[services]]` config read by bot.domain.fleet, so each service has its own key prefix, its own
Monitor and its own prober, as each service's scheduler ticks its own monitor in
bot.runtime.web): the bot's side is then the N monitors' ticks run together (as their
schedulers' ticks meet), against the same raw baseline. Each service's prober has the
`[monitoring] concurrency` of the shared defaults, so together they may hold up to N times the
baseline's connections (with 1,000 endpoints over 20 services, 50 each: at most 1,000);
`--split-concurrency` gives each service 1/N of it instead, the baseline's 100 in all.

With `--growth [--scales 100,1000,5000]` it measures instead, per scale (one environment of
that many checks, a full default history recorded through the monitor's own store, the Slack
stand-in as Slack): the steady tick, the tick after a deploy (a new version recorded and
`deploy_finished`, so a monitoring window opens), the window's close, and `/release health`
(`health_rows` and its blocks), each with the event loop's lag (a task sleeping 10 ms: p99
and max), then Redis bytes per check (`MEMORY USAGE` of every `mon:*` key) and peak RSS. It
prints a table of every figure per scale with its ratio to the first, PASS/FAIL against the
goals (max lag <= 100 ms, <= 10,000 bytes per check, peak RSS < 300 MB, a tick under 1.5 s, the
tick after a deploy and the window close within 2x a steady tick), and exits 1 if one fails.

Throughput is checks done per second of wall time over all the rounds of a side (whole
ticks). Both processes are pinned to a core each when there are two. The last line is
`monitor throughput ratio (releasebot / raw aiohttp): X.XX`
(goal: at least 0.8). Exits 0, or 1 if any check failed (every endpoint is healthy, so a
failure means the bench is broken), or 2 on setup failure.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._harness import BOT_TOKEN, bot_settings, delete_keys, new_key_prefix  # noqa: E402
from bot.domain.config import parse_config  # noqa: E402
from bot.domain.fleet import parse_services  # noqa: E402
from bot.domain.health.checks import Result  # noqa: E402
from bot.runtime.container import Services  # noqa: E402
from bot.runtime.fleet import Fleet  # noqa: E402
from bot.runtime.web import settle_gc  # noqa: E402
from bot.services.monitor_health import Monitor  # noqa: E402

CONCURRENCY = 100  # aiohttp's default connection limit, used by both sides


def pin(cpu: int) -> None:
    """Keep the server and the side under test on cores of their own when there are two, so
    that the scheduler moving them around does not decide the figure."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})


def serve(endpoints: int, conn: Connection) -> None:
    pin(1)

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": "1.0.0"})

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/e/{i}", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        conn.send(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop
        await runner.cleanup()

    asyncio.run(main())


def check_tables(table: str, base: str, indices: Iterable[int], version_field: bool = True) -> str:
    """A health check of each endpoint in `indices` as a `[[TABLE]]` of the config, the same
    for one service and for a fleet: due at every tick, wanting `status = "ok"` and, with
    `version_field`, the deployed version."""
    field = 'version_field = "version"\n' if version_field else ""
    return "".join(
        f"""
[[{table}]]
name = "e{i}"
url = "{base}/e/{i}"
interval_seconds = 0.001
json = {{ status = "ok" }}
{field}"""
        for i in indices
    )


def shared_toml(concurrency: int) -> str:
    """What a config of one service and a fleet's both say outside their environments: no
    repository is read (the monitor needs none), a channel, the probers' connection limit."""
    return f"""
[repository]
url = "/nonexistent"
[slack]
channel = "#bench"
[monitoring]
concurrency = {concurrency}
"""


def config_for(base: str, endpoints: int, version_field: bool = True) -> str:
    checks = check_tables("environments.checks", base, range(endpoints), version_field)
    environment = f"""[[environments]]
name = "production"
deploy_command = "true"
{checks}"""
    return shared_toml(CONCURRENCY) + environment


def fleet_config_for(base: str, endpoints: int, services: int, concurrency: int) -> str:
    """`endpoints` checks spread over `services` services (as evenly as they go), one
    repository with a tag prefix each, the monitoring settings (`concurrency`) shared."""
    tables = []
    for n in range(services):
        checks = check_tables("services.environments.checks", base, range(n, endpoints, services))
        tables.append(
            f"""
[[services]]
name = "svc{n:02d}"
slack = {{ channel = "#svc{n:02d}" }}
repository = {{ tag_prefix = "svc{n:02d}/v" }}
[[services.environments]]
name = "production"
deploy_command = "true"
{checks}"""
        )
    return shared_toml(concurrency) + "".join(tables)


async def raw_round(session: aiohttp.ClientSession, urls: list[str]) -> tuple[float, int]:
    async def get(url: str) -> int:
        async with session.get(url) as resp:
            await resp.read()
            return resp.status

    started = time.perf_counter()
    statuses = await asyncio.gather(*(get(u) for u in urls))
    return time.perf_counter() - started, sum(1 for s in statuses if s != 200)


async def bot_round(monitors: list[tuple[Monitor, Services]]) -> tuple[float, int]:
    """Every monitor's tick, together; the time, and the checks not done or not healthy."""
    started = time.perf_counter()
    due = time.time() + 3600 * 24 * 365  # everything is due
    ran = await asyncio.gather(*(monitor.tick(due) for monitor, _ in monitors))
    took = time.perf_counter() - started
    failing = 0
    for (_, services), done in zip(monitors, ran, strict=True):
        env = services.config.environments[0]
        async with services.redis.pipeline(transaction=False) as pipe:
            for check in env.checks:
                pipe.lindex(services.store.keys.check_results(env.name, check.name), 0)
            newest = await pipe.execute()
        failing += sum(1 for raw in newest if raw is None or not Result.from_json(raw).ok)
        failing += len(env.checks) - done
    return took, failing


async def run(args: argparse.Namespace, port: int) -> int:
    base = f"http://127.0.0.1:{port}"
    urls = [f"{base}/e/{i}" for i in range(args.endpoints)]
    if args.services > 1:
        # As a config of several services has it: one `concurrency` for each service's prober
        # (the shared default); or, with --split-concurrency, the baseline's split among them.
        each = max(1, CONCURRENCY // args.services) if args.split_concurrency else CONCURRENCY
        configs = parse_services(
            tomllib.loads(fleet_config_for(base, args.endpoints, args.services, each))
        )
    else:
        configs = (parse_config(tomllib.loads(config_for(base, args.endpoints))),)
    prefix = new_key_prefix()
    settings = bot_settings(
        redis_url=args.redis_url,
        slack_api_url="http://127.0.0.1:9/api/",
        # A folder of its own: the bot keeps its state directory private (0700).
        state_dir=Path(tempfile.mkdtemp(prefix="releasebot-bench-")),
        redis_prefix=prefix,
    )
    fleet = Fleet.create(settings, configs)
    monitors = []
    for services in fleet.services:
        await services.store.set_environment_version("production", "1.0.0", "v1.0.0", "0" * 40)
        monitors.append((Monitor(services), services))
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY))
    raw_times: list[float] = []
    bot_times: list[float] = []
    failures = 0
    try:
        await raw_round(session, urls)  # warm up both sides' connections
        await bot_round(monitors)
        for i in range(args.rounds * 2):
            # ABBA: raw, bot, bot, raw, raw, bot, ...
            first_raw = (i // 1) % 4 in (0, 3)
            for side in ("raw", "bot") if first_raw else ("bot", "raw"):
                if side == "raw":
                    took, failed = await raw_round(session, urls)
                    raw_times.append(took)
                else:
                    took, failed = await bot_round(monitors)
                    bot_times.append(took)
                failures += failed
    finally:
        await session.close()
        for monitor, _ in monitors:
            await monitor.close()
        await delete_keys(args.redis_url, prefix)
        await fleet.close()
    # Over all rounds (a tick's time swings between two levels, so a median jumps between
    # them): checks done / time taken.
    raw_rate = args.endpoints * len(raw_times) / sum(raw_times)
    bot_rate = args.endpoints * len(bot_times) / sum(bot_times)
    print(
        f"endpoints per tick: {args.endpoints} over {len(fleet.services)} service(s) "
        f"(prober concurrency {fleet.first.config.monitoring.concurrency} each), "
        f"rounds per side: {len(raw_times)}, load average {os.getloadavg()[0]:.2f}"
    )
    for name, times, rate in (
        ("raw aiohttp", raw_times, raw_rate),
        ("releasebot ", bot_times, bot_rate),
    ):
        print(
            f"{name}: {statistics.mean(times) * 1000:,.0f} ms per tick on average "
            f"(median {statistics.median(times) * 1000:,.0f}), {rate:,.0f} checks/s"
        )
    if failures:
        print(f"{failures} check(s) failed: the bench is broken", file=sys.stderr)
    print(f"monitor throughput ratio (releasebot / raw aiohttp): {bot_rate / raw_rate:.2f}")
    return 1 if failures else 0


# --- growth: the same monitor at several scales ---------------------------------------------


class LagProbe:
    """How late a task that sleeps 10 ms wakes: the longest the event loop was kept busy."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            self.lags.append(max(0.0, loop.time() - before - 0.01))

    def __enter__(self) -> LagProbe:
        self.lags = []
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    @property
    def worst_ms(self) -> float:
        return max(self.lags, default=0.0) * 1000

    @property
    def p99_ms(self) -> float:
        if not self.lags:
            return 0.0
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


async def timed(probe: LagProbe, work: Any) -> tuple[float, float]:
    """How long `work` took, and the event loop's worst lag meanwhile (its p99 is printed)."""
    with probe:
        started = time.perf_counter()
        await work
        took = time.perf_counter() - started
        await asyncio.sleep(0.02)  # the probe's last wake-up
    print(f"  lag p99 {probe.p99_ms:.1f} ms, max {probe.worst_ms:.1f} ms", flush=True)
    return took, probe.worst_ms


async def measure_scale(args: argparse.Namespace, port: int, checks: int) -> dict[str, float]:
    """One scale: steady ticks, the tick after a deploy, the window close, `/release
    health`, the event loop's worst lag in each, and the bytes kept per check."""
    from bot.blocks.health import health_report
    from bot.devtools.slack_stand_in import SlackStandIn
    from bot.services.monitor_health import close_window, deploy_finished, health_rows

    base = f"http://127.0.0.1:{port}"
    # No version condition: the endpoints keep answering 1.0.0 after the "deploy".
    config = parse_config(tomllib.loads(config_for(base, checks, version_field=False)))
    prefix = new_key_prefix()
    async with SlackStandIn(token=BOT_TOKEN) as slack:
        settings = bot_settings(
            redis_url=args.redis_url,
            slack_api_url=slack.base_url,
            state_dir=Path(tempfile.mkdtemp(prefix="releasebot-bench-")),
            redis_prefix=prefix,
        )
        services = Services.create(settings, config)
        store, state = services.store, services.monitor_state
        monitor = Monitor(services)
        settle_gc()  # as the bot's process runs (bot.runtime.web.Bot.start)
        probe = LagProbe()
        figures: dict[str, float] = {}
        try:
            await store.set_environment_version("production", "1.0.0", "v1.0.0", "0" * 40)
            now = time.time()
            # A full history per check, through the monitor's own store (as ticks leave it).
            ids = [("production", c.name) for c in config.environments[0].checks]
            keep = config.monitoring.history
            for k in range(keep + 20):
                at = now - (keep + 20 - k) * 60
                await state.record_results(
                    [
                        (i, Result(at, True, 20.0 + (k * 7 + n) % 30, 200, "", "1.0.0"))
                        for n, i in enumerate(ids)
                    ],
                    keep,
                )
            await monitor.tick(now)  # loads every state: the first tick of a replica
            steady = []
            lags = []
            for n in range(3):
                took, lag = await timed(probe, monitor.tick(now + 1 + n))
                steady.append(took)
                lags.append(lag)
            figures["steady tick s"] = statistics.mean(steady)
            figures["steady tick lag ms"] = max(lags)
            now += 10
            await store.set_environment_version("production", "1.1.0", "v1.1.0", "1" * 40)
            await deploy_finished(services, "production", "1.1.0", "", "1.0.0")
            took, lag = await timed(probe, monitor.tick(now))
            figures["tick after deploy s"], figures["tick after deploy lag ms"] = took, lag
            for n in range(3):
                await monitor.tick(now + 11 + 11 * n)
            window = await state.window("production")
            assert window is not None
            took, lag = await timed(probe, close_window(services, "production", window, False))
            figures["window close s"], figures["window close lag ms"] = took, lag

            async def health() -> None:
                rows = await health_rows(services, "production")
                health_report(rows, now)

            took, lag = await timed(probe, health())
            figures["/release health s"], figures["/release health lag ms"] = took, lag
            # A replica's first tick: every state and its recent results loaded (the first
            # monitor leaves, or they would share the checks and each load half).
            await state.leave(monitor.member)
            fresh = Monitor(services)
            try:
                took, lag = await timed(probe, fresh.tick(now + 100))
            finally:
                await fresh.close()
            figures["fresh replica tick s"], figures["fresh replica tick lag ms"] = took, lag
            total = 0
            async for key in services.redis.scan_iter(match=f"{prefix}mon:*", count=1000):
                total += await services.redis.memory_usage(key) or 0
            figures["Redis KB per check"] = total / 1024 / checks
            figures["peak RSS MB"] = peak_rss_mb()
        finally:
            await monitor.close()
            await delete_keys(args.redis_url, prefix)
            await services.close()
    return figures


GOALS: dict[str, tuple[str, float]] = {
    "steady tick lag ms": ("<=", 100.0),
    "tick after deploy lag ms": ("<=", 100.0),
    "window close lag ms": ("<=", 100.0),
    "/release health lag ms": ("<=", 100.0),
    "fresh replica tick lag ms": ("<=", 100.0),
    "Redis KB per check": ("<=", 10_000 / 1024),
    "peak RSS MB": ("<", 300.0),
}


async def growth(args: argparse.Namespace, port: int) -> int:
    scales = [int(n) for n in args.scales.split(",")]
    results = {n: await measure_scale(args, port, n) for n in scales}
    small, large = results[scales[0]], results[scales[-1]]
    print(f"{'figure':28}" + "".join(f"{n:>12,}" for n in scales) + f"{'ratio':>9}  goal")
    failed = 0
    for name in small:
        row = f"{name:28}" + "".join(f"{results[n][name]:12.3f}" for n in scales)
        ratio = large[name] / small[name] if small[name] else float("nan")
        goal = ""
        if name in GOALS:
            op, limit = GOALS[name]
            ok = large[name] <= limit if op == "<=" else large[name] < limit
            goal = f"{op} {limit:g} at {scales[-1]:,}: {'PASS' if ok else 'FAIL'}"
            failed += not ok
        print(f"{row}{ratio:9.2f}  {goal}")
    tick = large["steady tick s"]
    for name, limit in (
        ("steady tick s", 1.5),
        ("tick after deploy s", 2 * tick),
        ("window close s", 2 * tick),
    ):
        ok = large[name] < limit
        failed += not ok
        print(
            f"{name} at {scales[-1]:,}: {large[name]:.3f} s, goal < {limit:.3f} s: "
            f"{'PASS' if ok else 'FAIL'}"
        )
    print(f"growth goals failed: {failed}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--growth",
        action="store_true",
        help="instead of the ratio: the monitor's costs at --scales checks, against the first",
    )
    parser.add_argument("--scales", default="100,1000,5000")
    parser.add_argument(
        "--services",
        type=int,
        default=1,
        help="spread the endpoints over this many services of one bot (issue 18: 20)",
    )
    parser.add_argument(
        "--split-concurrency",
        action="store_true",
        help="with --services: each service's prober gets 1/N of the baseline's connections",
    )
    args = parser.parse_args()
    if not 1 <= args.services <= args.endpoints or (args.growth and args.services > 1):
        parser.error("--services: 1 to --endpoints, and not with --growth")
    if args.growth:
        args.endpoints = max(int(n) for n in args.scales.split(","))
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(args.endpoints, theirs), daemon=True)
    server.start()
    if not ours.poll(30):
        print("the endpoint server did not start", file=sys.stderr)
        return 2
    port = ours.recv()
    pin(0)
    try:
        return asyncio.run(growth(args, port) if args.growth else run(args, port))
    finally:
        ours.send("stop")
        server.join(10)


if __name__ == "__main__":
    sys.exit(main())
