"""Many services (issue 18): the ack of `/release status` across 50 services against the
same command to a bot of one service, measured in the same run.

    python bench/many_services.py [--services 50] [--in-flight 10] [--requests 2000]
                                  [--concurrency 50] [--windows]
                                  [--redis-url redis://127.0.0.1:6379/0]

Layout: a child process serves, on one event loop, the Slack stand-in and two real bots
(role "web", real Redis, real aiohttp servers): a fleet of `--services` services
(`[[services]]` tables read by bot.domain.fleet, so each has its own key prefix
`svc:NAME:`, queue and channel) and a bot of one service. Every service, the lone one
included, has two environments with a version deployed and `--in-flight` releases in flight,
written through the store's own API as bench/growth.py does (no candidate is made, so no git
work: all services name one small remote, each with a tag prefix of its own, as
bot.domain.fleet requires of services sharing a repository). This process is the load
generator (bench/ack_latency.py's: fresh signature and trigger_id per request, a fixed pool of
`--concurrency` workers, `--rounds` rounds in ABBA order, wall time to the full body).

Both sides get `/release status` typed in #dev, a channel of no service: the fleet answers
with every service, one line each (handlers.commands.which_service); the lone bot with its
full status. Every answer must be 200 with blocks; the fleet's must list every service (and
not say the read took too long), checked after each round so the checking is not timed.

Prints count, p50, p99, max (ms) and the server's CPU per request of both, then, last,
`fleet status p99 ratio (N services / one service): X.XX` (goal: at most 1.5). Exits 0, 1 if
a request failed or the ratio is above the goal, 2 on setup failure or the `--time-limit`.
The Redis keys of both bots are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import tomllib
from collections.abc import Mapping
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._harness import (  # noqa: E402
    BOT_TOKEN,
    LogTally,
    Target,
    alice_in_dev,
    bot_settings,
    command_body,
    measure_against_child,
    measure_in_abba_rounds,
    new_key_prefix,
    print_cpu_ratio,
    print_failures,
    print_latency_table,
    print_server_log,
    ratio,
    record_announced_release,
    sign,
    small_remote,
    until_told_to_stop,
)

GOAL_RATIO = 1.5
ONE = "one service"
FLEET = "fleet"

SHARED_TOML = """
[repository]
url = "{repo}"
branch = "main"

[slack]
channel = "#releases"

[[environments]]
name = "staging"
deploy_command = "true"

[[environments]]
name = "production"
deploy_command = "true"
"""


# `--windows`: production open in office hours on weekdays (so each status outside them works
# out a closure and when it opens), but not over lunch, and a yearly freeze to come: the
# status path with windows (issue 19), on both sides.
WINDOWS_TOML = """
[[windows]]
kind = "allow"
cron = "0 8 * * mon-fri"
duration = "10h"
environments = ["production"]

[[windows]]
kind = "deny"
cron = "0 12 * * *"
duration = "1h"
environments = ["production"]

[[freezes]]
from = "2031-12-20 00:00"
until = "2032-01-04 09:00"
reason = "end-of-year holidays"
environments = ["production"]
"""


def shared_toml(repo: Path, windows: bool) -> str:
    return SHARED_TOML.format(repo=repo) + (WINDOWS_TOML if windows else "")


def fleet_toml(repo: Path, services: int, windows: bool = False) -> str:
    """`services` services over one remote: shared defaults, each its channel and tag prefix."""
    tables = "".join(
        f"""
[[services]]
name = "{service_name(n)}"
slack = {{ channel = "#{service_name(n)}-releases" }}
repository = {{ tag_prefix = "{service_name(n)}/v" }}
"""
        for n in range(services)
    )
    return shared_toml(repo, windows) + tables


def service_name(n: int) -> str:
    return f"svc{n:02d}"


async def seed(services: Any, in_flight: int) -> None:
    """Versions deployed in both environments and `in_flight` releases in flight, through the
    store's own API (what a worker leaves after making candidates)."""
    store, prefix = services.store, services.config.repository.tag_prefix
    actor = alice_in_dev()
    for env, minor in (("staging", 9), ("production", 8)):
        await store.set_environment_version(env, f"1.{minor}.0", f"{prefix}1.{minor}.0", "0" * 40)
    versions = [f"1.{10 + n}.0-rc.1" for n in range(in_flight)]
    await asyncio.gather(
        *(
            record_announced_release(store, actor, n, version, f"{prefix}{version}")
            for n, version in enumerate(versions)
        )
    )


