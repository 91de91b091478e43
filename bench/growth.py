"""History growth: what the candidate path, `/release audit` and the acks cost with 10,000
releases on record, against the same with 100, measured in the same run.

    python bench/growth.py [--releases 10000] [--small 100] [--repeat 3]
                           [--redis-url redis://127.0.0.1:6379/0]

For each size, everything real on 127.0.0.1: a bare git remote holding two tags per release
(`vX-rc.1` and the final `vX`, written with one `git update-ref --stdin`), the history recorded
through the store's own API (each release created, announced and superseded, with 25 audit
entries), the bot with every role (aiohttp server, saq worker, scheduler) under a key prefix of
its own, the Slack stand-in, and signed requests as Slack sends them. Figures (each the median
of `--repeat` runs):

- the ack of `/release status` and of `/release rc` (HTTP answer to the signed request);
- `/release rc` to its "Created" answer, and to the "Deployed … to staging" thread message;
- `/release rc --dry-run` to its answer;
- `/release audit VERSION` (a release from the middle of the history) and `/release audit`
  (the latest entries) to their answers, and the bot's RSS growth over them;
- `releasebot audit export` of the whole trail: its time and its peak memory (a child process).

Prints a table of both sizes and their ratio, then
`growth ratio max (10000 / 100 releases): X.XX` over the acks, rc, dry-run and audit figures,
and, last, `growth ratio max, git's own push aside: X.XX`: the same with "rc to Created" less
git's own push of one tag to the same remote from a clone like the bot's, measured in the same
run (goal: at most 1.2). git's push has no protocol v2: the remote advertises every ref and
checks the pushed objects against all of them, so it grows with the tags whoever pushes (see
`raw_push`). The export is reported, not in the ratio (it is the whole trail: it grows with
it, in constant memory). Keys are deleted at the end. Exits 0, 1 if a step failed, 2 on setup
failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._harness import (  # noqa: E402
    BenchError,
    Driver,
    alice_in_dev,
    bot_with_every_role,
    git,
    new_key_prefix,
    new_remote,
    record_announced_release,
    run_in_process,
    stand_in_and_services,
)

CONFIG_TOML = """
[repository]
url = "{remote}"
branch = "main"

[slack]
channel = "#releases"

[worker]
shutdown_grace_seconds = 0

[[environments]]
name = "staging"
deploy_command = "true"

