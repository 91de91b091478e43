"""The GitHub client against the GitHub stand-in on 127.0.0.1: real HTTP both ways."""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import jwt
import pytest

from bot.adapters.github import (
    GitHubClient,
    GitHubConfig,
    GitHubError,
    GitHubUnavailable,
    WorkflowInfo,
)
from bot.devtools.github_stand_in import GitHubStandIn
from tests.helpers.keys import key_pair

OWNER, REPO = "acme", "shop"
SHA = "a" * 40


@pytest.fixture
async def github() -> AsyncIterator[GitHubStandIn]:
    async with GitHubStandIn() as stand_in:
        stand_in.repo(OWNER, REPO)
        yield stand_in


def client_for(github: GitHubStandIn, **options: Any) -> GitHubClient:
    return GitHubClient(GitHubConfig(api_url=github.base_url, token=github.token, **options))


async def test_statuses_and_check_runs_are_read_together_across_pages(
    github: GitHubStandIn,
) -> None:
    github.set_status(OWNER, REPO, SHA, "ci/lint", "pending")
    github.set_status(OWNER, REPO, SHA, "ci/lint", "success", target_url="https://ci/lint")
    github.set_status(OWNER, REPO, SHA, "ci/security", "error")
    for n in range(250):
        github.add_check_run(OWNER, REPO, SHA, f"test-{n:03}")
    github.add_check_run(OWNER, REPO, SHA, "slow", status="in_progress")
    github.add_check_run(OWNER, REPO, SHA, "docs", conclusion="skipped")
    github.add_check_run(OWNER, REPO, SHA, "flaky", conclusion="timed_out")

    async with client_for(github) as client:
        checks = await client.commit_checks(OWNER, REPO, SHA)

    by_name = {c.name: c for c in checks}
    assert len(checks) == 2 + 253
    assert by_name["ci/lint"].state == "success"
    assert by_name["ci/lint"].link == "https://ci/lint"
    assert (by_name["ci/security"].state, by_name["ci/security"].conclusion) == (
        "failure",
        "error",
    )
    assert by_name["slow"].state == "pending"
    assert by_name["docs"].state == "skipped"
    assert by_name["flaky"].state == "failure"
    pages = github.requests("GET", f"/repos/{OWNER}/{REPO}/commits/{SHA}/check-runs")
    assert [c.query.get("page", "1") for c in pages] == ["1", "2", "3"]
    assert all(c.query["per_page"] == "100" for c in pages)


async def test_a_dispatched_run_is_found_by_its_correlation_id_and_followed(
    github: GitHubStandIn,
) -> None:
    github.add_workflow(OWNER, REPO, "deploy.yml", inputs=("correlation_id", "version"))
    since = datetime.now(UTC)
    async with client_for(github) as client:
        await client.dispatch_workflow(
            OWNER, REPO, "deploy.yml", "main", {"correlation_id": "rb-1", "version": "1.2.0"}
        )
        await client.dispatch_workflow(
            OWNER, REPO, "deploy.yml", "main", {"correlation_id": "rb-2", "version": "1.3.0"}
        )
        run = await client.find_run(OWNER, REPO, "deploy.yml", "rb-1", since)
        assert run is not None and run.status == "queued" and "rb-1" in run.display_title
        github.advance(run.id)
        run = await client.run(OWNER, REPO, run.id)
        assert (run.status, run.job, run.step) == ("in_progress", "deploy", "Set up job")
        github.advance(run.id)
        run = await client.run(OWNER, REPO, run.id)
        assert (run.status, run.step) == ("in_progress", "Deploy")
        github.advance(run.id)
        run = await client.run(OWNER, REPO, run.id)
        assert run.succeeded and run.html_url.endswith(f"/actions/runs/{run.id}")

        github.repo(OWNER, REPO).workflows["deploy.yml"].outcome = "failure"
        await client.dispatch_workflow(
            OWNER, REPO, "deploy.yml", "main", {"correlation_id": "rb-3", "version": "1.4.0"}
        )
        failing = await client.find_run(OWNER, REPO, "deploy.yml", "rb-3", since)
        assert failing is not None
        for _ in range(3):
            github.advance(failing.id)
        failing = await client.run(OWNER, REPO, failing.id)
        assert (failing.status, failing.conclusion) == ("completed", "failure")
        assert not failing.succeeded


