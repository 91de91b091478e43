"""What the benchmarks under bench/ share, so that each bench holds only its own scenario.

Every bench measures one thing against a baseline measured in the same run, and they stand
the bot up alike: real Redis under a key prefix of the run's own, deleted at the end; real git
remotes; the Slack stand-in (bot/devtools/slack_stand_in.py) as Slack; requests signed as Slack
signs them. The two ack benches (ack_latency, many_services) also share a layout: a child
process serves what is measured, this process is the load generator, the two sides take turns
in ABBA rounds. What a bench prints, its figures and its goal stay in the bench.

The bot's runtime is imported inside the functions that use it, as the benches did: the load
generator of the ack benches never loads it, so its CPU (which is not the figure) stays low.
"""

from __future__ import annotations

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
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from bot.devtools import payloads

if TYPE_CHECKING:
    from bot.adapters.redis.store import Store
    from bot.devtools.slack_stand_in import SlackStandIn
    from bot.domain.actors import Actor
    from bot.domain.config import Config
    from bot.runtime.container import Services
    from bot.runtime.settings import Settings

# The bot of every bench accepts requests signed with this secret and calls the stand-in with
# this token: one place, so that what a bench signs is what its bot checks.
SIGNING_SECRET = "bench-signing-secret"
BOT_TOKEN = "xoxb-bench"
WORKSPACE = payloads.Workspace(
    team_id="T0TEST", team_domain="acme", app_id="A0TEST", token="legacy"
)
ALICE = payloads.Person("U0ALICE", "alice")
DEV_CHANNEL = ("C0DEV", "dev")  # where the benches type their commands: no service's channel


class BenchError(Exception):
    """The scenario did not go as it should; the message says where (the bench exits 1)."""


# --- Redis -------------------------------------------------------------------------------------


def new_key_prefix() -> str:
    """A Redis key prefix for this run alone: runs (and a bot on the same Redis) never share a
    key, and the end deletes exactly this run's keys."""
    return f"bench:{uuid.uuid4().hex[:12]}:"


async def redis_problem(redis_url: str) -> str | None:
    """None if Redis answers PING, else why not: said before anything is started, so that a
    missing Redis is a setup failure and not a failed measurement."""
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
    """Deletes the run's keys, and saq's (whose queue names carry the prefix); returns how
    many. The keys are listed first and deleted 1,000 at a time: a large run (10,000 releases,
    5,000 checks) leaves tens of thousands, and a SCAN is not disturbed by its own deletes."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    deleted = 0
    try:
        for pattern in (f"{prefix}*", f"saq:*{prefix}*"):
            keys = [key async for key in client.scan_iter(match=pattern, count=500)]
            for start in range(0, len(keys), 1000):
                deleted += await client.delete(*keys[start : start + 1000])
    finally:
        await client.aclose()
    return deleted


# --- git ---------------------------------------------------------------------------------------

# git as the benches run it: none of this machine's user or system config (hooks, signing, a
# default branch of its own), and a fixed author, so that every commit can be made anywhere.
GIT_ENV = {
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
}


def git(*args: str, cwd: Path) -> str:
    """Runs git in `cwd`; its output, stripped. A failure raises CalledProcessError, which the
    benches count as a setup failure."""
    out = subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=GIT_ENV
    )
    return out.stdout.strip()


def new_remote(where: Path) -> tuple[Path, Path]:
    """An empty bare remote (`where/remote.git`, branch main) and a work tree (`where/work`)
    to fill it from: a bench's remote is made as a developer's is, by pushing to it."""
    bare, work = where / "remote.git", where / "work"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=where)
    git("init", "-q", "-b", "main", str(work), cwd=where)
    return bare, work


def small_remote(where: Path) -> Path:
    """A bare remote of one commit tagged v0.1.0: the config wants a repository URL, and
    `/release status` never reads it."""
    bare, work = new_remote(where)
    (work / "app.txt").write_text("first\n")
    git("add", "app.txt", cwd=work)
    git("commit", "-q", "-m", "first", cwd=work)
    git("tag", "v0.1.0", cwd=work)
    git("push", "-q", "--tags", str(bare), "main", cwd=work)
    return bare


# --- the bot and what Slack sends it -----------------------------------------------------------


def bot_settings(
    *, redis_url: str, slack_api_url: str, state_dir: Path, redis_prefix: str, **more: Any
) -> Settings:
    """The settings of a bench's bot: the token the stand-in accepts, the secret the bench
    signs with, the run's Redis prefix and a state folder of its own; `more` as the bench
    needs (a shorter `update_delay`, say)."""
    from bot.runtime.settings import Settings

    return Settings(
        bot_token=BOT_TOKEN,
        signing_secret=SIGNING_SECRET,
        redis_url=redis_url,
        slack_api_url=slack_api_url,
        state_dir=state_dir,
        redis_prefix=redis_prefix,
        **more,
    )


def sign(body: str) -> dict[str, str]:
    """The headers Slack signs `body` with, for the benches' bot (payloads signs as Slack
    does, through slack_sdk)."""
    return payloads.signed_headers(body, SIGNING_SECRET)


def command_body(text: str, response_url: str, person: payloads.Person = ALICE) -> str:
    """`/release TEXT` typed by `person` in #dev, as Slack posts it (a fresh trigger id)."""
    channel_id, channel_name = DEV_CHANNEL
    return payloads.form_body(
        payloads.slash_command(
            WORKSPACE,
            person,
            command="/release",
            text=text,
            channel_id=channel_id,
            channel_name=channel_name,
            response_url=response_url,
        )
    )


