"""The deploy engine under real faults: a worker frozen (SIGSTOP) or cut off from Redis never
lets two deploys run in one environment, an outcome survives a Redis outage at the end of its
deploy, a job taken before a freeze is not run late, and a worker killed during any kind of
deploy (release, rollback, flag change) is reported and frees the environment.

Each deploy script records its start and end times (tests/scripts/timed_deploy.sh); a killed
script cannot write its end, so its death is observed from its pid instead, which can only be
later than the real death: the comparisons are conservative."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bot.domain.actors import BOT
from bot.domain.config import Config, load_config
from bot.services import deploy_release
from bot.services.monitor_health import health_rows
from tests.helpers.config import SCRIPTS, automatic_gate, config_text, environment
from tests.helpers.flags import FLAGS, FLAGS_PATH, push_flags
from tests.helpers.messages import release_message, thread_text
from tests.helpers.processes import running, spawn_worker
from tests.helpers.redis_server import RedisServer
from tests.helpers.repos import GitRemote, git
from tests.helpers.signing import sign

TTL = 2.0  # the environment lock's expiry in these tests


@dataclass
class Run:
    """One run of timed_deploy.sh, as it recorded itself."""

    tag: str
    pid: int
    start: float
    end: float | None = None


def runs(times: Path) -> list[Run]:
    found: dict[int, Run] = {}
    for line in times.read_text().splitlines() if times.exists() else []:
        what, at, tag, pid = line.split()
        if what == "start":
            found[int(pid)] = Run(tag, int(pid), float(at))
        elif int(pid) in found:
            found[int(pid)].end = float(at)
    return list(found.values())


def run_of(times: Path, tag: str) -> Run | None:
    return next((r for r in runs(times) if r.tag == tag), None)


def faults_config(
    remote: GitRemote,
    tmp_path: Path,
    *,
    staging: str,
    production: str = "",
    extra: str = "",
    record_retry: float = 30,
) -> str:
    """Staging deployed by `staging`, a lock that expires in TTL seconds."""
    production = production or f"DEPLOY_LOG={tmp_path / 'deploys.log'} sh {SCRIPTS}/deploy.sh"
    return config_text(
        url=str(remote.bare),
        worker={
            "lock_ttl_seconds": TTL,
            "reap_interval_seconds": 0.5,
            "shutdown_grace_seconds": 0,
            "record_retry_seconds": record_retry,
        },
        environments=[
            environment("staging", staging, timeout_seconds=90),
            environment("production", production, timeout_seconds=90),
        ],
        gates=[automatic_gate("e2e", "Automated tests", command=f"sh {SCRIPTS}/gate.sh e2e")],
        extra=extra,
    )


def timed(tmp_path: Path, slow: str = "v0.15.0-rc.1", go_file: Path | None = None) -> str:
    go = f"GO_FILE={go_file} " if go_file else ""
    return f"DEPLOY_TIMES={tmp_path / 'times.log'} SLOW_TAG={slow} {go}sh {SCRIPTS}/timed_deploy.sh"


def write_config(tmp_path: Path, text: str) -> tuple[Path, Config]:
    path = tmp_path / "releasebot.toml"
    path.write_text(text)
    return path, load_config(path)


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGCONT)
        worker.kill()
        worker.wait(timeout=10)


async def started(times: Path, tag: str, timeout: float = 30) -> Run:
    deadline = time.monotonic() + timeout
    while (run := run_of(times, tag)) is None:
        assert time.monotonic() < deadline, f"{tag} never started: {runs(times)}"
        await asyncio.sleep(0.02)
    return run


async def ended(times: Path, tag: str, timeout: float = 30) -> Run:
    deadline = time.monotonic() + timeout
    while (run := run_of(times, tag)) is None or run.end is None:
        assert time.monotonic() < deadline, f"{tag} never ended: {runs(times)}"
        await asyncio.sleep(0.02)
    return run


async def death_of(pid: int, timeout: float) -> float:
    """When the process was first seen dead (at most 10 ms after it died)."""
    deadline = time.monotonic() + timeout
    while running(pid):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        await asyncio.sleep(0.01)
    return time.time()


async def deploy_of(bot, version: str, environment: str = "staging"):
    release = await bot.services.store.get_release(version)
    return release.deploys.get(environment) if release else None


async def settled(bot, version: str, timeout: float = 30):
    """The deploy of `version` to staging once it is neither queued nor running, and its
    worker's own outcome is in (a "worker lost" verdict may be replaced by it)."""
    deadline = time.monotonic() + timeout
    while True:
        deploy = await deploy_of(bot, version)
        if deploy is not None and deploy.status not in ("queued", "running") and not deploy.lost:
            return deploy
        assert time.monotonic() < deadline, f"deploy of {version} never settled: {deploy}"
        await asyncio.sleep(0.05)