async def test_a_run_lists_its_jobs_with_their_ids_and_states(github: GitHubStandIn) -> None:
    flow = github.add_workflow(OWNER, REPO, "deploy.yml")
    flow.jobs = (("build", ("Set up job", "Build")), ("deploy", ("Set up job", "Deploy")))
    since = datetime.now(UTC)
    async with client_for(github) as client:
        await client.dispatch_workflow(OWNER, REPO, "deploy.yml", "main", {"correlation_id": "j"})
        run = await client.find_run(OWNER, REPO, "deploy.yml", "j", since)
        assert run is not None
        assert [(j.name, j.status, j.conclusion) for j in run.jobs] == [
            ("build", "queued", None),
            ("deploy", "queued", None),
        ]
        for _ in range(3):  # both steps of build, then the first of deploy
            github.advance(run.id)
        run = await client.run(OWNER, REPO, run.id)
        assert [(j.name, j.status, j.conclusion) for j in run.jobs] == [
            ("build", "completed", "success"),
            ("deploy", "in_progress", None),
        ]
        assert (run.job, run.step) == ("deploy", "Set up job")
        for _ in range(2):
            github.advance(run.id)
        run = await client.run(OWNER, REPO, run.id)
    assert run.succeeded
    assert [(j.status, j.conclusion) for j in run.jobs] == [("completed", "success")] * 2
    ids = [j.id for j in run.jobs]
    assert len(set(ids)) == 2
    assert all(j.html_url.endswith(f"/actions/runs/{run.id}/job/{j.id}") for j in run.jobs)


async def test_a_run_is_cancelled_and_cancelling_a_completed_one_is_no_error(
    github: GitHubStandIn,
) -> None:
    flow = github.add_workflow(OWNER, REPO, "deploy.yml")
    flow.jobs = (("build", ("Set up job", "Build")), ("deploy", ("Set up job", "Deploy")))
    since = datetime.now(UTC)
    async with client_for(github) as client:
        await client.dispatch_workflow(OWNER, REPO, "deploy.yml", "main", {"correlation_id": "c"})
        run = await client.find_run(OWNER, REPO, "deploy.yml", "c", since)
        assert run is not None
        for _ in range(3):  # build done, deploy at its first step
            github.advance(run.id)
        await client.cancel_run(OWNER, REPO, run.id)
        run = await client.run(OWNER, REPO, run.id)
        assert (run.status, run.conclusion) == ("completed", "cancelled")
        assert [(j.name, j.conclusion) for j in run.jobs] == [
            ("build", "success"),
            ("deploy", "cancelled"),
        ]
        await client.cancel_run(OWNER, REPO, run.id)  # already completed: 409, no error
        with pytest.raises(GitHubError) as unknown:
            await client.cancel_run(OWNER, REPO, 999)
        assert unknown.value.status == 404
    cancels = github.requests("POST", f"/repos/{OWNER}/{REPO}/actions/runs/")
    assert [c.status for c in cancels] == [202, 409, 404]
    assert cancels[0].path.endswith(f"/actions/runs/{run.id}/cancel")


async def test_dispatch_errors_and_a_run_that_never_starts(github: GitHubStandIn) -> None:
    flow = github.add_workflow(OWNER, REPO, "deploy.yml")
    flow.starts = False
    since = datetime.now(UTC)
    async with client_for(github) as client:
        with pytest.raises(GitHubError) as unknown:
            await client.dispatch_workflow(OWNER, REPO, "nope.yml", "main", {})
        assert unknown.value.status == 404
        with pytest.raises(GitHubError) as bad_input:
            await client.dispatch_workflow(OWNER, REPO, "deploy.yml", "main", {"other": "x"})
        assert bad_input.value.status == 422
        with pytest.raises(GitHubError) as bad_ref:
            await client.dispatch_workflow(OWNER, REPO, "deploy.yml", "nope", {})
        assert bad_ref.value.status == 422
        await client.dispatch_workflow(OWNER, REPO, "deploy.yml", "main", {"correlation_id": "x"})
        assert await client.find_run(OWNER, REPO, "deploy.yml", "x", since) is None


