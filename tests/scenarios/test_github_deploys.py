"""Environments GitHub deploys (the REST stand-in on 127.0.0.1): a workflow the bot dispatches
and follows, a GitHub Deployment an executor runs, with the environment's lock, gates,
rollback and monitoring as for a command; and every deploy recorded as a Deployment."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.github import GitHubConfig
from bot.adapters.redis.locks import RenewingLock, read_lock
from bot.devtools.github_stand_in import GitHubStandIn
from bot.devtools.slack_stand_in import validate_blocks
from tests.helpers.config import SCRIPTS, automatic_gate, config_text, deploy_log, parse
from tests.helpers.messages import release_message, thread_text
from tests.helpers.repos import GitRemote
from tests.helpers.steps import in_production, rolled_back

OWNER, REPO = "acme", "site"
WORKFLOW = {
    "github_workflow": "deploy.yml",
    "inputs": {"environment": "{env}", "version": "{version}", "rollback": "{rollback}"},
    "start_timeout_seconds": 3,
}
INPUTS = ("environment", "version", "rollback", "correlation_id")


def github_config(
    git_remote: GitRemote,
    tmp_path: Path,
    *,
    staging: dict[str, Any] | None = None,
    production: dict[str, Any] | None = None,
    extra: str = "",
) -> Any:
    """Staging and production, each deployed by GitHub as given (else by
    tests/scripts/deploy.sh), two command gates and a manual one after staging, GitHub polled
    every 0.1 s."""
    log = tmp_path / "deploys.log"

    def env(name: str, via: dict[str, Any] | None) -> dict[str, Any]:
        how = (
            {"deploy": via}
            if via
            else {"deploy_command": f"DEPLOY_LOG={log} sh {SCRIPTS}/deploy.sh"}
        )
        return {"name": name, "timeout_seconds": 20, **how}

    return parse(
        config_text(
            url=str(git_remote.bare),
            repository={"branch": "main"},
            worker={
                "lock_ttl_seconds": 3,
                "reap_interval_seconds": 0.5,
                "concurrency": 2,
                "shutdown_grace_seconds": 0,
            },
            environments=[env("staging", staging), env("production", production)],
            gates=[
                automatic_gate("e2e", "Automated tests", command=f"sh {SCRIPTS}/gate.sh e2e"),
                automatic_gate("infra", "Infra", command=f"sh {SCRIPTS}/gate.sh infra"),
            ],
            extra=f'[github]\nrepository = "{OWNER}/{REPO}"\npoll_seconds = 0.1\n'
            + '\n[[gates]]\nid = "qa"\nname = "Manual QA"\nstage = "staging"\nmanual = true\n'
            + extra,
        )
    )


@pytest.fixture
async def github(git_remote: GitRemote):
    async with GitHubStandIn() as stand_in:
        stand_in.repo(OWNER, REPO)
        # GitHub has the repository's tags as the bot pushes them.
        stand_in.ref_source = lambda ref: git_remote.remote_tags().get(ref)
        yield stand_in


def access(github: GitHubStandIn) -> GitHubConfig:
    return GitHubConfig(api_url=github.base_url, token=github.token, max_wait=5, retries=1)


async def thread_saying(bot: Any, tag: str, words: str, timeout: float = 30) -> str:
    def said() -> str | None:
        message = release_message(bot.slack, tag)
        text = thread_text(bot.slack, message) if message else ""
        return text if words in text else None

    found: str = await bot.slack.wait_for(said, timeout=timeout)
    return found


def dispatches(github: GitHubStandIn) -> list[Any]:
    return github.requests("POST", f"/repos/{OWNER}/{REPO}/actions/workflows/deploy.yml")


async def test_a_workflow_deploy_is_dispatched_followed_and_recorded(
    start_bot, git_remote: GitRemote, tmp_path: Path, github: GitHubStandIn, redis, prefix
):
    github.add_workflow(OWNER, REPO, "deploy.yml", inputs=INPUTS)
    bot = await start_bot(
        github_config(git_remote, tmp_path, staging=WORKFLOW), github=access(github)
    )
    await bot.command("rc")
    await thread_saying(bot, "v0.15.0-rc.1", "GitHub Actions is deploying to *staging*")
    (dispatch,) = dispatches(github)
    inputs = dispatch.json["inputs"]
    assert dispatch.json["ref"] == "v0.15.0-rc.1"
    assert {k: inputs[k] for k in ("environment", "version", "rollback")} == {
        "environment": "staging",
        "version": "0.15.0-rc.1",
        "rollback": "false",
    }
    assert inputs["correlation_id"].startswith("rb-")
    # While GitHub works, the deploy holds staging: nobody else deploys there meanwhile.
    lock = await read_lock(redis, f"{prefix}lock:env:staging")
    assert lock is not None and "deploying v0.15.0-rc.1" in lock.reason
    (run_id,) = github.run_ids()
    github.advance(run_id)  # in progress: the first step of its job
    text = await thread_saying(bot, "v0.15.0-rc.1", "is in progress")
    assert f"actions/runs/{run_id}" in text
    for _ in range(4):
        github.advance(run_id)
    text = await thread_saying(bot, "v0.15.0-rc.1", "Deployed v0.15.0-rc.1 to *staging*")
    assert "details on github.com" in text
    await thread_saying(bot, "v0.15.0-rc.1", "Automated tests passed")  # gates ran after it
    versions = await bot.services.store.environment_versions(["staging"])
    assert versions["staging"]["version"] == "0.15.0-rc.1"
    assert deploy_log(tmp_path) == []  # no command ran
    # Recorded on GitHub: a Deployment of the tag to staging, with its status.
    (deployment,) = github.repo(OWNER, REPO).deployments
    assert (deployment["ref"], deployment["environment"]) == ("v0.15.0-rc.1", "staging")
    assert deployment["payload"]["deployed_by"] == "releasebot"
    assert deployment["task"] == "deploy:record"  # no executor deploys it again
    statuses = github.repo(OWNER, REPO).deployment_statuses[deployment["id"]]
    assert statuses[-1]["state"] == "success"
    assert statuses[-1]["log_url"].endswith(f"actions/runs/{run_id}")
    message = release_message(bot.slack, "v0.15.0-rc.1")
    assert message is not None
    validate_blocks(message.blocks)


async def test_a_failed_run_fails_the_deploy_with_its_log_tail(
    start_bot, git_remote: GitRemote, tmp_path: Path, github: GitHubStandIn
):
    flow = github.add_workflow(OWNER, REPO, "deploy.yml", inputs=INPUTS)
    flow.outcome = "failure"
    flow.log = ("Run ./deploy.sh", "error: the cluster refused the image", "exit code 3")
    github.seconds_per_stage = 0.05
    bot = await start_bot(
        github_config(git_remote, tmp_path, staging=WORKFLOW), github=access(github)
    )
    await bot.command("rc")
    text = await thread_saying(bot, "v0.15.0-rc.1", "Last lines of its output")
    assert "ended failure on GitHub Actions" in text
    assert "error: the cluster refused the image" in text
    assert "details on github.com" in text
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release is not None and release.deploys["staging"].status == "failed"
    # Its gates never ran, and GitHub's Deployment says failure.
    assert release.gate("e2e").status == "pending"
    (deployment,) = github.repo(OWNER, REPO).deployments
    assert github.repo(OWNER, REPO).deployment_statuses[deployment["id"]][-1]["state"] == "failure"


async def test_a_run_that_never_shows_fails_and_keeps_the_environment_locked(
    start_bot, git_remote: GitRemote, tmp_path: Path, github: GitHubStandIn, redis, prefix
):
    flow = github.add_workflow(OWNER, REPO, "deploy.yml", inputs=INPUTS)
    flow.starts = False  # GitHub takes the dispatch; no run ever shows
    bot = await start_bot(
        github_config(git_remote, tmp_path, staging=WORKFLOW), github=access(github)
    )
    await bot.command("rc")
    text = await thread_saying(bot, "v0.15.0-rc.1", "stays locked")
    assert "no run of deploy.yml showed within 3 s" in text
    assert "Nothing was run" not in text  # GitHub accepted it: a run may yet deploy
    assert len(dispatches(github)) == 1  # never dispatched twice
    # Whatever GitHub may still run there, nobody deploys over it until someone checked.
    lock = await read_lock(redis, f"{prefix}lock:env:staging")
    assert lock is not None and lock.kind == "manual" and "never showed" in lock.reason
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release is not None and release.deploys["staging"].status == "failed"


async def test_a_run_past_its_time_is_cancelled_and_the_environment_freed(
    start_bot, git_remote: GitRemote, tmp_path: Path, github: GitHubStandIn, redis, prefix
):
    github.add_workflow(OWNER, REPO, "deploy.yml", inputs=INPUTS)  # runs only on advance()
    config = github_config(git_remote, tmp_path, staging=WORKFLOW)
    staging = dataclasses.replace(config.environments[0], timeout_seconds=2)
    bot = await start_bot(
        dataclasses.replace(config, environments=(staging, config.environments[1])),
        github=access(github),
    )
    await bot.command("rc")
    text = await thread_saying(bot, "v0.15.0-rc.1", "timed out after")
    assert "I stopped" in text and "it ran out of time" in text
    (run_id,) = github.run_ids()
    assert github.requests("POST", f"/repos/{OWNER}/{REPO}/actions/runs/{run_id}/cancel")
    assert "stays locked" not in text
    assert await read_lock(redis, f"{prefix}lock:env:staging") is None


async def test_a_dispatch_github_refuses_says_why(
    start_bot, git_remote: GitRemote, tmp_path: Path, github: GitHubStandIn
):
    github.add_workflow(OWNER, REPO, "deploy.yml", inputs=("correlation_id",))  # no inputs
    bot = await start_bot(
        github_config(git_remote, tmp_path, staging=WORKFLOW), github=access(github)
    )
    await bot.command("rc")
    text = await thread_saying(bot, "v0.15.0-rc.1", "Nothing was run")
    assert "GitHub refused to start deploy.yml" in text
    assert "Unexpected inputs provided" in text and "Nothing was run" in text


async def test_a_rate_limited_api_is_waited_out(
    start_bot, git_remote: GitRemote, tmp_path: Path, github: GitHubStandIn
):
    github.add_workflow(OWNER, REPO, "deploy.yml", inputs=INPUTS)
    github.seconds_per_stage = 0.05
    github.fail_next(f"/repos/{OWNER}/{REPO}/actions/runs", status=403, retry_after=1, times=2)
    bot = await start_bot(
        github_config(git_remote, tmp_path, staging=WORKFLOW), github=access(github)
    )
    await bot.command("rc")
    await thread_saying(bot, "v0.15.0-rc.1", "Deployed v0.15.0-rc.1 to *staging*")
    limited = [c for c in github.calls if c.status == 403]
    assert len(limited) == 2
    assert len(dispatches(github)) == 1


async def test_a_deployment_is_created_and_followed_to_success(
    start_bot, git_remote: GitRemote, tmp_path: Path, github: GitHubStandIn
):
    github.add_deployment_executor(
        OWNER, REPO, environment="staging", log_url="https://ci.example/deploys/7"
    )
    bot = await start_bot(
        github_config(
            git_remote,
            tmp_path,
            staging={"github_deployment": True, "start_timeout_seconds": 5},
        ),
        github=access(github),
    )
    await bot.command("rc")
    await thread_saying(bot, "v0.15.0-rc.1", "waiting for its executor")
    (deployment,) = github.repo(OWNER, REPO).deployments
    # The approved commit itself (a tag could be moved), the tag in the payload.
    sha = git_remote.remote_tags()["v0.15.0-rc.1"]
    assert (deployment["ref"], deployment["sha"]) == (sha, sha)
    assert deployment["environment"] == "staging" and deployment["task"] == "deploy"
    assert deployment["payload"]["tag"] == "v0.15.0-rc.1"
    for _ in range(3):
        github.advance()
        await asyncio.sleep(0.3)
    text = await thread_saying(bot, "v0.15.0-rc.1", "Deployed v0.15.0-rc.1 to *staging*")
    assert "https://ci.example/deploys/7" in text
    # It is the record itself: no second Deployment.
    assert len(github.repo(OWNER, REPO).deployments) == 1


async def test_a_deployment_nobody_executes_fails_and_is_marked_an_error(
    start_bot, git_remote: GitRemote, tmp_path: Path, github: GitHubStandIn, redis, prefix
):
    bot = await start_bot(
        github_config(
            git_remote,
            tmp_path,
            staging={"github_deployment": True, "start_timeout_seconds": 1},
        ),
        github=access(github),
    )
    await bot.command("rc")
    text = await thread_saying(bot, "v0.15.0-rc.1", "stays locked")
    assert "is an executor" in text
    (deployment,) = github.repo(OWNER, REPO).deployments
    assert github.repo(OWNER, REPO).deployment_statuses[deployment["id"]][-1]["state"] == "error"
    # An executor could still pick it up: nothing else deploys there until someone checked.
    lock = await read_lock(redis, f"{prefix}lock:env:staging")
    assert lock is not None and "executor may still be deploying" in lock.reason


async def test_a_rollback_dispatches_the_older_version(
    start_bot, git_remote: GitRemote, tmp_path: Path, github: GitHubStandIn
):
    github.add_workflow(OWNER, REPO, "deploy.yml", inputs=INPUTS)
    github.seconds_per_stage = 0.02
    bot = await start_bot(
        github_config(git_remote, tmp_path, production=WORKFLOW), github=access(github)
    )
    await in_production(bot, git_remote)
    ack = bot.slack.text_of(
        await bot.command('rollback --reason "checkout errors"', user="U0BOB", user_name="bob")
    )
    assert "from `v0.15.0` to `v0.14.1`" in ack
    await rolled_back(bot)
    last = dispatches(github)[-1].json
    assert last["ref"] == "v0.14.1"
    assert (last["inputs"]["version"], last["inputs"]["rollback"]) == ("0.14.1", "true")
    versions = await bot.services.store.environment_versions(["production"])
    assert versions["production"]["version"] == "0.14.1"
    production = [
        d for d in github.repo(OWNER, REPO).deployments if d["environment"] == "production"
    ]
    assert [d["ref"] for d in production] == ["v0.15.0", "v0.14.1"]
    assert production[-1]["payload"]["rollback"] is True


async def test_a_run_whose_worker_lost_the_lock_is_cancelled(
    start_bot, git_remote: GitRemote, tmp_path: Path, github: GitHubStandIn, redis, prefix
):
    github.add_workflow(OWNER, REPO, "deploy.yml", inputs=INPUTS)  # runs only on advance()
    bot = await start_bot(
        github_config(git_remote, tmp_path, staging=WORKFLOW), github=access(github)
    )
    await bot.command("rc")
    await thread_saying(bot, "v0.15.0-rc.1", "GitHub Actions is deploying to *staging*")
    # Someone else holds staging now (the lock lapsed while this worker was cut off).
    key = f"{prefix}lock:env:staging"
    await redis.delete(key)
    other = RenewingLock(redis, key, 3.0)
    await other.acquire("U0BOB", "hotfix by hand")
    try:
        text = await thread_saying(bot, "v0.15.0-rc.1", "Deploy of v0.15.0-rc.1 to *staging*")
        assert "lost the environment lock" in text and "I stopped" in text
        (run_id,) = github.run_ids()
        assert github.requests("POST", f"/repos/{OWNER}/{REPO}/actions/runs/{run_id}/cancel")
        lock = await read_lock(redis, key)
        assert lock is not None and lock.holder == "U0BOB"  # never released by the deploy
    finally:
        await other.release()


async def test_a_dispatch_whose_answer_was_lost_is_found_not_sent_again(
    start_bot, git_remote: GitRemote, tmp_path: Path, github: GitHubStandIn
):
    github.add_workflow(OWNER, REPO, "deploy.yml", inputs=INPUTS)
    github.seconds_per_stage = 0.05
    # GitHub takes the dispatch, but the answer on the way back is a 502.
    github.fail_next(
        f"/repos/{OWNER}/{REPO}/actions/workflows/deploy.yml/dispatches",
        status=502,
        after_handling=True,
    )
    bot = await start_bot(
        github_config(git_remote, tmp_path, staging=WORKFLOW), github=access(github)
    )
    await bot.command("rc")
    await thread_saying(bot, "v0.15.0-rc.1", "Deployed v0.15.0-rc.1 to *staging*")
    assert len(dispatches(github)) == 1 and len(github.run_ids()) == 1