async def next_candidate(bot, remote: GitRemote) -> None:
    remote.commit("the next change")
    remote.push()
    await bot.command("rc")


# --- two deploys never overlap ------------------------------------------------------------


async def test_a_frozen_workers_deploy_is_stopped_before_its_lock_can_expire(
    start_bot, git_remote, tmp_path: Path, subprocess_env, redis, prefix
):
    """The repro: a 60 s staging deploy runs; its worker is frozen longer than the lock's
    expiry while a second worker is up. Before the fix the script ran on, and the next
    candidate deployed beside it."""
    path, config = write_config(
        tmp_path, faults_config(git_remote, tmp_path, staging=timed(tmp_path))
    )
    times = tmp_path / "times.log"
    web = await start_bot(config, role="web", name="web")
    await start_bot(config, role="scheduler", name="scheduler")  # the reaper
    frozen = spawn_worker(path, subprocess_env)
    try:
        await web.command("rc")
        first = await started(times, "v0.15.0-rc.1")
        lock_key = f"{prefix}lock:env:staging"
        frozen.send_signal(signal.SIGSTOP)
        frozen_at = time.time()
        # Its deploy dies while the lock is still held: nobody else could have started yet.
        dead_at, lock_gone_at = None, None
        while dead_at is None or lock_gone_at is None:
            now = time.time()
            if dead_at is None and not running(first.pid):
                dead_at = now
            if lock_gone_at is None and not await redis.exists(lock_key):
                lock_gone_at = now
            assert now - frozen_at < 10, (dead_at, lock_gone_at)
            await asyncio.sleep(0.01)
        assert dead_at < lock_gone_at
        assert dead_at - frozen_at < TTL
        message = release_message(web.slack, "v0.15.0-rc.1")
        await web.slack.wait_for(lambda: "stopped responding" in thread_text(web.slack, message))

        # The next candidate deploys on a healthy worker, after the first deploy died.
        await start_bot(config, role="worker", name="healthy")
        await next_candidate(web, git_remote)
        second = await ended(times, "v0.15.0-rc.2")
        assert second.start > dead_at
        assert (await settled(web, "0.15.0-rc.2")).status == "succeeded"

        # The frozen worker wakes: it asks for its lock before anything more, finds it
        # gone, and does nothing more under it.
        frozen.send_signal(signal.SIGCONT)
        await web.slack.wait_for(
            lambda: "lost the environment lock" in thread_text(web.slack, message), timeout=15
        )
        deploy = await deploy_of(web, "0.15.0-rc.1")
        assert deploy.status == "failed" and "lost the environment lock" in deploy.detail
        assert run_of(times, "v0.15.0-rc.1").end is None  # it never got to its end
        versions = await web.services.store.environment_versions(["staging"])
        assert versions["staging"]["version"] == "0.15.0-rc.2"
        rc1 = await web.services.store.get_release("0.15.0-rc.1")
        assert rc1.gate("e2e").status == "pending"  # no gate ran after the freeze
    finally:
        stop_worker(frozen)


async def test_a_worker_cut_off_from_redis_stops_its_deploy(
    start_bot, git_remote, tmp_path: Path, own_redis: RedisServer
):
    """The same promise when Redis hangs (paused longer than the lock's expiry): the worker
    cannot renew its lock, so its deploy stops before anyone could take the environment."""
    _, config = write_config(tmp_path, faults_config(git_remote, tmp_path, staging=timed(tmp_path)))
    times = tmp_path / "times.log"
    bot = await start_bot(config, redis_url=own_redis.url)
    await bot.command("rc")
    first = await started(times, "v0.15.0-rc.1")
    own_redis.pause()
    paused_at = time.time()
    dead_at = await death_of(first.pid, timeout=TTL * 2)
    await asyncio.sleep(max(0.0, paused_at + TTL + 0.5 - time.time()))  # past the expiry
    own_redis.resume()
    assert dead_at - paused_at < TTL  # stopped while Redis was still hung

    message = release_message(bot.slack, "v0.15.0-rc.1")
    await bot.slack.wait_for(
        lambda: "lost the environment lock" in thread_text(bot.slack, message), timeout=20
    )
    await next_candidate(bot, git_remote)
    second = await ended(times, "v0.15.0-rc.2")
    assert second.start > dead_at
    assert (await settled(bot, "0.15.0-rc.1")).status == "failed"
    assert (await settled(bot, "0.15.0-rc.2")).status == "succeeded"