async def finished_job(github: GitHubStandIn, client: GitHubClient, correlation_id: str) -> int:
    """Dispatches deploy.yml and runs it to its end: the id of its (one) job."""
    since = datetime.now(UTC)
    await client.dispatch_workflow(
        OWNER, REPO, "deploy.yml", "main", {"correlation_id": correlation_id}
    )
    run = await client.find_run(OWNER, REPO, "deploy.yml", correlation_id, since)
    assert run is not None
    for _ in range(3):
        github.advance(run.id)
    run = await client.run(OWNER, REPO, run.id)
    assert run.finished
    [job] = run.jobs
    return job.id


async def test_a_job_log_tail_is_its_last_lines_without_timestamps(github: GitHubStandIn) -> None:
    flow = github.add_workflow(OWNER, REPO, "deploy.yml")
    flow.log = (
        "##[group]Run ./deploy.sh",
        *(f"step {n}" for n in range(1, 30)),
        "",
        "   ",
        "\x1b[36;1mcoloured\x1b[0m",
        "x" * 1000,
        "Error: the deploy failed",
        "",
    )
    since = datetime.now(UTC)
    async with client_for(github) as client:
        await client.dispatch_workflow(OWNER, REPO, "deploy.yml", "main", {"correlation_id": "l"})
        run = await client.find_run(OWNER, REPO, "deploy.yml", "l", since)
        assert run is not None
        github.advance(run.id)
        # GitHub has no log of a job still running to give.
        running = await client.run(OWNER, REPO, run.id)
        assert await client.job_log_tail(OWNER, REPO, running.jobs[0].id) == ""
        for _ in range(2):
            github.advance(run.id)
        job_id = (await client.run(OWNER, REPO, run.id)).jobs[0].id
        tail = await client.job_log_tail(OWNER, REPO, job_id, lines=5)
        default = await client.job_log_tail(OWNER, REPO, job_id)
    assert tail.split("\n") == [
        "step 28",
        "step 29",
        "coloured",
        "x" * 300,
        "Error: the deploy failed",
    ]
    assert len(default.split("\n")) == 20 and default.endswith(tail)
    assert "Z " not in default and "\ufeff" not in default

    # The API's answer is a redirect to another origin; the download carried no token.
    asked = github.requests("GET", f"/repos/{OWNER}/{REPO}/actions/jobs/{job_id}/logs")
    assert [c.status for c in asked] == [404, 302, 302]
    assert all(c.headers["Authorization"] == f"token {github.token}" for c in asked)
    assert [c.status for c in github.downloads] == [200, 200]
    for download in github.downloads:
        assert "authorization" not in {k.lower() for k in download.headers}
        assert download.headers["Host"] == github.download_url.removeprefix("http://")
    assert github.download_url != github.base_url


async def test_a_job_log_that_is_gone_is_empty_and_no_secret_comes_back(
    github: GitHubStandIn,
) -> None:
    flow = github.add_workflow(OWNER, REPO, "deploy.yml")
    flow.log = ("using token " + github.token, "done")
    async with client_for(github) as client:
        job_id = await finished_job(github, client, "g")
        assert await client.job_log_tail(OWNER, REPO, job_id) == "using token ***\ndone"
        flow.logs_gone = True
        assert await client.job_log_tail(OWNER, REPO, job_id) == ""
        assert await client.job_log_tail(OWNER, REPO, 424242) == ""  # no such job: 404
    asked = github.requests("GET", f"/repos/{OWNER}/{REPO}/actions/jobs/")
    assert [c.status for c in asked] == [302, 410, 404]