class Driver:
    """Sends the bot at `url` what Slack would send, as anyone; answers by response URL go to
    the stand-in `slack`."""

    def __init__(self, http: aiohttp.ClientSession, url: str, slack: SlackStandIn) -> None:
        self.http = http
        self.url = url
        self.slack = slack

    async def post(self, body: str) -> tuple[int, str]:
        """`body`, signed, to the bot's /slack/events: the HTTP status and the answer."""
        async with self.http.post(self.url, data=body, headers=sign(body)) as resp:
            return resp.status, await resp.text()

    async def command(self, text: str, user: str, name: str) -> str:
        """`/release TEXT` as `user` (`name`) types it; its ack, which must be a 200."""
        body = command_body(text, self.slack.response_url(user), payloads.Person(user, name))
        status, answer = await self.post(body)
        if status != 200:
            raise BenchError(f"/release {text}: HTTP {status}: {answer[:200]}")
        return answer


@asynccontextmanager
async def stand_in_and_services(
    config: Config, *, redis_url: str, redis_prefix: str, state_dir: Path
) -> AsyncIterator[tuple[SlackStandIn, Services]]:
    """The stand-in as Slack, and the services of a bot of `config` talking to it, for a bench
    that runs the bot in its own process; after, the keys under `redis_prefix` deleted. The
    release message gathers changes for 0.2 s, not the default 1 s: the benches wait on those
    messages, and should wait on the bot's work."""
    from bot.devtools.slack_stand_in import SlackStandIn
    from bot.runtime.container import Services

    async with SlackStandIn(token=BOT_TOKEN) as slack:
        settings = bot_settings(
            redis_url=redis_url,
            slack_api_url=slack.base_url,
            state_dir=state_dir,
            redis_prefix=redis_prefix,
            update_delay=0.2,
        )
        try:
            yield slack, Services.create(settings, config)
        finally:
            await delete_keys(redis_url, redis_prefix)


@asynccontextmanager
async def bot_with_every_role(services: Services, slack: SlackStandIn) -> AsyncIterator[Driver]:
    """The bot with every role (server, worker, scheduler) on a free port of 127.0.0.1, and a
    Driver for it; stopped after."""
    from bot.runtime.web import Bot

    bot = Bot(services, "all")
    await bot.start(port=0, host="127.0.0.1")
    try:
        async with aiohttp.ClientSession() as http:
            yield Driver(http, f"http://127.0.0.1:{bot.port}/slack/events", slack)
    finally:
        await bot.stop()