# --- outcomes survive Redis outages ---------------------------------------------------------


async def test_an_outcome_survives_redis_down_across_the_end_of_its_deploy(
    start_bot, git_remote, tmp_path: Path
):
    """The repro: the script succeeded while Redis was down; the bot recorded "failed: worker
    lost", paged on-call and never ran the gates. Now the worker keeps the outcome, writes it
    when Redis is back, and the gates run."""
    server = RedisServer(tmp_path / "redis", persist=True)
    server.start()
    try:
        go = tmp_path / "go"
        _, config = write_config(
            tmp_path, faults_config(git_remote, tmp_path, staging=timed(tmp_path, go_file=go))
        )
        times = tmp_path / "times.log"
        bot = await start_bot(config, redis_url=server.url)
        await bot.command("rc")
        await started(times, "v0.15.0-rc.1")
        server.stop()
        go.touch()  # the script ends (succeeds) during the outage
        first = await ended(times, "v0.15.0-rc.1", timeout=5)
        await asyncio.sleep(TTL + 1)  # the lease and the lock expire meanwhile
        server.start()

        deploy = await settled(bot, "0.15.0-rc.1")
        assert deploy.status == "succeeded", deploy
        message = release_message(bot.slack, "v0.15.0-rc.1")
        text = await bot.slack.wait_for(
            lambda: (
                "Automated tests passed" in thread_text(bot.slack, message)
                and thread_text(bot.slack, message)
            ),
            timeout=30,
        )
        if "stopped responding" in text:  # the reaper got there first: it is corrected
            assert "this is what really happened: it succeeded" in text
        versions = await bot.services.store.environment_versions(["staging"])
        assert versions["staging"]["version"] == "0.15.0-rc.1"
        assert float(versions["staging"]["deployed_at"]) <= first.end + 1
        rows = await health_rows(bot.services, "staging")
        assert [r for r in rows if r["check"] == "deploy"] == []  # any page is resolved
    finally:
        server.stop()


async def test_an_outcome_that_cannot_be_recorded_is_said_in_the_thread(
    start_bot, git_remote, tmp_path: Path, caplog
):
    server = RedisServer(tmp_path / "redis", persist=True)
    server.start()
    try:
        go = tmp_path / "go"
        _, config = write_config(
            tmp_path,
            faults_config(
                git_remote, tmp_path, staging=timed(tmp_path, go_file=go), record_retry=1
            ),
        )
        bot = await start_bot(config, redis_url=server.url)
        await bot.command("rc")
        await started(tmp_path / "times.log", "v0.15.0-rc.1")
        message = release_message(bot.slack, "v0.15.0-rc.1")
        server.stop()
        go.touch()
        text = await bot.slack.wait_for(
            lambda: (
                "could not record it" in thread_text(bot.slack, message)
                and thread_text(bot.slack, message)
            ),
            timeout=15,
        )
        assert "`v0.15.0-rc.1` to *staging* succeeded" in text
        assert any("could not be recorded" in r.getMessage() for r in caplog.records)
        server.start()
    finally:
        server.stop()


# --- a job taken before a freeze -----------------------------------------------------------


async def test_a_job_taken_before_a_freeze_is_not_run_late(
    start_bot, git_remote, tmp_path: Path, subprocess_env
):
    """A worker frozen while it waits for work still takes the next job (Redis hands it over);
    the queue gives that job up when it does not heartbeat, and when the worker wakes it must
    not run it behind the back of people who saw it given up."""
    path, config = write_config(
        tmp_path,
        faults_config(git_remote, tmp_path, staging=timed(tmp_path, slow="none"), record_retry=1),
    )
    times = tmp_path / "times.log"
    web = await start_bot(config, role="web", name="web")
    frozen = spawn_worker(path, subprocess_env)
    try:
        await web.command("rc")
        assert (await settled(web, "0.15.0-rc.1")).status == "succeeded"
        await asyncio.sleep(0.5)  # back to waiting for work
        frozen.send_signal(signal.SIGSTOP)
        release = await web.services.store.get_release("0.15.0-rc.1")
        deploy_id = await deploy_release.enqueue_deploy(web.services, release, "staging", BOT)
        # A healthy worker's queue sweep gives the frozen worker's job up.
        await start_bot(config, role="worker", name="healthy")
        queue = web.services.queue
        deadline = time.monotonic() + 40
        while (job := await queue.job(deploy_id)) is None or not job.error:
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.2)
        frozen.send_signal(signal.SIGCONT)
        deploy = await settled(web, "0.15.0-rc.1")
        assert deploy.status == "blocked" and "gave this job up" in deploy.detail
        message = release_message(web.slack, "v0.15.0-rc.1")
        await web.slack.wait_for(lambda: "is not run late" in thread_text(web.slack, message))
        assert len([r for r in runs(times) if r.tag == "v0.15.0-rc.1"]) == 1  # not re-run
    finally:
        stop_worker(frozen)