async def test_a_workflow_is_read_by_file_or_id_and_a_disabled_one_is_not_dispatched(
    github: GitHubStandIn,
) -> None:
    flow = github.add_workflow(OWNER, REPO, "deploy.yml", name="Deploy")
    async with client_for(github) as client:
        info = await client.workflow(OWNER, REPO, "deploy.yml")
        assert info == WorkflowInfo(
            id=flow.id, name="Deploy", path=".github/workflows/deploy.yml", state="active"
        )
        assert await client.workflow(OWNER, REPO, str(flow.id)) == info
        with pytest.raises(GitHubError) as unknown:
            await client.workflow(OWNER, REPO, "nope.yml")
        assert unknown.value.status == 404

        flow.state = "disabled_manually"
        assert (await client.workflow(OWNER, REPO, "deploy.yml")).state == "disabled_manually"
        with pytest.raises(GitHubError) as refused:
            await client.dispatch_workflow(OWNER, REPO, "deploy.yml", "main", {})
        assert refused.value.status == 422 and "disabled" in refused.value.message
    assert github.run_ids() == []


async def test_a_workflow_file_is_read_as_text_and_a_missing_one_is_none(
    github: GitHubStandIn,
) -> None:
    github.add_workflow(
        OWNER, REPO, "deploy.yml", inputs=("correlation_id", "version"), name="Deploy"
    )
    github.set_ref(OWNER, REPO, "v1.2.0", SHA)
    path = ".github/workflows/deploy.yml"
    async with client_for(github) as client:
        text = await client.file_text(OWNER, REPO, path)
        assert text is not None
        assert 'run-name: "Deploy ${{ inputs.correlation_id }} ${{ inputs.version }}"' in text
        assert "  workflow_dispatch:\n    inputs:\n      correlation_id:\n" in text
        assert "      version:\n" in text
        assert await client.file_text(OWNER, REPO, path, ref="v1.2.0") == text
        assert await client.file_text(OWNER, REPO, path, ref="no-such-branch") is None
        assert await client.file_text(OWNER, REPO, ".github/workflows/other.yml") is None
        assert await client.file_text(OWNER, REPO, "README.md") is None
    reads = github.requests("GET", f"/repos/{OWNER}/{REPO}/contents/")
    assert [c.query.get("ref") for c in reads[:3]] == [None, "v1.2.0", "no-such-branch"]
    assert [c.status for c in reads] == [200, 200, 404, 404, 404]


