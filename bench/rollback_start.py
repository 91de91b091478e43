"""How soon a rollback starts: from the click that completes its approvals to the first line
its deploy command prints.

    python bench/rollback_start.py [--rollbacks 10] [--idle 0] [--redis-url redis://...]

Everything is real and on 127.0.0.1: the Slack stand-in (bot/devtools/slack_stand_in.py) as
Slack, the bot with every role (the aiohttp server, the saq worker), Redis under the key prefix
`bench:<uuid>:`, a git remote in a temporary folder with `v0.14.1` and `v0.15.0`, and a deploy
script that prints its first line and notes when it did.

Production runs v0.15.0 (recorded as a deploy would record it) and rollbacks need two
approvals. Each rollback: production is unlocked and runs v0.15.0 again, bob asks
`/release rollback production --to v0.14.1` (his own approval), and once the request's message
is posted, carol's signed Approve click goes to the bot's /slack/events; the time from just
before that click is sent to the moment the deploy script prints its first line is one figure.
The bench waits for the rollback to be reported in Slack before the next one. One rollback
first is not counted (the bot's first clone of the repository is made then, as it is once in a
running bot's life); `--idle S` leaves the bot idle S seconds before each click, as it mostly
is (past the Redis socket timeout, 10 s, a worker's waiting pop used to fail and back off).

Prints each figure, then `rollback start median X.XXX s, max X.XXX s over N rollbacks` as the
last line (goal: at most 1 s). Exits 0, 1 if a rollback failed or did not start, 2 on setup
failure. The bot's Redis keys are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._harness import (  # noqa: E402
    BenchError,
    Driver,
    bot_with_every_role,
    git,
    new_key_prefix,
    new_remote,
    run_in_process,
    stand_in_and_services,
)

GOAL_SECONDS = 1.0
STEP_TIMEOUT = 60.0

CONFIG_TOML = """
[repository]
url = "{remote}"
branch = "main"

[slack]
channel = "#releases"

[worker]
shutdown_grace_seconds = 0

[rollback]
required = 2
approvers = ["U0BOB", "U0CAROL"]

[[environments]]
name = "staging"
deploy_command = "true"

