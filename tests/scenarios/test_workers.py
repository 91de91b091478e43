"""Workers as separate processes: roles, environment locks, and a worker killed mid-deploy."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from bot.adapters.redis.locks import RenewingLock, read_lock
from bot.domain.actors import BOT
from bot.domain.releases import TransitionError
from bot.services import deploy_release
from tests.helpers.config import deploy_log, make_config, worker_config_text, write_config
from tests.helpers.messages import release_message, thread_text, wait_for_gates
from tests.helpers.processes import running, spawn_worker


async def test_web_role_enqueues_and_a_separate_worker_process_deploys(
    start_bot, git_remote, tmp_path: Path, subprocess_env
):
    path = write_config(tmp_path, worker_config_text(git_remote, tmp_path))
    from bot.domain.config import load_config

    web = await start_bot(load_config(path), role="web")
    worker = spawn_worker(path, subprocess_env)
    try:
        await web.command("rc --description split")
        await wait_for_gates(web.slack, "v0.15.0-rc.1", count=1)
        assert len(deploy_log(tmp_path)) == 1
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0  # SIGTERM is a clean shutdown


async def test_a_worker_killed_mid_deploy_is_reported_failed_and_frees_the_lock(
    start_bot, git_remote, tmp_path: Path, subprocess_env, redis, prefix
):
    path = write_config(tmp_path, worker_config_text(git_remote, tmp_path, "DEPLOY_SLEEP=60"))
    from bot.domain.config import load_config

    config = load_config(path)
    web = await start_bot(config, role="web", name="web")
    await start_bot(config, role="scheduler", name="scheduler")  # runs the reaper
    worker = spawn_worker(path, subprocess_env)
    try:
        await web.command("rc")
        await web.slack.wait_for(lambda: deploy_log(tmp_path), timeout=30)
        lock_key = f"{prefix}lock:env:staging"
        assert await read_lock(redis, lock_key) is not None
        script_pid = int((tmp_path / "deploys.log.pid").read_text())
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        killed_at = asyncio.get_running_loop().time()

        message = release_message(web.slack, "v0.15.0-rc.1")
        thread = await web.slack.wait_for(
            lambda: (
                "stopped responding" in thread_text(web.slack, message)
                and thread_text(web.slack, message)
            ),
            timeout=15,
        )
        assert "marked *failed*" in thread and "not retried" in thread
        # The lock expires by itself within its TTL (2 s) of the last renewal.
        await web.slack.wait_for(lambda: True, timeout=1)
        while await redis.exists(lock_key):
            assert asyncio.get_running_loop().time() - killed_at < 2.5
            await asyncio.sleep(0.05)
        release = await web.services.store.get_release("0.15.0-rc.1")
        assert release.deploys["staging"].status == "failed"
        assert "worker lost" in release.deploys["staging"].detail
        await web.slack.wait_for(
            lambda: "deploy failed" in web.slack.text_of(release_message(web.slack, "v0.15.0-rc.1"))
        )
        # The deploy command died with its worker.
        await asyncio.sleep(0.2)
        assert not running(script_pid)
    finally:
        if worker.poll() is None:
            worker.kill()

    # A new worker (and saq's sweep) never runs the lost job again behind anyone's back.
    worker2 = spawn_worker(path, subprocess_env)
    try:
        await asyncio.sleep(4)
        assert len(deploy_log(tmp_path)) == 1
        entries = await web.services.store.audit_entries("0.15.0-rc.1")
        finishes = [e for e in entries if e["action"] == "deploy.finish"]
        assert [e["outcome"] for e in finishes] == ["failed"]
    finally:
        worker2.terminate()
        worker2.wait(timeout=30)


async def test_a_busy_environment_says_who_holds_it_and_since_when(
    start_bot, git_remote, tmp_path: Path, redis, prefix
):
    bot = await start_bot(make_config(git_remote, tmp_path))
    lock = RenewingLock(redis, f"{prefix}lock:env:staging", 5)
    await lock.acquire("U0BOB", "deploying v0.14.1")
    try:
        await bot.command("rc")
        message = await bot.slack.wait_for(lambda: release_message(bot.slack, "v0.15.0-rc.1"))
        thread = await bot.slack.wait_for(
            lambda: (
                "is busy" in thread_text(bot.slack, message) and thread_text(bot.slack, message)
            ),
            timeout=20,
        )
        assert "<@U0BOB>" in thread and "deploying v0.14.1" in thread and "since" in thread
        assert deploy_log(tmp_path) == []
        status = bot.slack.text_of(await bot.command("status"))
        assert "<@U0BOB>" in status and "staging" in status
        release = await bot.services.store.get_release("0.15.0-rc.1")
        assert release.deploys["staging"].status == "blocked"
    finally:
        await lock.release()


async def test_two_workers_never_deploy_one_environment_at_once(
    start_bot, git_remote, tmp_path: Path
):
    config = make_config(git_remote, tmp_path, deploy_env="DEPLOY_SLEEP=1")
    first = await start_bot(config, name="one")
    second = await start_bot(config, name="two")
    await first.command("rc")
    await wait_for_gates(first.slack, "v0.15.0-rc.1")
    git_remote.commit("next")
    git_remote.push()
    await first.command("rc")
    await wait_for_gates(first.slack, "v0.15.0-rc.2")
    store = first.services.store
    rc1, rc2 = await store.get_release("0.15.0-rc.1"), await store.get_release("0.15.0-rc.2")
    # Two releases to staging at once, each enqueued by another replica, two workers free.
    await asyncio.gather(
        deploy_release.enqueue_deploy(first.services, rc1, "staging", BOT),
        deploy_release.enqueue_deploy(second.services, rc2, "staging", BOT),
    )

    async def settled():
        r1, r2 = await store.get_release("0.15.0-rc.1"), await store.get_release("0.15.0-rc.2")
        states = sorted([r1.deploys["staging"].status, r2.deploys["staging"].status])
        return states if "running" not in states and "queued" not in states else None

    for _ in range(200):
        states = await settled()
        if states:
            break
        await asyncio.sleep(0.05)
    details = [
        (await store.get_release(v)).deploys["staging"] for v in ("0.15.0-rc.1", "0.15.0-rc.2")
    ]
    assert states == ["blocked", "succeeded"], details
    assert len(deploy_log(tmp_path)) == 3  # rc.1, rc.2, and only one of the raced pair
    blocked = (
        rc1
        if (await store.get_release("0.15.0-rc.1")).deploys["staging"].status == "blocked"
        else rc2
    )
    message = release_message(first.slack, blocked.tag)
    await first.slack.wait_for(lambda: "is busy" in thread_text(first.slack, message))


async def test_a_second_deploy_of_a_queued_release_is_refused(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(make_config(git_remote, tmp_path, deploy_env="DEPLOY_SLEEP=1"))
    await bot.command("rc")
    await bot.slack.wait_for(lambda: deploy_log(tmp_path), timeout=20)
    release = await bot.services.store.get_release("0.15.0-rc.1")
    try:
        await deploy_release.enqueue_deploy(bot.services, release, "staging", BOT)
        raise AssertionError("a second deploy while one runs must be refused")
    except TransitionError as exc:
        assert "already running" in str(exc)


def test_serve_cli_reports_a_taken_port_and_missing_settings(
    tmp_path: Path, git_remote, subprocess_env
):
    import socket

    path = write_config(tmp_path, worker_config_text(git_remote, tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bot.runtime.cli",
                "serve",
                "--role",
                "web",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--config",
                str(path),
            ],
            env=subprocess_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 2
    assert f"cannot serve on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr
    env = {k: v for k, v in subprocess_env.items() if k != "SLACK_SIGNING_SECRET"}
    out = subprocess.run(
        [sys.executable, "-m", "bot.runtime.cli", "serve", "--config", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "SLACK_SIGNING_SECRET" in out.stderr


async def test_a_busy_worker_stopped_gives_its_deploy_the_grace_period_then_reports_it(
    start_bot, git_remote, tmp_path: Path, subprocess_env, redis, prefix
):
    """SIGTERM while a deploy runs: the deploy gets `shutdown_grace_seconds`, then its command
    is killed, the deploy reported failed in its thread, and the lock freed."""
    text = worker_config_text(git_remote, tmp_path, "DEPLOY_SLEEP=60").replace(
        "shutdown_grace_seconds = 0", "shutdown_grace_seconds = 2"
    )
    assert "shutdown_grace_seconds = 2" in text
    path = write_config(tmp_path, text)
    from bot.domain.config import load_config

    config = load_config(path)
    web = await start_bot(config, role="web", name="web")
    worker = spawn_worker(path, subprocess_env)
    try:
        await web.command("rc")
        await web.slack.wait_for(lambda: deploy_log(tmp_path), timeout=30)
        script_pid = int((tmp_path / "deploys.log.pid").read_text())
        asked = asyncio.get_running_loop().time()
        worker.send_signal(signal.SIGTERM)
        while worker.poll() is None:
            await asyncio.sleep(0.05)
        took = asyncio.get_running_loop().time() - asked
        assert 2.0 <= took < 8.0, took  # the grace period, then the kill and the report
        assert not running(script_pid)
        release = await web.services.store.get_release("0.15.0-rc.1")
        assert release is not None and release.deploys["staging"].status == "failed"
        assert not await redis.exists(f"{prefix}lock:env:staging")
        await web.slack.wait_for(
            lambda: (
                "deploy failed" in web.slack.text_of(release_message(web.slack, "v0.15.0-rc.1"))
            ),
            timeout=10,
        )
    finally:
        if worker.poll() is None:
            worker.kill()
