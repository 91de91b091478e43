"""What lets a deploy start soon without starting the wrong thing: a checkout of a version the
bot's clone already has is made without a fetch, but only while the remote's tag still points
at the recorded commit; and the worker picks a job up as soon as it is queued, however long it
was idle. Real git repositories, the real Redis, the real worker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis
from saq import Worker

from bot.adapters import git_clone as gitrepo
from bot.runtime.container import REDIS_OPTIONS, PatientQueue, Services
from bot.runtime.worker import build_worker, queue_wait_seconds
from bot.services import roll_back as rollback_jobs
from tests.helpers.bot import make_settings
from tests.helpers.config import deploy_log, make_config
from tests.helpers.config import production_config as config
from tests.helpers.messages import release_message, thread_text
from tests.helpers.redis_server import REDIS_URL
from tests.helpers.repos import git
from tests.helpers.steps import ROLLBACK_POLICY as POLICY
from tests.helpers.steps import in_production, rolled_back


@pytest.fixture
def clone(git_remote, tmp_path: Path) -> Path:
    """The bot's clone, fetched once (as creating a candidate does)."""
    path = tmp_path / "clone"
    gitrepo.sync_tags(str(git_remote.bare), path, "origin")
    return path


def local_tags(path: Path) -> set[str]:
    return set(git("tag", "--list", cwd=path).split())


def checkout(git_remote, clone: Path, tag: str, sha: str) -> Path:
    return gitrepo.checkout(str(git_remote.bare), clone, "origin", tag, sha)


@pytest.mark.parametrize("tag", ["v0.14.1", "bd-12"])  # annotated, lightweight
def test_a_version_the_clone_has_is_checked_out_without_a_fetch(git_remote, clone, tag):
    sha = git_remote.remote_tags()[tag]
    git_remote.commit("later work")
    git_remote.tag("v9.9.9")
    git_remote.push()
    tree = checkout(git_remote, clone, tag, sha)
    try:
        assert (tree / "app.txt").read_text() == git(
            "show", f"{sha}:app.txt", cwd=git_remote.work
        ) + "\n"
        assert not (tree / ".git").exists()
    finally:
        gitrepo.remove_tree(tree)
    assert "v9.9.9" not in local_tags(clone)  # nothing was fetched for it


def test_a_tag_moved_on_the_remote_is_refused_though_the_clone_has_the_recorded_commit(
    git_remote, clone
):
    sha = git_remote.remote_tags()["v0.14.1"]
    other = git_remote.commit("sneaky")
    git("tag", "-f", "-a", "v0.14.1", "-m", "moved", other, cwd=git_remote.work)
    git("push", "-q", "-f", "origin", "v0.14.1", cwd=git_remote.work)
    with pytest.raises(gitrepo.GitError, match="someone moved it"):
        checkout(git_remote, clone, "v0.14.1", sha)


def test_a_tag_deleted_on_the_remote_is_refused(git_remote, clone):
    sha = git_remote.remote_tags()["v0.14.1"]
    git("push", "-q", "origin", ":refs/tags/v0.14.1", cwd=git_remote.work)
    with pytest.raises(gitrepo.GitError, match="not on origin any more"):
        checkout(git_remote, clone, "v0.14.1", sha)


def test_a_ref_that_only_ends_like_the_tag_does_not_count(git_remote, clone):
    """ls-remote matches the end of ref names: refs/tags/x/refs/tags/v0.14.1 is not v0.14.1."""
    sha = git_remote.remote_tags()["v0.14.1"]
    git("tag", "x/refs/tags/v0.14.1", sha, cwd=git_remote.work)
    git("push", "-q", "origin", "x/refs/tags/v0.14.1", ":refs/tags/v0.14.1", cwd=git_remote.work)
    with pytest.raises(gitrepo.GitError, match="not on origin any more"):
        checkout(git_remote, clone, "v0.14.1", sha)


def test_a_tag_the_clone_has_not_seen_is_fetched_first(git_remote, clone):
    sha = git_remote.commit("new work")
    git_remote.tag("v0.16.0", annotated=True)
    git_remote.push()
    tree = checkout(git_remote, clone, "v0.16.0", sha)
    try:
        assert (tree / "app.txt").read_text() == "new work\n"
    finally:
        gitrepo.remove_tree(tree)
    assert "v0.16.0" in local_tags(clone)