[[environments]]
name = "production"
deploy_command = "BENCH_MARKS={marks} sh {script}"
timeout_seconds = 60
"""

# The deploy command: its first line, and when it printed it (date's nanoseconds, as
# time.time() in this process reads them).
DEPLOY_SCRIPT = """#!/bin/sh
set -eu
now=$(date +%s.%N)
echo "deploying $RELEASE_TAG to $RELEASE_ENV"
echo "$now $RELEASE_TAG" >> "$BENCH_MARKS"
echo "deployed $RELEASE_TAG"
"""


def make_remote(where: Path) -> tuple[Path, dict[str, str]]:
    """A bare remote with v0.14.1 and v0.15.0 (annotated, as the bot makes them)."""
    bare, work = new_remote(where)
    shas = {}
    for version in ("0.14.1", "0.15.0"):
        (work / "app.txt").write_text(f"app {version}\n")
        git("add", "app.txt", cwd=work)
        git("commit", "-q", "-m", f"version {version}", cwd=work)
        git("tag", "-a", f"v{version}", "-m", f"v{version}", cwd=work)
        shas[version] = git("rev-parse", "HEAD", cwd=work)
    git("push", "-q", "--tags", str(bare), "main", cwd=work)
    return bare, shas


def click_body(slack: Any, message: Any, action_id: str, user: str, name: str) -> str:
    """The block_actions payload of a button press on `message`, as Slack sends it."""
    for block in message.blocks:
        if block.get("type") != "actions":
            continue
        for element in block.get("elements", []):
            if element.get("action_id") != action_id:
                continue
            payload = {
                "type": "block_actions",
                "api_app_id": "A0TEST",
                "token": "legacy",
                "team": {"id": "T0TEST", "domain": "acme"},
                "user": {"id": user, "username": name, "name": name, "team_id": "T0TEST"},
                "container": {
                    "type": "message",
                    "message_ts": message.ts,
                    "channel_id": message.channel,
                },
                "channel": {"id": message.channel, "name": "releases"},
                "message": {"ts": message.ts, "blocks": message.blocks, "text": message.text},
                "trigger_id": f"{uuid.uuid4().int}.{time.time_ns()}",
                "response_url": slack.response_url(user),
                "actions": [
                    {
                        **element,
                        "block_id": block.get("block_id"),
                        "action_ts": str(time.time()),
                    }
                ],
            }
            return urlencode({"payload": json.dumps(payload)})
    raise BenchError(f"no {action_id} button on the message {message.ts}")


def marks(path: Path) -> list[float]:
    if not path.exists():
        return []
    return [float(line.split()[0]) for line in path.read_text().splitlines() if line.strip()]


async def one_rollback(
    n: int, driver: Driver, services: Any, shas: dict[str, str], marks_path: Path, idle: float
) -> float:
    """Seconds from carol's completing click to the deploy command's first line."""
    slack, store = driver.slack, services.store
    if await store.redis.exists(store.keys.env_lock("production")):
        answer = await driver.command("unlock production", "U0CAROL", "carol")
        if "unlocked" not in answer:
            raise BenchError(f"could not unlock production: {answer[:300]}")
    # Production runs v0.15.0 again, as a deploy of it would record.
    await store.set_environment_version("production", "0.15.0", "v0.15.0", shas["0.15.0"])
    seen = set(slack.messages())
    answer = await driver.command(
        f'rollback production --to v0.14.1 --reason "bench {n}"', "U0BOB", "bob"
    )
    if "more approval" not in answer:
        raise BenchError(f"the rollback did not wait for carol: {answer[:300]}")

    def request_message() -> Any:
        return next(
            (
                m
                for ts, m in slack.messages().items()
                if ts not in seen and "asks to roll back" in slack.text_of(m)
            ),
            None,
        )

    message = await slack.wait_for(request_message, timeout=STEP_TIMEOUT)
    body = click_body(slack, message, "rollback_approve", "U0CAROL", "carol")
    request_id = button_value(message, "rollback_approve")["r"]
    # The click must find the message's place recorded (it is, just after the post): the
    # bot would otherwise wait for it, which is not what is measured here.
    for _ in range(500):
        request = await store.get_rollback(request_id)
        if request is not None and request.message_ts:
            break
        await asyncio.sleep(0.01)
    if idle:
        await asyncio.sleep(idle)
    before = len(marks(marks_path))
    clicked = time.time()
    status, text = await driver.post(body)
    if status != 200:
        raise BenchError(f"the approve click got HTTP {status}: {text[:200]}")
    deadline = time.monotonic() + STEP_TIMEOUT
    while len(found := marks(marks_path)) <= before:
        if time.monotonic() > deadline:
            raise BenchError(
                f"rollback {n}: the deploy command did not start within {STEP_TIMEOUT:.0f} s"
            )
        await asyncio.sleep(0.002)
    started = found[before] - clicked

    def reported() -> Any:
        return next(
            (
                m
                for ts, m in slack.messages().items()
                if ts not in seen
                and (
                    "Rolled back *production*" in slack.text_of(m)
                    or "failed" in slack.text_of(m).lower()
                )
            ),
            None,
        )

    outcome = await slack.wait_for(reported, timeout=STEP_TIMEOUT)
    if "Rolled back *production*" not in slack.text_of(outcome):
        raise BenchError(f"rollback {n} failed: {slack.text_of(outcome)[:500]}")
    return started


def button_value(message: Any, action_id: str) -> dict[str, str]:
    for block in message.blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == action_id:
                value: dict[str, str] = json.loads(element["value"])
                return value
    raise BenchError(f"no {action_id} button on the message {message.ts}")


async def run(args: argparse.Namespace) -> int:
    from bot.domain.config import parse_config

    prefix = new_key_prefix()
    figures: list[float] = []
    with tempfile.TemporaryDirectory(prefix="rollback-bench-") as tmp:
        where = Path(tmp)
        remote, shas = make_remote(where)
        script, marks_path = where / "deploy.sh", where / "marks.txt"
        script.write_text(DEPLOY_SCRIPT)
        config = parse_config(
            tomllib.loads(CONFIG_TOML.format(remote=remote, marks=marks_path, script=script))
        )
        async with (
            stand_in_and_services(
                config, redis_url=args.redis_url, redis_prefix=prefix, state_dir=where / "state"
            ) as (slack, services),
            bot_with_every_role(services, slack) as driver,
        ):
            store = services.store
            await store.set_environment_version("production", "0.14.1", "v0.14.1", shas["0.14.1"])
            for n in range(args.warmup + args.rollbacks):
                took = await one_rollback(n, driver, services, shas, marks_path, args.idle)
                counted = n >= args.warmup
                if counted:
                    figures.append(took)
                print(
                    f"rollback {n + 1}{'' if counted else ' (warm-up)'}: {took:.3f} s",
                    flush=True,
                )
    median, peak = statistics.median(figures), max(figures)
    verdict = "goal met" if peak <= GOAL_SECONDS else f"goal (at most {GOAL_SECONDS:g} s) missed"
    print(f"{verdict}; the figures: {', '.join(f'{f:.3f}' for f in figures)}")
    print(f"rollback start median {median:.3f} s, max {peak:.3f} s over {len(figures)} rollbacks")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollbacks", type=int, default=10, help="measured rollbacks (default 10)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="rollbacks first, not counted (default 1)"
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=0.0,
        help="seconds the bot is left idle before each click (default 0)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    if args.rollbacks < 1 or args.warmup < 0 or args.idle < 0:
        parser.error("--rollbacks must be >= 1, --warmup and --idle >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_in_process("rollback_start", run(args))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
