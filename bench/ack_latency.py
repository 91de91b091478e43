"""Ack latency of `/release status`: releasebot vs a bare Bolt app that only acks.

    python bench/ack_latency.py [--requests 2000] [--concurrency 50]
                                [--redis-url redis://127.0.0.1:6379/0]

Layout: a child process serves everything under test on one event loop: the Slack stand-in
(bot/devtools/slack_stand_in.py), the real bot (role "web", real Redis, key prefix
`bench:<uuid>:`) and a bare Bolt `AsyncApp` whose `/release` listener only calls `await ack()`;
both are served by aiohttp the same way (POST /slack/events, port 0 on 127.0.0.1). This
process is the load generator, so its CPU (signing, the HTTP client) does not share a core
or a loop with the servers and does not dilute the ratio.

Each target is warmed up, then gets `--requests` signed `/release status` slash commands
(fresh timestamp and signature, unique trigger_id), `--concurrency` in flight at a time from a
fixed pool of workers on one aiohttp session per target. The requests are split into
`--rounds` rounds per target, run in ABBA order (bare, bot, bot, bare, ...), so neither side
gets a systematically warmer (or hotter) machine; 20 rounds of 100 (a tenth of a second or so
each) spread a second-long burst of someone else's load over both sides alike, where 4 rounds
left it to whichever side was running. Latency is wall time from send to the full response
body. Every answer must be 200, and the bot's must be JSON with `blocks` (checked once a
round is over, so that the checking is not timed).

Prints count, p50, p99, max (ms), the number over 3000 ms (Slack's ack deadline) and the
server's CPU time per request for both, then `cpu per request ratio (releasebot / bare bolt):
X.XX` and, as the last line, `ack p99 ratio (releasebot / bare bolt): X.XX`. Exits 0, or 1 if
any request failed, or 2 on setup failure / the `--time-limit` (default 300 s) being hit.
All traffic stays on 127.0.0.1. The bot's Redis keys are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tomllib
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# The repo root, so `bot` and `bench` import from any cwd (also in the child).
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._harness import (  # noqa: E402
    BOT_TOKEN,
    SIGNING_SECRET,
    LogTally,
    Target,
    bot_settings,
    measure_against_child,
    measure_in_abba_rounds,
    new_key_prefix,
    print_cpu_ratio,
    print_failures,
    print_latency_table,
    print_server_log,
    ratio,
    small_remote,
    until_told_to_stop,
)

BARE = "bare bolt"
BOT = "releasebot"


# --- the server side (child process) -----------------------------------------------------------

CONFIG_TOML = """
[repository]
url = "{repo}"
branch = "main"

[slack]
channel = "#releases"

[[environments]]
name = "staging"
deploy_command = "true"
url = "http://127.0.0.1:1/staging"

[[environments]]
name = "production"
deploy_command = "true"

[[gates]]
id = "e2e"
name = "Automated tests"
stage = "staging"
command = "true"