def alice_in_dev() -> Actor:
    """Who the recorded history says did it: alice, in #dev (as the commands are typed)."""
    from bot.domain.actors import Actor

    return Actor(user_id=ALICE.id, user_name=ALICE.name, channel=DEV_CHANNEL[0])


async def record_announced_release(
    store: Store, actor: Actor, n: int, version: str, tag: str
) -> None:
    """Release candidate `n` as a worker leaves it once made and announced (created, then
    active with its message in #dev), through the store's own API: history that costs no git
    work to make. `n` makes its commit, creation time and message unique."""
    from functools import partial

    from bot.domain.releases import Release, activate

    release = Release(
        version=version,
        tag=tag,
        sha=f"{n:040x}",
        requester=actor.user_id,
        requester_name=actor.user_name,
        created_at=1_700_000_000.0 + n,
    )
    await store.create_release(release, actor)
    await store.update_release(
        version, partial(activate, channel=actor.channel, message_ts=f"{n}.000100"), actor, "tag"
    )


def run_in_process(bench: str, scenario: Coroutine[Any, Any, int]) -> int:
    """Runs the scenario of a bench whose bot runs in this process; its exit code, or 1 if it
    went wrong (BenchError) and 2 if it could not be set up (git or the file system), each
    said on stderr under the bench's name."""
    logging.basicConfig(level=logging.WARNING)
    # saq warns at every stop that its waiting pops were cancelled (no grace period here).
    logging.getLogger("saq").setLevel(logging.ERROR)
    try:
        return asyncio.run(scenario)
    except BenchError as exc:
        print(f"{bench}: {exc}", file=sys.stderr)
        return 1
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"{bench}: setup failed: {exc}", file=sys.stderr)
        return 2


# --- the ack benches: what is measured served by a child process -------------------------------

# The child's coroutine: serve(conn, tally, *args) sends the parent what it needs (ports, its
# pid), serves until told to stop, then sends its report (see `measure_against_child`).
Serve = Callable[..., Coroutine[Any, Any, None]]


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


async def until_told_to_stop(conn: Connection) -> None:
    """Serves on (the loop runs) until the load generator says stop, or goes away."""
    await asyncio.get_running_loop().run_in_executor(None, _wait_stop, conn)


def serve_in_child(serve: Serve, conn: Connection, *serve_args: Any) -> None:
    """The child process: runs `serve`, its log tallied for the report rather than printed
    between the load generator's lines; a failure is sent to the parent, which says it."""
    tally = LogTally()
    logging.basicConfig(level=logging.WARNING, handlers=[tally])
    try:
        asyncio.run(serve(conn, tally, *serve_args))
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send({"error": traceback.format_exc()})
        raise


@dataclass
class ChildRun:
    """What a measured run against the child's servers left."""

    targets: list[Target]
    report: dict[str, Any]  # the child's last word: its stand-in's calls, invalid blocks, log
    deleted: int  # the Redis keys deleted after, -1 if that failed
    code: int  # 0, or 1 if the server side failed


