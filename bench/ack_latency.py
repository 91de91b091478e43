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
import asyncio
import contextlib
import gc
import json
import logging
import math
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

# The repo root, so `bot` imports from any cwd (also in the child).
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The requests are built as the shell and the tests build theirs (pure: no bot state).
from bot.devtools import payloads  # noqa: E402

SIGNING_SECRET = "bench-signing-secret"
BOT_TOKEN = "xoxb-bench"
SLACK_DEADLINE_MS = 3000.0
REQUEST_TIMEOUT_S = 30.0
BARE = "bare bolt"
BOT = "releasebot"
WORKSPACE = payloads.Workspace(
    team_id="T0TEST", team_domain="acme", app_id="A0TEST", token="legacy"
)
ALICE = payloads.Person("U0ALICE", "alice")


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


def make_git_repo(where: Path) -> Path:
    """A small real bare repository (the config wants a URL; /release status never reads it)."""
    env = {
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "Bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    bare, work = where / "remote.git", where / "work"
    for args, cwd in (
        (["init", "-q", "--bare", "-b", "main", str(bare)], where),
        (["init", "-q", "-b", "main", str(work)], where),
    ):
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)
    (work / "app.txt").write_text("first\n")
    for args in (
        ["add", "app.txt"],
        ["commit", "-q", "-m", "first"],
        ["tag", "v0.1.0"],
        ["push", "-q", "--tags", str(bare), "main"],
    ):
        subprocess.run(["git", *args], cwd=work, check=True, capture_output=True, env=env)
    return bare


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