[[gates]]
id = "qa"
name = "Manual QA"
stage = "staging"
manual = true
"""


def build_bare_web_app(stand_in_url: str) -> Any:
    """A bare Bolt app with one `/release` listener that only acks, served like the bot."""
    from aiohttp import web
    from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
    from slack_bolt.async_app import AsyncAck, AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    bolt = AsyncApp(
        signing_secret=SIGNING_SECRET, client=AsyncWebClient(token=BOT_TOKEN, base_url=stand_in_url)
    )

    @bolt.command("/release")
    async def release(ack: AsyncAck) -> None:
        await ack()

    async def slack_events(request: web.Request) -> web.Response:
        bolt_response = await bolt.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    app = web.Application()
    app.router.add_post("/slack/events", slack_events)
    return app


async def serve_targets(conn: Connection, tally: LogTally, redis_url: str, prefix: str) -> None:
    """The bot and the bare Bolt app on free ports, both talking to one stand-in; their ports
    and this process's pid to the load generator, then, once stopped, the stand-in's calls."""
    from aiohttp import web

    from bot.devtools.slack_stand_in import SlackStandIn
    from bot.domain.config import parse_config
    from bot.runtime.container import Services
    from bot.runtime.web import Bot

    with tempfile.TemporaryDirectory(prefix="ack-bench-") as tmp:
        repo = small_remote(Path(tmp))
        config = parse_config(tomllib.loads(CONFIG_TOML.format(repo=repo)))
        async with SlackStandIn(token=BOT_TOKEN) as slack:
            settings = bot_settings(
                redis_url=redis_url,
                slack_api_url=slack.base_url,
                state_dir=Path(tmp) / "state",
                redis_prefix=prefix,
            )
            bot = Bot(Services.create(settings, config), "web")
            await bot.start(port=0, host="127.0.0.1")
            bare_runner = web.AppRunner(build_bare_web_app(slack.base_url))
            await bare_runner.setup()
            site = web.TCPSite(bare_runner, "127.0.0.1", 0)
            await site.start()
            try:
                conn.send(
                    {
                        "pid": os.getpid(),
                        "bot_port": bot.port,
                        "bare_port": bare_runner.addresses[0][1],
                        "response_url": slack.response_url("bench"),
                    }
                )
                await until_told_to_stop(conn)
            finally:
                await bare_runner.cleanup()
                await bot.stop()
            methods = sorted({c.method for c in slack.calls})
            conn.send(
                {
                    "stand_in_calls": len(slack.calls),
                    "methods": methods,
                    "invalid": list(slack.invalid),
                    "log": tally.summary(),
                }
            )


# --- the load generator (this process) ---------------------------------------------------------


async def run_load(args: argparse.Namespace, ports: dict[str, Any]) -> list[Target]:
    bare = Target(BARE, f"http://127.0.0.1:{ports['bare_port']}/slack/events", False)
    bot = Target(BOT, f"http://127.0.0.1:{ports['bot_port']}/slack/events", True)
    await measure_in_abba_rounds(
        bare,
        bot,
        response_url=ports["response_url"],
        server_pid=ports["pid"],
        requests=args.requests,
        concurrency=args.concurrency,
        warmup=args.warmup,
        rounds=args.rounds,
    )
    return [bare, bot]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=2000, help="measured requests per target (default 2000)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=50, help="requests in flight per target (default 50)"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--warmup", type=int, default=200, help="unmeasured requests per target first (default 200)"
    )
    parser.add_argument(
        "--rounds", type=int, default=20, help="rounds per target, run in ABBA order (default 20)"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=300.0,
        help="abort after this many seconds in all (default 300)",
    )
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.warmup < 0 or args.rounds < 1:
        parser.error("--requests, --concurrency and --rounds must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    prefix = new_key_prefix()
    run = measure_against_child(
        "ack_latency",
        serve_targets,
        (args.redis_url, prefix),
        partial(run_load, args),
        redis_url=args.redis_url,
        prefix=prefix,
        deadline=began + args.time_limit,
        servers="servers",
        aborted=f"aborted after the {args.time_limit:.0f} s time limit",
        process_name="ack-bench-servers",
    )
    if run is None:
        return 2
    code, report = run.code, run.report
    if print_failures(run.targets, "failed requests (warm-up included)"):
        code = 1
    print_server_log(report)
    print(
        f"{args.requests} measured requests per target after {args.warmup} warm-up, "
        f"concurrency {args.concurrency}, {args.rounds} rounds in ABBA order; "
        f"stand-in saw {report.get('stand_in_calls', '?')} Web API calls "
        f"({', '.join(report.get('methods', [])) or 'none'}); "
        f"deleted {run.deleted} Redis keys under {prefix}; "
        f"took {time.monotonic() - began:.1f} s"
    )
    bare, bot = run.targets
    bare_p99, bot_p99 = print_latency_table(run.targets)
    print_cpu_ratio(bot, bare)
    print(f"ack p99 ratio (releasebot / bare bolt): {ratio(bot_p99, bare_p99):.2f}")
    return code


if __name__ == "__main__":
    sys.exit(main())