# --- a worker killed during each kind of deploy ---------------------------------------------


async def kill_during(worker: subprocess.Popen[bytes], pid_file: Path, redis, lock_key: str):
    """SIGKILL the worker once its deploy runs; returns the deploy's pid. Its lock must be
    free within the lock's expiry, and the deploy dead with its worker."""
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the deploy never started"
        await asyncio.sleep(0.02)
    pid = int(pid_file.read_text().split()[0])
    assert await redis.exists(lock_key)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    killed_at = time.monotonic()
    while await redis.exists(lock_key):
        assert time.monotonic() - killed_at < TTL + 0.5
        await asyncio.sleep(0.05)
    await death_of(pid, timeout=2)
    return pid


async def test_a_worker_killed_during_a_rollback_is_reported_and_frees_the_lock(
    start_bot, git_remote, tmp_path: Path, subprocess_env, redis, prefix
):
    pid_file = tmp_path / "rollback.pid"
    slow = f"echo $$ > {pid_file}; sleep 60"
    path, config = write_config(
        tmp_path, faults_config(git_remote, tmp_path, staging=timed(tmp_path), production=slow)
    )
    web = await start_bot(config, role="web", name="web")
    await start_bot(config, role="scheduler", name="scheduler")
    store = web.services.store
    tags = git_remote.remote_tags()
    await store.set_environment_version("production", "0.14.0", "v0.14.0", tags["v0.14.0"])
    await store.set_environment_version("production", "0.14.1", "v0.14.1", tags["v0.14.1"])
    worker = spawn_worker(path, subprocess_env)
    try:
        ack = web.slack.text_of(await web.command('rollback production --reason "errors"'))
        assert "Rolling back *production*" in ack
        await kill_during(worker, pid_file, redis, f"{prefix}lock:env:production")
        posted = await web.slack.wait_for(
            lambda: [
                m
                for m in web.slack.messages().values()
                if "stopped responding" in web.slack.text_of(m)
            ],
            timeout=15,
        )
        assert "rolling back *production*" in web.slack.text_of(posted[0])
        requests = [k async for k in redis.scan_iter(match=f"{prefix}rollback:*")]
        request = await store.get_rollback(requests[0].decode().rsplit(":", 1)[1])
        assert request.status == "failed"
    finally:
        stop_worker(worker)


async def test_a_worker_killed_during_a_flag_deploy_is_reported_and_frees_the_lock(
    start_bot, git_remote, tmp_path: Path, subprocess_env, redis, prefix
):
    pid_file = tmp_path / "flags.pid"
    push_flags(git_remote, FLAGS)
    path, config = write_config(
        tmp_path,
        faults_config(
            git_remote,
            tmp_path,
            staging=timed(tmp_path),
            extra=f"""
[flags]
deploy_command = "echo $$ > {pid_file}; sleep 60"
verify_seconds = 1
""",
        ),
    )
    web = await start_bot(config, role="web", name="web")
    await start_bot(config, role="scheduler", name="scheduler")
    worker = spawn_worker(path, subprocess_env)
    try:
        body = web.command_body('create dark_mode --description "Dark mode"', command="/flag")
        status, _ = await web.post(body, sign(body))
        assert status == 200
        await kill_during(worker, pid_file, redis, f"{prefix}lock:env:production")
        message = await web.slack.wait_for(
            lambda: next(
                (
                    m
                    for m in web.slack.messages().values()
                    if m.thread_ts is None and "create dark_mode" in web.slack.text_of(m)
                ),
                None,
            )
        )
        await web.slack.wait_for(
            lambda: "did not finish (worker lost" in thread_text(web.slack, message), timeout=15
        )
        raw = [v async for v in redis.scan_iter(match=f"{prefix}flagreq:*")]
        request = json.loads(await redis.get(raw[0]))
        assert request["status"] == "failed" and request["lost"]
        assert git("show", f"main:{FLAGS_PATH}", cwd=git_remote.bare).count("dark_mode") == 1
    finally:
        stop_worker(worker)