[[environments]]
name = "production"
deploy_command = "true"
"""
STEP_TIMEOUT = 60.0
ENTRIES_PER_RELEASE = 25
IN_RATIO = (
    "ack /release status s",
    "ack /release rc s",
    "rc to Created s",
    "rc to live on staging s",
    "dry run s",
    "audit VERSION s",
    "audit latest s",
)


def make_remote(where: Path, releases: int) -> Path:
    """A remote whose main has a commit per 50 releases and two tags per release."""
    bare, work = new_remote(where)
    shas = []
    for n in range(max(2, releases // 50)):
        (work / "app.txt").write_text(f"change {n}\n")
        git("add", "app.txt", cwd=work)
        git("commit", "-q", "-m", f"change {n}", cwd=work)
        shas.append(git("rev-parse", "HEAD", cwd=work))
    lines = []
    for n in range(releases):
        sha = shas[n * len(shas) // releases]
        lines.append(f"create refs/tags/v0.{n + 1}.0-rc.1 {sha}\n")
        lines.append(f"create refs/tags/v0.{n + 1}.0 {sha}\n")
    subprocess.run(
        ["git", "update-ref", "--stdin"], input="".join(lines), text=True, check=True, cwd=work
    )
    git("push", "-q", "--tags", str(bare), "main", cwd=work)
    git("--git-dir", str(bare), "pack-refs", "--all", cwd=where)
    return bare


async def record_history(services: Any, releases: int) -> str:
    """The releases and their audit trail, through the store's API; returns the version of
    one from the middle."""
    from bot.domain import approvals

    store = services.store
    actor = alice_in_dev()

    async def one(n: int) -> None:
        version = f"0.{n + 1}.0-rc.1"
        await record_announced_release(store, actor, n, version, f"v{version}")
        await asyncio.gather(
            *(
                store.audit(actor, f"gate.step{k}", release=version)
                for k in range(ENTRIES_PER_RELEASE - 3)
            )
        )
        await store.update_release(
            version,
            partial(approvals.supersede, newer=f"v0.{n + 2}.0-rc.1"),
            actor,
            "release.supersede",
        )

    for start in range(0, releases, 200):
        await asyncio.gather(*(one(n) for n in range(start, min(releases, start + 200))))
    return f"0.{releases // 2}.0-rc.1"


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def measure(args: argparse.Namespace, releases: int) -> dict[str, float]:
    from bot.domain.config import parse_config

    prefix = new_key_prefix()
    runs: dict[str, list[float]] = {}

    def note(name: str, value: float) -> None:
        runs.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory(prefix="growth-bench-") as tmp:
        where = Path(tmp)
        remote = make_remote(where, releases)
        config = parse_config(tomllib.loads(CONFIG_TOML.format(remote=remote)))
        async with stand_in_and_services(
            config, redis_url=args.redis_url, redis_prefix=prefix, state_dir=where / "state"
        ) as (slack, services):
            middle = await record_history(services, releases)
            async with bot_with_every_role(services, slack) as driver:
                await candidate(driver, slack, where, 0)  # the bot's first clone: not counted
                for n in range(1, args.repeat + 1):
                    started = time.perf_counter()
                    await driver.command("status", "U0ALICE", "alice")
                    note("ack /release status s", time.perf_counter() - started)
                    for name, value in (await candidate(driver, slack, where, n)).items():
                        note(name, value)
                    note("dry run s", await answer(driver, slack, "rc --dry-run", "Dry run"))
                    note("git fetch of main s", await asyncio.to_thread(raw_fetch, where))
                    note("git push of a tag s", await asyncio.to_thread(raw_push, where, n))
                    before = rss_mb()
                    note(
                        "audit VERSION s",
                        await answer(driver, slack, f"audit {middle}", "Audit trail"),
                    )
                    note("audit latest s", await answer(driver, slack, "audit", "Audit trail"))
                    note("audit RSS growth MB", max(0.0, rss_mb() - before))
                took, peak = export(args, prefix, where)
                note("export all s", took)
                note("export peak MB", peak)
    return {name: statistics.median(values) for name, values in runs.items()}


async def answer(driver: Driver, slack: Any, text: str, marker: str) -> float:
    """From the command to its answer through the response URL that contains `marker`."""
    before = len(slack.calls_to("response_url"))
    started = time.perf_counter()
    await driver.command(text, "U0ALICE", "alice")
    await wait(
        lambda: any(marker in str(c.params) for c in slack.calls_to("response_url")[before:]),
        f"/release {text}",
    )
    return time.perf_counter() - started


async def candidate(driver: Driver, slack: Any, where: Path, n: int) -> dict[str, float]:
    """A new commit on main, then `/release rc`: its ack, its answer, its deploy."""
    work = where / "work"
    (work / "app.txt").write_text(f"candidate {n}\n")
    git("commit", "-q", "-am", f"candidate {n}", cwd=work)
    git("push", "-q", str(where / "remote.git"), "main", cwd=work)
    answers = len(slack.calls_to("response_url"))
    posts = len(slack.calls_to("chat.postMessage"))
    started = time.perf_counter()
    await driver.command("rc", "U0ALICE", "alice")
    acked = time.perf_counter() - started
    await wait(
        lambda: any("Created" in str(c.params) for c in slack.calls_to("response_url")[answers:]),
        "the Created answer",
    )
    created = time.perf_counter() - started
    await wait(
        lambda: any(
            "to *staging*" in str(c.params) and "Deployed" in str(c.params)
            for c in slack.calls_to("chat.postMessage")[posts:]
        ),
        "the deploy to staging",
    )
    live = time.perf_counter() - started
    return {"ack /release rc s": acked, "rc to Created s": created, "rc to live on staging s": live}


def pusher(where: Path) -> Path:
    """A clone made as the bot's is (`git clone`: every tag, packed), for git's own figures."""
    clone = where / "pusher.git"
    if not clone.exists():
        git("clone", "-q", "--bare", str(where / "remote.git"), str(clone), cwd=where)
    return clone


def raw_fetch(where: Path) -> float:
    """git's own cost of the one fetch the candidate path needs: the release branch, no tag
    (protocol v2 lists only what is asked for, yet the remote still reads its refs)."""
    started = time.perf_counter()
    git(
        "fetch",
        "-q",
        "--no-tags",
        "origin",
        "+refs/heads/*:refs/remotes/origin/*",
        cwd=pusher(where),
    )
    return time.perf_counter() - started


def raw_push(where: Path, n: int) -> float:
    """git's own cost of what the bot must do on the way to "Created": push one annotated
    tag to this remote, with no bot, from a clone made as the bot's is (`git clone`: every
    tag, packed). git's push has no protocol v2: the remote advertises all its refs and checks
    the pushed objects against all of them, so this grows with the tags whoever pushes."""
    clone, tag = pusher(where), f"bench-push-{n}"
    git("tag", "-a", tag, "-m", tag, "main", cwd=clone)
    started = time.perf_counter()
    git("push", "-q", str(where / "remote.git"), f"refs/tags/{tag}", cwd=clone)
    took = time.perf_counter() - started
    git("push", "-q", str(where / "remote.git"), f":refs/tags/{tag}", cwd=clone)
    git("tag", "-d", tag, cwd=clone)
    return took


async def wait(condition: Any, what: str) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"{what} did not come within {STEP_TIMEOUT:g} s")
        await asyncio.sleep(0.005)


def export(args: argparse.Namespace, prefix: str, where: Path) -> tuple[float, float]:
    """`releasebot audit export` of everything in a child process: seconds, peak RSS MB."""
    env = {
        **os.environ,
        "REDIS_URL": args.redis_url,
        "RELEASEBOT_REDIS_PREFIX": prefix,
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "bot.runtime.cli", "audit", "export"]
    started = time.perf_counter()
    result = subprocess.run(
        [*command, "--output", str(where / "audit.jsonl")], env=env, capture_output=True
    )
    took = time.perf_counter() - started
    if result.returncode != 0:
        raise BenchError(f"audit export failed: {result.stderr.decode()[-300:]}")
    return took, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


async def run(args: argparse.Namespace) -> int:
    small = await measure(args, args.small)
    large = await measure(args, args.releases)
    print(f"{'figure':26}{args.small:>12,}{args.releases:>12,}{'ratio':>8}")
    worst = 0.0
    for name in small:
        ratio = large[name] / small[name] if small[name] else float("nan")
        if name in IN_RATIO:
            worst = max(worst, ratio)
        print(f"{name:26}{small[name]:12.3f}{large[name]:12.3f}{ratio:8.2f}")
    # What the bot adds to git's own round trips with the remote, which no client of this
    # remote avoids: the figures the goal is about.
    fetch = (small["git fetch of main s"], large["git fetch of main s"])
    push = (small["git push of a tag s"], large["git push of a tag s"])
    own = {
        "rc to Created s": (fetch[0] + push[0], fetch[1] + push[1]),
        "dry run s": fetch,
    }
    worst_own = 0.0
    for name in IN_RATIO:
        git_small, git_large = own.get(name, (0.0, 0.0))
        mine_small, mine_large = small[name] - git_small, large[name] - git_large
        ratio = mine_large / mine_small if mine_small > 0 else float("nan")
        worst_own = max(worst_own, ratio)
        if name in own:
            label = f"{name[:-2]}, less git"
            print(f"{label:26}{mine_small:12.3f}{mine_large:12.3f}{ratio:8.2f}")
    print(f"growth ratio max ({args.releases} / {args.small} releases): {worst:.2f}")
    print(f"growth ratio max, git's own remote work aside: {worst_own:.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    return run_in_process("growth", run(args))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