async def test_the_stand_in_sends_contents_as_github_does(github: GitHubStandIn) -> None:
    """Base64 in lines of 60 characters, and the blob's git sha."""
    github.add_workflow(OWNER, REPO, "deploy.yml", inputs=("correlation_id", "a", "b", "c"))
    url = f"{github.base_url}/repos/{OWNER}/{REPO}/contents/.github/workflows/deploy.yml"
    headers = {"Authorization": f"token {github.token}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as answer:
        assert answer.status == 200
        found = await answer.json()
    assert (found["type"], found["encoding"]) == ("file", "base64")
    lines = found["content"].split("\n")
    assert lines[-1] == "" and len(lines) > 3
    assert all(len(line) == 60 for line in lines[:-2]) and 0 < len(lines[-2]) <= 60
    data = base64.b64decode(found["content"])
    assert found["size"] == len(data)
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
    assert found["sha"] == blob


async def test_deployments_and_their_statuses(github: GitHubStandIn) -> None:
    github.set_ref(OWNER, REPO, "v1.2.0", SHA)
    async with client_for(github) as client:
        deployment = await client.create_deployment(
            OWNER, REPO, "v1.2.0", "staging", description="1.2.0 to staging"
        )
        assert (deployment.sha, deployment.environment) == (SHA, "staging")
        await client.create_deployment_status(OWNER, REPO, deployment.id, "in_progress")
        await client.create_deployment_status(
            OWNER, REPO, deployment.id, "success", log_url="https://ci/log/1"
        )
        statuses = await client.deployment_statuses(OWNER, REPO, deployment.id)
        assert [s.state for s in statuses] == ["success", "in_progress"]
        assert statuses[0].log_url == "https://ci/log/1"
        listed = await client.deployments(OWNER, REPO, environment="staging")
        assert [d.id for d in listed] == [deployment.id]
    posted = github.requests("POST", f"/repos/{OWNER}/{REPO}/deployments")[0]
    assert posted.json["required_contexts"] == [] and posted.json["auto_merge"] is False


async def test_an_executor_reports_a_deployments_statuses_as_it_advances(
    github: GitHubStandIn,
) -> None:
    github.add_deployment_executor(
        OWNER, REPO, "production", log_url="https://ci.example/deploys/{deployment_id}"
    )
    github.add_deployment_executor(OWNER, REPO, outcome="failure", creator="heaven")
    github.set_ref(OWNER, REPO, "v1.2.0", SHA)
    async with client_for(github) as client:
        production = await client.create_deployment(OWNER, REPO, "v1.2.0", "production")
        staging = await client.create_deployment(OWNER, REPO, "v1.2.0", "staging")

        async def states(deployment_id: int) -> list[str]:
            found = await client.deployment_statuses(OWNER, REPO, deployment_id)
            return [s.state for s in found]

        assert await states(production.id) == []
        github.add_workflow(OWNER, REPO, "build.yml")
        await client.dispatch_workflow(OWNER, REPO, "build.yml", "main", {})
        [run_id] = github.run_ids()
        github.advance(run_id)  # one run moved on, and nothing else
        assert (await client.run(OWNER, REPO, run_id)).status == "in_progress"
        assert await states(production.id) == []
        github.advance()
        assert await states(production.id) == ["queued"]
        github.advance()
        assert await states(production.id) == ["in_progress", "queued"]
        github.advance()
        statuses = await client.deployment_statuses(OWNER, REPO, production.id)
        assert [s.state for s in statuses] == ["success", "in_progress", "queued"]
        assert {s.log_url for s in statuses} == {f"https://ci.example/deploys/{production.id}"}
        assert await states(staging.id) == ["failure", "in_progress", "queued"]
        github.advance()  # nothing more to report
        assert await states(production.id) == ["success", "in_progress", "queued"]
    reported = github.repo(OWNER, REPO).deployment_statuses
    assert {s["creator"]["login"] for s in reported[production.id]} == {"github-actions[bot]"}
    assert {s["creator"]["login"] for s in reported[staging.id]} == {"heaven"}


async def test_an_executor_that_never_starts_and_one_on_the_clock() -> None:
    now = [0.0]
    async with GitHubStandIn(clock=lambda: now[0]) as github:
        github.add_deployment_executor(OWNER, REPO, "staging", starts=False)
        github.add_deployment_executor(OWNER, REPO, "production", outcome="error")
        github.seconds_per_stage = 10.0
        async with client_for(github) as client:
            silent = await client.create_deployment(OWNER, REPO, "main", "staging")
            deployment = await client.create_deployment(OWNER, REPO, "main", "production")
            assert await client.deployment_statuses(OWNER, REPO, deployment.id) == []
            now[0] = 15.0
            found = await client.deployment_statuses(OWNER, REPO, deployment.id)
            assert [s.state for s in found] == ["queued"]
            now[0] = 100.0
            found = await client.deployment_statuses(OWNER, REPO, deployment.id)
            assert [s.state for s in found] == ["error", "in_progress", "queued"]
            github.advance()
            assert await client.deployment_statuses(OWNER, REPO, silent.id) == []
        with pytest.raises(ValueError, match="success, failure or error"):
            github.add_deployment_executor(OWNER, REPO, outcome="inactive")


async def test_a_secondary_limit_is_waited_out_for_its_retry_after(github: GitHubStandIn) -> None:
    github.fail_next(f"/repos/{OWNER}/{REPO}/commits", status=403, retry_after=1, times=1)
    async with client_for(github) as client:
        started = time.monotonic()
        assert await client.commit_checks(OWNER, REPO, SHA) == []
        waited = time.monotonic() - started
    assert 1.0 <= waited < 3.0
    first, second = github.requests("GET", f"/repos/{OWNER}/{REPO}/commits")[:2]
    assert (first.status, second.status) == (403, 200)
    assert second.at - first.at >= 1.0


async def test_a_secondary_limit_past_the_wait_allowed_is_unavailable(
    github: GitHubStandIn,
) -> None:
    github.fail_next(f"/repos/{OWNER}/{REPO}", status=429, retry_after=120)
    async with client_for(github, max_wait=5) as client:
        with pytest.raises(GitHubUnavailable, match="secondary rate limit"):
            await client.commit_checks(OWNER, REPO, SHA)


async def test_server_errors_are_retried_then_unavailable(github: GitHubStandIn) -> None:
    github.fail_next(f"/repos/{OWNER}/{REPO}", status=502, times=2)
    async with client_for(github, backoff=0.05) as client:
        assert await client.commit_checks(OWNER, REPO, SHA) == []
        github.fail_next(f"/repos/{OWNER}/{REPO}", status=500, times=10)
        with pytest.raises(GitHubUnavailable, match="500"):
            await client.commit_checks(OWNER, REPO, SHA)


async def test_a_spent_primary_limit_is_waited_for_until_its_reset(github: GitHubStandIn) -> None:
    async with client_for(github) as client:
        github.exhaust_rate_limit(reset_in=1)
        started = time.monotonic()
        await client.commit_checks(OWNER, REPO, SHA)
        assert time.monotonic() - started >= 0.5
        refused = github.requests("GET")[0]
        assert refused.status == 403
        github.exhaust_rate_limit(reset_in=3600)
        with pytest.raises(GitHubUnavailable, match="rate limit is spent"):
            await client.commit_checks(OWNER, REPO, SHA)


async def test_repeated_polls_are_conditional_and_304s_cost_nothing(github: GitHubStandIn) -> None:
    github.add_check_run(OWNER, REPO, SHA, "build", status="in_progress")
    async with client_for(github) as client:
        first = await client.commit_checks(OWNER, REPO, SHA)
        budget = github.rate_limit_remaining
        again = await client.commit_checks(OWNER, REPO, SHA)
        assert again == first
        assert github.rate_limit_remaining == budget
        assert [c.status for c in github.calls[-2:]] == [304, 304]
        assert all("if-none-match" in {k.lower() for k in c.headers} for c in github.calls[-2:])
        github.add_check_run(OWNER, REPO, SHA, "build")  # the same name, now finished
        latest = await client.commit_checks(OWNER, REPO, SHA)
        assert [c.state for c in latest] == ["success"]


async def test_a_tokens_access_is_its_repository_permission_and_its_scopes(
    github: GitHubStandIn,
) -> None:
    async with client_for(github) as client:
        access = await client.access(OWNER, REPO)
        assert (access.kind, dict(access.permissions), access.scopes) == (
            "token",
            {"contents": "write"},
            ("repo",),
        )
        github.token_scopes = ("repo", "workflow")
        github.token_permissions = {"admin": False, "push": False, "pull": True}
        access = await client.access(OWNER, REPO)
        assert (dict(access.permissions), access.scopes) == (
            {"contents": "read"},
            ("repo", "workflow"),
        )
        github.token_scopes = None  # a fine-grained token: GitHub sends no scopes
        assert (await client.access(OWNER, REPO)).scopes is None
        github.token_scopes = ()  # a classic token without any scope
        assert (await client.access(OWNER, REPO)).scopes == ()
        with pytest.raises(GitHubError) as unknown:
            await client.access(OWNER, "nope")
        assert unknown.value.status == 404
    asked = github.requests("GET", f"/repos/{OWNER}/{REPO}")
    assert {c.path for c in asked} == {f"/repos/{OWNER}/{REPO}"}


async def test_a_github_app_fetches_and_renews_its_installation_token() -> None:
    private, public = key_pair()
    # A token issued for 301 s is due for renewal 1 s later (the margin is 300 s).
    async with GitHubStandIn(
        app_id=4242, app_public_key=public, installation_token_ttl=301
    ) as github:
        github.repo(OWNER, REPO)
        config = GitHubConfig(api_url=github.base_url, app_id="4242", app_private_key=private)
        async with GitHubClient(config) as client:
            await client.commit_checks(OWNER, REPO, SHA)
            await client.commit_checks(OWNER, REPO, SHA)
            assert len(github.issued_tokens) == 1
            time.sleep(1.1)  # the token's expiry is wall-clock time, as GitHub states it
            await client.commit_checks(OWNER, REPO, SHA)
            assert len(github.issued_tokens) == 2
        [lookup] = github.requests("GET", f"/repos/{OWNER}/{REPO}/installation")
        app_jwt = lookup.headers["Authorization"].split(" ", 1)[1]
        assert jwt.get_unverified_header(app_jwt)["alg"] == "RS256"
        assert jwt.decode(app_jwt, public, algorithms=["RS256"])["iss"] == "4242"
        reads = github.requests("GET", f"/repos/{OWNER}/{REPO}/commits")
        assert {c.headers["Authorization"].split()[1] for c in reads} == set(github.issued_tokens)

        # A JWT signed with another key is refused, as GitHub would.
        other, _ = key_pair()
        wrong = GitHubConfig(api_url=github.base_url, app_id="4242", app_private_key=other)
        async with GitHubClient(wrong) as client:
            with pytest.raises(GitHubError) as refused:
                await client.commit_checks(OWNER, REPO, SHA)
            assert refused.value.status in (401, 404)


async def test_an_installation_token_refused_early_is_renewed_once() -> None:
    private, public = key_pair()
    async with GitHubStandIn(app_id=4242, app_public_key=public) as github:
        github.repo(OWNER, REPO)
        config = GitHubConfig(api_url=github.base_url, app_id="4242", app_private_key=private)
        checks = f"/repos/{OWNER}/{REPO}/commits/{SHA}/status"
        async with GitHubClient(config) as client:
            await client.commit_checks(OWNER, REPO, SHA)
            # GitHub revokes the token an hour before the expiry it stated.
            github.expire_installation_tokens()
            assert await client.commit_checks(OWNER, REPO, SHA) == []
            assert len(github.issued_tokens) == 2
            # The retry is conditional, as every repeated GET is: nothing new, a 304.
            assert [c.status for c in github.requests("GET", checks)] == [200, 401, 304]
            first, refused, retried = github.requests("GET", checks)
            assert refused.headers["Authorization"] == first.headers["Authorization"]
            assert retried.headers["Authorization"] == f"token {github.issued_tokens[1]}"

            # Refused again with the new token: that is GitHub's answer, given once.
            github.expire_installation_tokens()
            github.installation_token_ttl = 0  # every token it issues is refused
            with pytest.raises(GitHubError) as refused_twice:
                await client.commit_checks(OWNER, REPO, SHA)
            assert refused_twice.value.status == 401
            assert len(github.issued_tokens) == 3
            assert [c.status for c in github.requests("GET", checks)][3:] == [401, 401]
            assert github.issued_tokens[2] not in str(refused_twice.value)


async def test_a_refused_personal_token_is_not_retried(github: GitHubStandIn) -> None:
    config = GitHubConfig(api_url=github.base_url, token="ghp_" + "x" * 36)
    async with GitHubClient(config) as client:
        with pytest.raises(GitHubError) as refused:
            await client.workflow(OWNER, REPO, "deploy.yml")
    assert refused.value.status == 401
    assert [c.status for c in github.calls] == [401]


async def test_an_apps_access_is_its_installations_permissions() -> None:
    private, public = key_pair()
    async with GitHubStandIn(app_id=4242, app_public_key=public) as github:
        github.repo(OWNER, REPO)
        config = GitHubConfig(api_url=github.base_url, app_id="4242", app_private_key=private)
        async with GitHubClient(config) as client:
            access = await client.access(OWNER, REPO)
            assert (access.kind, access.scopes) == ("app", None)
            assert dict(access.permissions) == {
                "actions": "write",
                "checks": "read",
                "statuses": "read",
                "deployments": "write",
                "contents": "read",
                "metadata": "read",
            }
            github.installation_permissions["actions"] = "read"  # the owner took write away
            assert (await client.access(OWNER, REPO)).permissions["actions"] == "read"
            # The installation found is the one its tokens are then asked for.
            await client.commit_checks(OWNER, REPO, SHA)
        lookups = github.requests("GET", f"/repos/{OWNER}/{REPO}/installation")
        assert len(lookups) == 2
        assert all(c.headers["Authorization"].startswith("bearer ") for c in lookups)
        assert len(github.issued_tokens) == 1


async def test_the_token_is_in_no_log_line_or_error(
    github: GitHubStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "ghp_" + "s3cr3t" * 6
    github.fail_next("/repos", status=500, times=100)
    config = GitHubConfig(api_url=github.base_url, token=secret, backoff=0.01)
    assert secret not in repr(config)
    async with GitHubClient(config) as client:
        with pytest.raises(GitHubError) as refused:  # a token GitHub does not know: 401
            await client.commit_checks(OWNER, REPO, SHA)
        assert refused.value.status == 401
        errors: list[BaseException] = [refused.value]
    async with client_for(github, backoff=0.01) as client:
        with pytest.raises(GitHubUnavailable) as down:
            await client.commit_checks(OWNER, REPO, SHA)
        errors.append(down.value)
    assert "Authorization" in github.calls[0].headers  # it was sent, to GitHub only
    for text in [caplog.text, *(str(e) for e in errors), *(repr(e) for e in errors)]:
        assert secret not in text and github.token not in text
    assert "retrying" in caplog.text


async def test_runs_can_advance_on_a_clock_the_test_owns() -> None:
    now = [0.0]
    async with GitHubStandIn(clock=lambda: now[0]) as github:
        github.add_workflow(OWNER, REPO, "deploy.yml")
        github.seconds_per_stage = 10.0
        since = datetime.now(UTC)
        async with client_for(github) as client:
            await client.dispatch_workflow(
                OWNER, REPO, "deploy.yml", "main", {"correlation_id": "c1"}
            )
            run = await client.find_run(OWNER, REPO, "deploy.yml", "c1", since)
            assert run is not None and run.status == "queued"
            now[0] = 15.0
            assert (await client.run(OWNER, REPO, run.id)).step == "Set up job"
            now[0] = 100.0
            assert (await client.run(OWNER, REPO, run.id)).succeeded


async def test_a_dispatch_whose_answer_is_lost_is_never_sent_twice(github: GitHubStandIn) -> None:
    """A second dispatch would be a second deploy: a 5xx on one is reported, not retried,
    while a read is retried."""
    github.add_workflow(OWNER, REPO, "deploy.yml")
    path = f"/repos/{OWNER}/{REPO}/actions/workflows/deploy.yml/dispatches"
    github.fail_next(path, status=502)
    async with client_for(github, backoff=0.01) as client:
        with pytest.raises(GitHubUnavailable, match="not sent again"):
            await client.dispatch_workflow(OWNER, REPO, "deploy.yml", "main", {})
        assert len(github.requests("POST", path)) == 1
        github.fail_next(f"/repos/{OWNER}/{REPO}/deployments", status=503)
        with pytest.raises(GitHubUnavailable, match="not sent again"):
            await client.create_deployment(OWNER, REPO, "main", "staging")
        assert len(github.requests("POST", f"/repos/{OWNER}/{REPO}/deployments")) == 1
        # A secondary rate limit was refused by GitHub, so the dispatch is sent again.
        github.fail_next(path, status=429, retry_after=0)
        await client.dispatch_workflow(OWNER, REPO, "deploy.yml", "main", {})
        assert len(github.requests("POST", path)) == 3