def measure_against_child(
    bench: str,
    serve: Serve,
    serve_args: tuple[Any, ...],
    load: Callable[[dict[str, Any]], Awaitable[list[Target]]],
    *,
    redis_url: str,
    prefix: str,
    deadline: float,
    servers: str,
    aborted: str,
    process_name: str | None = None,
) -> ChildRun | None:
    """Starts the child (`serve` with `serve_args`), runs `load` on what it sends when ready,
    by `deadline` (time.monotonic()), then stops it and deletes the keys under `prefix`
    whatever happened. None (exit 2) when Redis is not there, the child did not start or the
    deadline came: each said on stderr as `{bench}: ...`, with `servers` naming what the
    child serves and `aborted` the time limit, in each bench's own words."""
    problem = asyncio.run(redis_problem(redis_url))
    if problem is not None:
        print(f"{bench}: Redis at {redis_url} is not usable: {problem}", file=sys.stderr)
        return None
    ctx = multiprocessing.get_context(os.environ.get("BENCH_MP", "spawn"))
    parent_conn, child_conn = ctx.Pipe()
    # typeshed's BaseContext has no Process; every context get_context returns has one.
    server = ctx.Process(  # type: ignore[attr-defined]
        target=serve_in_child, args=(serve, child_conn, *serve_args), name=process_name
    )
    server.start()
    code = 0
    targets: list[Target] = []
    report: dict[str, Any] = {}
    try:
        if not parent_conn.poll(max(0.0, deadline - time.monotonic())):
            print(f"{bench}: {servers} did not start in time", file=sys.stderr)
            return None
        ports = parent_conn.recv()
        if "error" in ports:
            print(f"{bench}: {servers} failed to start:\n{ports['error']}", file=sys.stderr)
            return None
        try:
            targets = asyncio.run(
                asyncio.wait_for(load(ports), timeout=max(0.0, deadline - time.monotonic()))
            )
        except TimeoutError:
            print(f"{bench}: {aborted}", file=sys.stderr)
            return None
        parent_conn.send("stop")
        if parent_conn.poll(max(1.0, min(30.0, deadline - time.monotonic()))):
            report = parent_conn.recv()
        if "error" in report:
            print(f"{bench}: server side failed:\n{report['error']}", file=sys.stderr)
            code = 1
    finally:
        with contextlib.suppress(OSError):
            parent_conn.send("stop")
        server.join(timeout=15)
        if server.is_alive():
            server.terminate()
            server.join(timeout=5)
        try:
            deleted = asyncio.run(delete_keys(redis_url, prefix))
        except Exception as exc:
            print(f"{bench}: could not delete Redis keys {prefix}*: {exc}", file=sys.stderr)
            deleted = -1
    return ChildRun(targets, report, deleted, code)


# --- the ack benches: the load generator -------------------------------------------------------

SLACK_DEADLINE_MS = 3000.0
REQUEST_TIMEOUT_S = 30.0


@dataclass
class Target:
    """One side of an ack bench: where its requests go, and what they gave."""

    name: str
    url: str
    expect_blocks: bool  # whether a good ack carries blocks (the bot's status), or is empty
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


def ack_problem(target: Target, status: int, raw: bytes) -> str | None:
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