async def serve_bots(conn: Connection, tally: LogTally, args: dict[str, Any], prefix: str) -> None:
    """The fleet and the bot of one service on free ports, each service seeded, both talking to
    one stand-in; their ports, the services and this process's pid to the load generator,
    then, once stopped, the stand-in's calls."""
    from bot.devtools.slack_stand_in import SlackStandIn
    from bot.domain.config import parse_config
    from bot.domain.fleet import parse_services
    from bot.runtime.fleet import Fleet
    from bot.runtime.settings import Settings
    from bot.runtime.web import Bot

    with tempfile.TemporaryDirectory(prefix="many-services-bench-") as tmp:
        repo = small_remote(Path(tmp))
        async with SlackStandIn(token=BOT_TOKEN) as slack:

            def settings(name: str) -> Settings:
                return bot_settings(
                    redis_url=args["redis_url"],
                    slack_api_url=slack.base_url,
                    state_dir=Path(tmp) / f"state-{name}",
                    redis_prefix=f"{prefix}{name}:",
                )

            one = Fleet.create(
                settings("one"), [parse_config(tomllib.loads(shared_toml(repo, args["windows"])))]
            )
            many = Fleet.create(
                settings("fleet"),
                parse_services(tomllib.loads(fleet_toml(repo, args["services"], args["windows"]))),
            )
            for each in (*one.services, *many.services):
                await seed(each, args["in_flight"])
            bots = [Bot(one, "web"), Bot(many, "web")]
            try:
                for bot in bots:
                    await bot.start(port=0, host="127.0.0.1")
                conn.send(
                    {
                        "pid": os.getpid(),
                        "one_port": bots[0].port,
                        "fleet_port": bots[1].port,
                        "services": many.names,
                        "response_url": slack.response_url("bench"),
                    }
                )
                await until_told_to_stop(conn)
            finally:
                for bot in bots:
                    await bot.stop()
            conn.send(
                {
                    "stand_in_calls": len(slack.calls),
                    "invalid": list(slack.invalid),
                    "log": tally.summary(),
                }
            )


# --- the load generator (this process) ---------------------------------------------------------


def fleet_problem(raw: bytes, services: list[str], in_flight: bool) -> str | None:
    """None if the fleet's answer lists every service, else what is wrong with it."""
    text = json.dumps(json.loads(raw))
    if "took too long" in text:
        return "the fleet's status was partial: it took too long to read"
    if f"{len(services)} services" not in text:
        return f"no '{len(services)} services' header: {text[:200]}"
    missing = [name for name in services if f"*{name}*" not in text]
    if missing:
        return f"services missing from the status: {missing[:5]}"
    if in_flight and "in flight: `" not in text:
        return f"no release in flight shown: {text[:200]}"
    return None


async def run_load(args: argparse.Namespace, ports: dict[str, Any]) -> list[Target]:
    one = Target(ONE, f"http://127.0.0.1:{ports['one_port']}/slack/events", True)
    many = Target(FLEET, f"http://127.0.0.1:{ports['fleet_port']}/slack/events", True)
    response_url: str = ports["response_url"]

    # Checked once per round, outside the timing: one answer of the fleet, in full.
    async def check_fleet(sessions: Mapping[str, aiohttp.ClientSession]) -> None:
        body = command_body("status", response_url)
        async with sessions[FLEET].post(many.url, data=body, headers=sign(body)) as resp:
            raw = await resp.read()
        problem = (
            fleet_problem(raw, ports["services"], args.in_flight > 0)
            if resp.status == 200
            else raw[:200]
        )
        if problem is not None:
            many.errors.append(str(problem))

    await measure_in_abba_rounds(
        one,
        many,
        response_url=response_url,
        server_pid=ports["pid"],
        requests=args.requests,
        concurrency=args.concurrency,
        warmup=args.warmup,
        rounds=args.rounds,
        after_round=check_fleet,
    )
    return [one, many]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=50, help="services of the fleet (50)")
    parser.add_argument(
        "--in-flight", type=int, default=10, help="releases in flight in every service (10)"
    )
    parser.add_argument("--requests", type=int, default=2000, help="measured per side (2000)")
    parser.add_argument("--concurrency", type=int, default=50, help="in flight per side (50)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured per side first (200)")
    parser.add_argument("--rounds", type=int, default=20, help="rounds per side, ABBA (20)")
    parser.add_argument(
        "--windows", action="store_true", help="production closed by deploy windows, both sides"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds in all (300)")
    args = parser.parse_args(argv)
    if (
        min(args.services, args.requests, args.concurrency, args.rounds) < 1
        or min(args.in_flight, args.warmup) < 0
    ):
        parser.error("--services, --requests, --concurrency, --rounds >= 1; others >= 0")
    if args.services < 2:
        parser.error("--services: a fleet is at least 2 (one is the baseline)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    prefix = new_key_prefix()
    server_args = {
        "redis_url": args.redis_url,
        "services": args.services,
        "in_flight": args.in_flight,
        "windows": args.windows,
    }
    run = measure_against_child(
        "many_services",
        serve_bots,
        (server_args, prefix),
        partial(run_load, args),
        redis_url=args.redis_url,
        prefix=prefix,
        deadline=began + args.time_limit,
        servers="the bots",
        aborted=f"aborted after {args.time_limit:.0f} s",
    )
    if run is None:
        return 2
    code = run.code
    if print_failures(run.targets, "failed requests or answers"):
        code = 1
    if print_server_log(run.report):
        code = 1
    print(
        f"{args.services} services against one, {args.in_flight} releases in flight in each; "
        f"{args.requests} measured requests per side after {args.warmup} warm-up, concurrency "
        f"{args.concurrency}, {args.rounds} rounds in ABBA order; deleted {run.deleted} Redis "
        f"keys under {prefix}; load average {os.getloadavg()[0]:.2f}; "
        f"took {time.monotonic() - began:.1f} s"
    )
    one, fleet = run.targets
    one_p99, fleet_p99 = print_latency_table(run.targets)
    print_cpu_ratio(fleet, one)
    p99_ratio = ratio(fleet_p99, one_p99)
    if not p99_ratio <= GOAL_RATIO:
        print(f"goal missed: the ratio must be at most {GOAL_RATIO}")
        code = code or 1
    print(f"fleet status p99 ratio ({args.services} services / one service): {p99_ratio:.2f}")
    return code


if __name__ == "__main__":
    sys.exit(main())