def test_a_clone_of_another_url_or_a_damaged_one_is_fetched_and_mended(git_remote, clone, tmp_path):
    sha = git_remote.remote_tags()["v0.14.1"]
    mirror = tmp_path / "mirror.git"
    git("clone", "-q", "--mirror", str(git_remote.bare), str(mirror), cwd=tmp_path)
    tree = gitrepo.checkout(str(mirror), clone, "origin", "v0.14.1", sha)
    gitrepo.remove_tree(tree)
    assert git("remote", "get-url", "origin", cwd=clone) == str(mirror)
    (clone / ".git" / "HEAD").write_text("garbage\n")
    tree = gitrepo.checkout(str(mirror), clone, "origin", "v0.14.1", sha)
    try:
        assert (tree / "app.txt").read_text() == "fourth\n"
    finally:
        gitrepo.remove_tree(tree)


async def test_a_rollback_to_a_tag_moved_since_it_ran_is_refused(
    start_bot, git_remote, tmp_path: Path
):
    """The bot's clone has v0.14.1 at the commit production ran; the remote's tag now points
    elsewhere. The rollback must neither deploy the new commit nor pretend all is well."""
    bot = await start_bot(config(git_remote, tmp_path))
    await in_production(bot, git_remote)
    runs = len(deploy_log(tmp_path))
    other = git_remote.commit("sneaky")
    git("tag", "-f", "-a", "v0.14.1", "-m", "moved", other, cwd=git_remote.work)
    git("push", "-q", "-f", "origin", "v0.14.1", cwd=git_remote.work)
    await bot.command('rollback --reason "errors"', user="U0BOB", user_name="bob")
    message = release_message(bot.slack, "v0.15.0-rc.1")
    thread = await bot.slack.wait_for(
        lambda: (
            "someone moved it" in thread_text(bot.slack, message)
            and thread_text(bot.slack, message)
        ),
        timeout=30,
    )
    assert "sneaky" not in thread
    assert len(deploy_log(tmp_path)) == runs  # nothing was run


async def test_a_rollback_reuses_the_clone_and_runs_the_recorded_commit(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(config(git_remote, tmp_path, POLICY))
    await in_production(bot, git_remote)
    sha = git_remote.remote_tags()["v0.14.1"]
    git_remote.commit("later work")
    git_remote.tag("v9.9.9")
    git_remote.push()
    await bot.command('rollback production --to v0.14.1 --reason "errors"', user="U0BOB")
    request = await bot.slack.wait_for(
        lambda: [
            m for m in bot.slack.messages().values() if "asks to roll back" in bot.slack.text_of(m)
        ]
    )
    await bot.click(request[0], "rollback_approve", user="U0CAROL", user_name="carol")
    await rolled_back(bot)
    assert deploy_log(tmp_path)[-1] == f"production 0.14.1 v0.14.1 {sha} fourth"
    assert "v9.9.9" not in local_tags(bot.services.clone_path)


# --- picking jobs up ------------------------------------------------------------------------------


def test_a_pop_for_jobs_ends_well_inside_the_redis_socket_timeout(
    git_remote, tmp_path, prefix, slack
):
    services = Services.create(
        make_settings(prefix, slack, tmp_path / "state"), make_config(git_remote, tmp_path)
    )
    worker = build_worker(services)
    assert 0 < worker.dequeue_timeout <= REDIS_OPTIONS["socket_timeout"] / 2
    assert queue_wait_seconds(services) == worker.dequeue_timeout


async def test_an_idle_worker_picks_a_job_up_at_once(git_remote, tmp_path, prefix, slack, redis):
    """Idle for several socket timeouts (shortened here to 0.4 s), the worker never took
    its wait for a Redis outage, and a job queued then is picked up at once."""
    services = Services.create(
        make_settings(prefix, slack, tmp_path / "state"), make_config(git_remote, tmp_path)
    )
    await services.queue.disconnect()
    quick = Redis.from_url(REDIS_URL, **{**REDIS_OPTIONS, "socket_timeout": 0.4})
    queue = PatientQueue(quick, name=services.store.keys.queue_name)
    services.queue = queue
    worker: Worker = build_worker(services)
    assert worker.dequeue_timeout == pytest.approx(0.2)
    task = asyncio.create_task(worker.start())
    try:
        await asyncio.sleep(1.5)
        assert queue._backoff == 0.0  # no pop ever failed as if Redis were down
        queued = time.monotonic()
        # A rollback job for a request that does not exist: it ends at once, doing nothing.
        job = await queue.enqueue(
            rollback_jobs.ROLLBACK, request_id="none", actor={"user_id": "U0BOB"}, key="pickup-test"
        )
        assert job is not None
        while (await queue.job(job.key)).status.value not in ("active", "complete", "failed"):
            assert time.monotonic() - queued < 5, "the job was never picked up"
            await asyncio.sleep(0.005)
        assert time.monotonic() - queued < 0.5
        assert queue._backoff == 0.0
    finally:
        await worker.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await services.close()