async def fire_status_commands(
    target: Target,
    session: aiohttp.ClientSession,
    response_url: str,
    count: int,
    concurrency: int,
    record: bool,
) -> None:
    """`count` signed `/release status` requests, `concurrency` at a time, from a fixed pool
    of workers.

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
        problem = answer if isinstance(answer, str) else ack_problem(target, answer[1], answer[2])
        if problem is not None:
            target.errors.append(problem if record else f"(warm-up) {problem}")
        elif record and not isinstance(answer, str):
            target.latencies_ms.append(answer[0])


async def measure_in_abba_rounds(
    first: Target,
    second: Target,
    *,
    response_url: str,
    server_pid: int,
    requests: int,
    concurrency: int,
    warmup: int,
    rounds: int,
    after_round: Callable[[Mapping[str, aiohttp.ClientSession]], Awaitable[None]] | None = None,
) -> None:
    """Warms both targets up, then sends each `requests` status commands in `rounds` rounds
    run in ABBA order (first, second, second, first, ...), so that neither side gets a
    systematically warmer (or hotter) machine, and notes the server's CPU per round.
    `after_round` (given each target's session, by name) checks what the timing must not
    include."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    sessions = {
        t.name: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout
        )
        for t in (first, second)
    }
    # No garbage collection in the load generator while it measures: a full collection here
    # (40 ms, measured) stalled every request in flight on whichever side was running, and
    # one such stall per run was the whole of the top 1%: the p99 ratio was that luck.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        for t in (first, second):
            await fire_status_commands(
                t, sessions[t.name], response_url, warmup, concurrency, record=False
            )
        rounds = max(1, min(rounds, requests))
        sizes = [requests // rounds + (1 if i < requests % rounds else 0) for i in range(rounds)]
        for i, size in enumerate(sizes):
            for t in (first, second) if i % 2 == 0 else (second, first):
                cpu_before = process_cpu_seconds(server_pid)
                await fire_status_commands(
                    t, sessions[t.name], response_url, size, concurrency, record=True
                )
                t.server_cpu_s += process_cpu_seconds(server_pid) - cpu_before
            if after_round is not None:
                await after_round(sessions)
    finally:
        gc.enable()
        gc.unfreeze()
        for session in sessions.values():
            await session.close()


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def ratio(measured: float, baseline: float) -> float:
    """`measured / baseline`; NaN when the baseline is no figure (nothing was measured)."""
    return measured / baseline if baseline > 0 else math.nan


def measured_failures(target: Target) -> int:
    """The target's failed requests in the measured rounds (the warm-up's are marked)."""
    return sum(1 for e in target.errors if not e.startswith("(warm-up)"))


def cpu_per_request_ms(target: Target) -> float:
    """The server's CPU time (ms) per measured request, failed ones included: they cost it too."""
    return target.server_cpu_s * 1000 / max(1, len(target.latencies_ms) + measured_failures(target))


def summary_row(target: Target) -> tuple[str, float]:
    """The target's row of the latency table, and its p99 (ms)."""
    values = sorted(target.latencies_ms)
    p50, p99 = percentile(values, 50), percentile(values, 99)
    peak = values[-1] if values else math.nan
    slow = sum(1 for v in values if v > SLACK_DEADLINE_MS)
    row = (
        f"{target.name:<12} {len(values):>7} {p50:>9.1f} {p99:>9.1f} {peak:>9.1f} "
        f"{slow:>9} {measured_failures(target):>7} {cpu_per_request_ms(target):>12.2f}"
    )
    return row, p99


def print_failures(targets: Sequence[Target], what: str) -> bool:
    """A few distinct problems of each target that had any, as `NAME: N {what}, e.g.:`;
    whether there were any (the bench then exits 1)."""
    failed = False
    for t in targets:
        if t.errors:
            failed = True
            print(f"{t.name}: {len(t.errors)} {what}, e.g.:")
            for problem in list(dict.fromkeys(t.errors))[:5]:  # distinct ones
                print(f"  {problem}")
    return failed


def print_server_log(report: Mapping[str, Any]) -> bool:
    """The server side's warnings and errors, and Block Kit the stand-in rejected; whether it
    rejected any."""
    if report.get("log"):
        print("server-side log (warnings and errors, by message):")
        for line in report["log"][:40]:
            print(f"  {line}")
    if report.get("invalid"):
        print(f"stand-in: invalid Block Kit: {report['invalid'][:3]}")
        return True
    return False


def print_latency_table(targets: Sequence[Target]) -> list[float]:
    """The latency table, a row per target; their p99s (ms), in the same order."""
    print(
        f"{'target':<12} {'count':>7} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} "
        f"{'>3000 ms':>9} {'failed':>7} {'cpu ms/req':>12}"
    )
    p99s = []
    for t in targets:
        row, p99 = summary_row(t)
        print(row)
        p99s.append(p99)
    return p99s


def print_cpu_ratio(measured: Target, baseline: Target) -> None:
    """`cpu per request ratio (MEASURED / BASELINE): X.XX`, the server's CPU per request."""
    cpu = ratio(cpu_per_request_ms(measured), cpu_per_request_ms(baseline))
    print(f"cpu per request ratio ({measured.name} / {baseline.name}): {cpu:.2f}")