async def serve_targets(conn: Connection, redis_url: str, prefix: str, tally: LogTally) -> None:
    from aiohttp import web

    from bot.devtools.slack_stand_in import SlackStandIn
    from bot.domain.config import parse_config
    from bot.runtime.container import Services
    from bot.runtime.settings import Settings
    from bot.runtime.web import Bot

    with tempfile.TemporaryDirectory(prefix="ack-bench-") as tmp:
        repo = make_git_repo(Path(tmp))
        config = parse_config(tomllib.loads(CONFIG_TOML.format(repo=repo)))
        async with SlackStandIn(token=BOT_TOKEN) as slack:
            settings = Settings(
                bot_token=BOT_TOKEN,
                signing_secret=SIGNING_SECRET,
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
                # Serve until the load generator says stop (or goes away).
                await asyncio.get_running_loop().run_in_executor(None, _wait_stop, conn)
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


class LogTally(logging.Handler):
    """Counts the server side's warnings and errors instead of printing every traceback."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: dict[str, int] = {}
        self.examples: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = f"{record.levelname} {record.name}: {record.getMessage()}"
        self.counts[key] = self.counts.get(key, 0) + 1
        if key not in self.examples:
            tail = ""
            if record.exc_info and record.exc_info[1] is not None:
                frames = traceback.format_exception(record.exc_info[1])
                tail = "".join(frames[-4:])
            self.examples[key] = tail

    def summary(self) -> list[str]:
        lines = []
        for key, count in sorted(self.counts.items(), key=lambda kv: -kv[1]):
            lines.append(f"{count} x {key}")
            lines.extend(f"    {line}" for line in self.examples[key].splitlines())
        return lines


def _wait_stop(conn: Connection) -> None:
    with contextlib.suppress(EOFError, OSError):
        conn.recv()


def server_main(conn: Connection, redis_url: str, prefix: str) -> None:
    tally = LogTally()
    logging.basicConfig(level=logging.WARNING, handlers=[tally])
    try:
        asyncio.run(serve_targets(conn, redis_url, prefix, tally))
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send({"error": traceback.format_exc()})
        raise


# --- the load generator (this process) ---------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str
    expect_blocks: bool
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    server_cpu_s: float = 0.0  # CPU time of the server process during the measured rounds


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    # After "pid (comm)": state is fields[0], utime and stime are fields[11] and fields[12].
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sign(body: str) -> dict[str, str]:
    return payloads.signed_headers(body, SIGNING_SECRET)


def command_body(text: str, response_url: str) -> str:
    return payloads.form_body(
        payloads.slash_command(
            WORKSPACE,
            ALICE,
            command="/release",
            text=text,
            channel_id="C0DEV",
            channel_name="dev",
            response_url=response_url,
        )
    )


def check(target: Target, status: int, raw: bytes) -> str | None:
    """None if the answer is a good ack, else what is wrong with it."""
    if status != 200:
        return f"HTTP {status}: {raw[:200]!r}"
    if not target.expect_blocks:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return f"HTTP 200 but not JSON: {raw[:200]!r}"
    if not isinstance(data, dict) or not data.get("blocks"):
        return f"HTTP 200 but no blocks: {raw[:200]!r}"
    return None


async def fire(
    target: Target,
    session: aiohttp.ClientSession,
    response_url: str,
    count: int,
    concurrency: int,
    record: bool,
) -> None:
    """`count` requests, `concurrency` at a time, from a fixed pool of workers.

    Each answer is checked once all are in: checking it (JSON-decoding the bot's blocks) as
    it came would be load-generator CPU spent between other requests' sends and reads, more
    for the target with the larger answer, and counted in their latencies."""
    remaining = count
    answers: list[tuple[float, int, bytes] | str] = []

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            body = command_body("status", response_url)
            headers = sign(body)
            started = time.perf_counter()
            try:
                async with session.post(target.url, data=body, headers=headers) as resp:
                    raw = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                answers.append(f"{type(exc).__name__}: {exc}")
            else:
                answers.append(((time.perf_counter() - started) * 1000, status, raw))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    for answer in answers:
        problem = answer if isinstance(answer, str) else check(target, answer[1], answer[2])
        if problem is not None:
            target.errors.append(problem if record else f"(warm-up) {problem}")
        elif record and not isinstance(answer, str):
            target.latencies_ms.append(answer[0])


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def cpu_per_request_ms(target: Target) -> float:
    failed = sum(1 for e in target.errors if not e.startswith("(warm-up)"))
    return target.server_cpu_s * 1000 / max(1, len(target.latencies_ms) + failed)


def summary_row(target: Target) -> tuple[str, float]:
    values = sorted(target.latencies_ms)
    p50, p99 = percentile(values, 50), percentile(values, 99)
    peak = values[-1] if values else math.nan
    slow = sum(1 for v in values if v > SLACK_DEADLINE_MS)
    failed = sum(1 for e in target.errors if not e.startswith("(warm-up)"))
    cpu_ms = cpu_per_request_ms(target)
    row = (
        f"{target.name:<12} {len(values):>7} {p50:>9.1f} {p99:>9.1f} {peak:>9.1f} "
        f"{slow:>9} {failed:>7} {cpu_ms:>12.2f}"
    )
    return row, p99


async def run_load(args: argparse.Namespace, ports: dict[str, Any]) -> list[Target]:
    bare = Target(BARE, f"http://127.0.0.1:{ports['bare_port']}/slack/events", False)
    bot = Target(BOT, f"http://127.0.0.1:{ports['bot_port']}/slack/events", True)
    response_url: str = ports["response_url"]
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    sessions = {
        t.name: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=args.concurrency), timeout=timeout
        )
        for t in (bare, bot)
    }
    # No garbage collection in the load generator while it measures: a full collection here
    # (40 ms, measured) stalled every request in flight on whichever side was running, and
    # one such stall per run was the whole of the top 1%: the p99 ratio was that luck.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        for t in (bare, bot):
            await fire(
                t, sessions[t.name], response_url, args.warmup, args.concurrency, record=False
            )
        rounds = max(1, min(args.rounds, args.requests))
        sizes = [
            args.requests // rounds + (1 if i < args.requests % rounds else 0)
            for i in range(rounds)
        ]
        for i, size in enumerate(sizes):
            order = (bare, bot) if i % 2 == 0 else (bot, bare)
            for t in order:
                cpu_before = process_cpu_seconds(ports["pid"])
                await fire(t, sessions[t.name], response_url, size, args.concurrency, record=True)
                t.server_cpu_s += process_cpu_seconds(ports["pid"]) - cpu_before
    finally:
        gc.enable()
        gc.unfreeze()
        for session in sessions.values():
            await session.close()
    return [bare, bot]


async def redis_problem(redis_url: str) -> str | None:
    """None if Redis answers PING, else why not."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=5)
    try:
        await client.ping()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await client.aclose()
    return None


async def delete_keys(redis_url: str, prefix: str) -> int:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    deleted = 0
    try:
        # Our keys and saq's (whose queue name carries the prefix).
        for pattern in (f"{prefix}*", f"saq:*{prefix}*"):
            async for key in client.scan_iter(match=pattern, count=500):
                deleted += await client.delete(key)
    finally:
        await client.aclose()
    return deleted


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
    deadline = began + args.time_limit
    problem = asyncio.run(redis_problem(args.redis_url))
    if problem is not None:
        print(f"ack_latency: Redis at {args.redis_url} is not usable: {problem}", file=sys.stderr)
        return 2
    prefix = f"bench:{uuid.uuid4().hex[:12]}:"
    ctx = multiprocessing.get_context(os.environ.get("BENCH_MP", "spawn"))
    parent_conn, child_conn = ctx.Pipe()
    server = ctx.Process(
        target=server_main, args=(child_conn, args.redis_url, prefix), name="ack-bench-servers"
    )
    server.start()
    code = 0
    targets: list[Target] = []
    report: dict[str, Any] = {}
    try:
        if not parent_conn.poll(max(0.0, deadline - time.monotonic())):
            print("ack_latency: servers did not start in time", file=sys.stderr)
            return 2
        ports = parent_conn.recv()
        if "error" in ports:
            print(f"ack_latency: servers failed to start:\n{ports['error']}", file=sys.stderr)
            return 2
        try:
            targets = asyncio.run(
                asyncio.wait_for(
                    run_load(args, ports), timeout=max(0.0, deadline - time.monotonic())
                )
            )
        except TimeoutError:
            print(
                f"ack_latency: aborted after the {args.time_limit:.0f} s time limit",
                file=sys.stderr,
            )
            return 2
        parent_conn.send("stop")
        if parent_conn.poll(max(1.0, min(30.0, deadline - time.monotonic()))):
            report = parent_conn.recv()
        if "error" in report:
            print(f"ack_latency: server side failed:\n{report['error']}", file=sys.stderr)
            code = 1
    finally:
        with contextlib.suppress(OSError):
            parent_conn.send("stop")
        server.join(timeout=15)
        if server.is_alive():
            server.terminate()
            server.join(timeout=5)
        try:
            deleted = asyncio.run(delete_keys(args.redis_url, prefix))
        except Exception as exc:
            print(f"ack_latency: could not delete Redis keys {prefix}*: {exc}", file=sys.stderr)
            deleted = -1

    for t in targets:
        if t.errors:
            code = 1
            print(f"{t.name}: {len(t.errors)} failed requests (warm-up included), e.g.:")
            for problem in list(dict.fromkeys(t.errors))[:5]:  # distinct ones
                print(f"  {problem}")
    if report.get("log"):
        print("server-side log (warnings and errors, by message):")
        for line in report["log"][:40]:
            print(f"  {line}")
    if report.get("invalid"):
        print(f"stand-in: invalid Block Kit: {report['invalid'][:3]}")
    print(
        f"{args.requests} measured requests per target after {args.warmup} warm-up, "
        f"concurrency {args.concurrency}, {args.rounds} rounds in ABBA order; "
        f"stand-in saw {report.get('stand_in_calls', '?')} Web API calls "
        f"({', '.join(report.get('methods', [])) or 'none'}); "
        f"deleted {deleted} Redis keys under {prefix}; "
        f"took {time.monotonic() - began:.1f} s"
    )
    print(
        f"{'target':<12} {'count':>7} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} "
        f"{'>3000 ms':>9} {'failed':>7} {'cpu ms/req':>12}"
    )
    bare_row, bare_p99 = summary_row(targets[0])
    bot_row, bot_p99 = summary_row(targets[1])
    print(bare_row)
    print(bot_row)
    bare_cpu, bot_cpu = cpu_per_request_ms(targets[0]), cpu_per_request_ms(targets[1])
    cpu_ratio = bot_cpu / bare_cpu if bare_cpu > 0 else math.nan
    print(f"cpu per request ratio (releasebot / bare bolt): {cpu_ratio:.2f}")
    ratio = bot_p99 / bare_p99 if bare_p99 > 0 else math.nan
    print(f"ack p99 ratio (releasebot / bare bolt): {ratio:.2f}")
    return code


if __name__ == "__main__":
    sys.exit(main())
