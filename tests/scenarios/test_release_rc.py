"""/release rc end to end: signed HTTP into the real bot, real Redis, real git, real deploys."""

from __future__ import annotations

import asyncio
import copy
import time
from functools import partial
from pathlib import Path

from slack_sdk.models.blocks import Block

from bot.domain import releases
from bot.domain.actors import Actor
from bot.services import deploy_release
from tests.helpers.config import deploy_log, make_config
from tests.helpers.messages import (
    release_message,
    thread_text,
    wait_for_failed_deploy,
    wait_for_gates,
)
from tests.helpers.processes import running
from tests.helpers.repos import git
from tests.helpers.signing import sign

ALICE = Actor(user_id="U0ALICE", user_name="alice", channel="C0DEV")


async def test_rc_tags_deploys_runs_gates_and_keeps_one_message(
    start_bot, git_remote, tmp_path: Path
):
    head = git_remote.head()
    bot = await start_bot(make_config(git_remote, tmp_path))
    started = time.monotonic()
    ack = await bot.command('rc --description "Infrastructure changes" --issue pw-bua')
    assert time.monotonic() - started < 3
    assert ack["response_type"] == "ephemeral"
    Block.parse_all(ack["blocks"])

    message = await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    # The tag is on the head of the release branch, annotated with who and why.
    assert git_remote.remote_tags()["v0.15.0-rc.1"] == head
    annotation = git_remote.tag_message("v0.15.0-rc.1")
    assert "alice (U0ALICE)" in annotation
    assert "Infrastructure changes" in annotation and "pw-bua" in annotation

    # The deploy ran from a worktree at the tag, with the release in its environment.
    assert deploy_log(tmp_path) == [
        f"staging 0.15.0-rc.1 v0.15.0-rc.1 {head} infrastructure changes"
    ]

    text = bot.slack.text_of(message)
    for fact in (
        "v0.15.0-rc.1",
        "<@U0ALICE>",
        head[:10],
        "pw-bua",
        "Infrastructure changes",
        "Automated tests",
        "Infrastructure validation",
        "Manual QA",
    ):
        assert fact in text, fact
    assert "deploy succeeded" in text
    assert "Manual QA — waiting for approval" in text
    assert "Approve Manual QA" in text  # its buttons
    assert "*Before production:* Manual QA needs an approval" in text
    assert "needs 1 more approval from any approver" in text
    assert message.channel == "CRELEASES"
    # One release message, updated in place; everything else is in its thread.
    top_level = [m for m in bot.slack.messages().values() if m.thread_ts is None]
    assert len(top_level) == 1
    assert message.updates >= 1
    thread = thread_text(bot.slack, message)
    assert "Deployed v0.15.0-rc.1 to *staging*" in thread
    assert "Automated tests passed" in thread

    # Updates are coalesced: far fewer chat.update calls than state changes.
    changes = [e for e in await bot.services.store.audit_entries("0.15.0-rc.1")]
    assert len(bot.slack.calls_to("chat.update")) < len(changes)

    # The requester heard back privately.
    answers = [c for c in bot.slack.calls_to("response_url") if "Created" in str(c.params)]
    assert answers

    # State is in Redis: the release, its gates, the version on staging, the audit trail.
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release is not None
    assert [g.status for g in release.gates] == ["passed", "passed", "pending"]
    assert release.deploys["staging"].status == "succeeded"
    versions = await bot.services.store.environment_versions(["staging"])
    assert versions["staging"]["version"] == "0.15.0-rc.1"
    actions = [e["action"] for e in changes]
    for action in (
        "release.create",
        "release.tag",
        "deploy.queue",
        "deploy.start",
        "deploy.finish",
        "gate.start",
        "gate.finish",
    ):
        assert action in actions
    assert all(e["at"] and e["user_id"] for e in changes)


async def test_second_rc_continues_numbering_and_state_survives_a_restart(
    start_bot, git_remote, tmp_path: Path
):
    config = make_config(git_remote, tmp_path)
    bot = await start_bot(config, name="first")
    await bot.command("rc")
    await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    await bot.bot.stop()

    # A new process (fresh clone, same Redis) knows what the first one did.
    bot2 = await start_bot(config, name="second")
    status = await bot2.command("status")
    text = bot2.slack.text_of(status)
    assert "v0.15.0-rc.1" in text and "staging" in text
    git_remote.commit("more changes")
    git_remote.push()
    await bot2.command("rc --description second")
    await wait_for_gates(bot2.slack, "v0.15.0-rc.2")
    assert "v0.15.0-rc.2" in git_remote.remote_tags()
    assert git_remote.remote_tags()["v0.15.0-rc.2"] == git_remote.head()


async def test_dry_run_changes_nothing(start_bot, git_remote, tmp_path: Path):
    bot = await start_bot(make_config(git_remote, tmp_path))
    tags_before = git_remote.remote_tags()
    await bot.command("rc --dry-run --bump major")
    answer = await bot.slack.wait_for(
        lambda: [c for c in bot.slack.calls_to("response_url") if "Dry run" in str(c.params)]
    )
    assert "v1.0.0-rc.1" in bot.slack.text_of(answer[0].params)
    await asyncio.sleep(0.5)
    assert git_remote.remote_tags() == tags_before
    assert bot.slack.calls_to("chat.postMessage") == []
    assert await bot.services.store.releases_in_flight() == []
    assert deploy_log(tmp_path) == []


async def test_failed_deploy_reports_the_tail_and_skips_gates(
    start_bot, git_remote, tmp_path: Path
):
    config = make_config(git_remote, tmp_path, deploy_env="DEPLOY_FAIL=disk-full")
    bot = await start_bot(config)
    await bot.command("rc")
    message = await wait_for_failed_deploy(bot.slack, "v0.15.0-rc.1")
    thread = await bot.slack.wait_for(
        lambda: (
            "error: disk-full" in thread_text(bot.slack, message)
            and thread_text(bot.slack, message)
        )
    )
    assert "exited with code 3" in thread
    assert "step 39 of the build" in thread  # the tail of the output
    assert "step 0 of the build" not in thread  # only the tail
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert [g.status for g in release.gates] == ["pending", "pending", "pending"]
    versions = await bot.services.store.environment_versions(["staging"])
    assert versions["staging"] == {}


async def test_failed_gate_is_ticked_failed_with_its_output(start_bot, git_remote, tmp_path: Path):
    bot = await start_bot(make_config(git_remote, tmp_path, gate_env="GATE_FAIL=infra"))
    await bot.command("rc")
    message = await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    text = bot.slack.text_of(message)
    assert "✅ Automated tests — passed in" in text
    assert "❌ Infrastructure validation — failed in" in text
    # The thread's replies go out paced (the outbox): the output may follow the redraw.
    await bot.slack.wait_for(
        lambda: "infra: 2 checks failed" in thread_text(bot.slack, message), timeout=10
    )


async def test_deploy_timeout_kills_the_process_group(start_bot, git_remote, tmp_path: Path):
    config = make_config(git_remote, tmp_path, deploy_env="DEPLOY_SLEEP=60")
    config = config.__class__(
        **{
            **config.__dict__,
            "environments": tuple(
                e.__class__(**{**e.__dict__, "timeout_seconds": 1.5}) for e in config.environments
            ),
        }
    )
    bot = await start_bot(config)
    await bot.command("rc")
    message = await wait_for_failed_deploy(bot.slack, "v0.15.0-rc.1")
    assert "timed out" in thread_text(bot.slack, message)
    # The sleeping script and its children are gone.
    pid = int((tmp_path / "deploys.log.pid").read_text())
    await asyncio.sleep(0.2)
    assert not running(pid)


async def test_rate_limited_slack_calls_are_retried_after_retry_after(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(make_config(git_remote, tmp_path))
    bot.slack.fail_next("chat.postMessage", status=429, retry_after=1)
    await bot.command("rc")
    message = await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    posts = bot.slack.calls_to("chat.postMessage")
    assert posts[0].status == 429
    assert posts[1].at - posts[0].at >= 0.9
    assert message is not None


async def test_bad_signature_and_old_timestamp_get_401_and_change_nothing(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(make_config(git_remote, tmp_path))
    body = bot.command_body("rc")
    forged = sign(body, secret="not-the-secret")
    status, _ = await bot.post(body, forged)
    assert status == 401
    stale = sign(body, timestamp=int(time.time()) - 301)
    status, _ = await bot.post(body, stale)
    assert status == 401
    tampered = sign(body)
    status, _ = await bot.post(body.replace("rc", "rc+--bump+major", 1), tampered)
    assert status == 401
    await asyncio.sleep(1)
    assert git_remote.remote_tags().keys() == {
        "v0.8.1-bug-fixes",
        "v0.13.3-final",
        "bd-12",
        "20240315-1200",
        "v0.14.0-rc.1",
        "v0.14.0",
        "v0.14.1",
    }
    assert bot.slack.calls_to("chat.postMessage") == []
    assert await bot.services.store.audit_entries() == []


async def test_a_redelivered_command_creates_one_release(start_bot, git_remote, tmp_path: Path):
    bot = await start_bot(make_config(git_remote, tmp_path))
    body = bot.command_body("rc --description once")
    status, _ = await bot.post(body, sign(body))
    assert status == 200
    retry_headers = {**sign(body), "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    status, _ = await bot.post(body, retry_headers)
    assert status == 200
    await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    await asyncio.sleep(1.5)
    tags = git_remote.remote_tags()
    assert "v0.15.0-rc.1" in tags and "v0.15.0-rc.2" not in tags
    assert len(await bot.services.store.releases_in_flight()) == 1
    top_level = [m for m in bot.slack.messages().values() if m.thread_ts is None]
    assert len(top_level) == 1


async def test_deploy_steps_are_audited_with_the_requester_and_channel(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(make_config(git_remote, tmp_path))
    await bot.command("rc", user="U0CAROL", user_name="carol")
    await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    entries = await bot.services.store.audit_entries("0.15.0-rc.1")
    deploy_steps = [e for e in entries if e["action"].startswith(("deploy.", "gate."))]
    assert deploy_steps
    assert {(e["user_id"], e["user_name"], e["channel"]) for e in deploy_steps} == {
        ("U0CAROL", "carol", "C0DEV")
    }
    assert all(float(e["at"]) > 0 for e in entries)


async def test_a_moved_tag_is_not_deployed(start_bot, git_remote, tmp_path: Path):
    bot = await start_bot(make_config(git_remote, tmp_path))
    await bot.command("rc")
    await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    release = await bot.services.store.get_release("0.15.0-rc.1")
    # Someone force-moves the tag to another commit on the remote.
    other = git_remote.commit("sneaky")
    git("tag", "-f", "v0.15.0-rc.1", other, cwd=git_remote.work)
    git("push", "-q", "-f", "origin", "v0.15.0-rc.1", cwd=git_remote.work)
    from bot.domain.actors import BOT
    from bot.services import deploy_release

    await deploy_release.enqueue_deploy(bot.services, release, "staging", BOT)
    message = release_message(bot.slack, "v0.15.0-rc.1")
    thread = await bot.slack.wait_for(
        lambda: (
            "someone moved it" in thread_text(bot.slack, message)
            and thread_text(bot.slack, message)
        ),
        timeout=20,
    )
    assert "Nothing was run" in thread
    assert len(deploy_log(tmp_path)) == 1


async def test_dry_runs_take_no_lock_and_all_get_their_answer(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(make_config(git_remote, tmp_path))
    users = [f"U0DRY{n:02d}" for n in range(12)]

    def answered() -> dict[str, str]:
        texts: dict[str, str] = {}
        for call in bot.slack.calls_to("response_url"):
            text = bot.slack.text_of(call.params)
            user = str(call.params["_id"]).rsplit("-", 1)[0]  # the stand-in names it after them
            if user in users:
                texts[user] = text
        return texts

    # A candidate being created holds the repository; dry runs read it regardless, at once.
    async with bot.services.locks.repository("U0ALICE", "creating a release candidate"):
        await asyncio.gather(*(bot.command("rc --dry-run", user=user) for user in users))
        texts = await bot.slack.wait_for(lambda: len(answered()) == len(users) and answered())
    assert all("Dry run" in text and "v0.15.0-rc.1" in text for text in texts.values()), texts
    assert not any("creating a release candidate right now" in t for t in texts.values())
    assert git_remote.remote_tags().get("v0.15.0-rc.1") is None
    dry = [e for e in await bot.services.store.audit_entries() if e["action"] == "rc.dry-run"]
    assert sorted(e["user_id"] for e in dry) == users


async def test_a_failed_deploy_is_retried_from_its_button_then_its_gates_run(
    start_bot, git_remote, tmp_path: Path
):
    failing = tmp_path / "staging-fails"
    failing.write_text("disk-full")
    config = make_config(
        git_remote, tmp_path, deploy_env=f"DEPLOY_FAIL=$(cat {failing} 2>/dev/null)"
    )
    bot = await start_bot(config)
    await bot.command("rc", user="U0ALICE", user_name="alice")
    failed = await bot.slack.wait_for(
        lambda: (
            (m := release_message(bot.slack, "v0.15.0-rc.1")) is not None
            and "Retry deploy to staging" in bot.slack.text_of(m)
            and m
        ),
        timeout=20,
    )
    assert "staging* — deploy failed" in bot.slack.text_of(failed)
    stale = copy.deepcopy(failed)  # as a client that did not refresh still shows it
    failing.unlink()  # the disk was cleaned up
    await bot.click(failed, "deploy_retry", user="U0CAROL", user_name="carol")
    message = await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    text = bot.slack.text_of(message)
    assert "staging* — deploy succeeded" in text and "Retry deploy" not in text
    assert "Automated tests — passed" in text
    thread = thread_text(bot.slack, message)
    assert "<@U0CAROL> retried the deploy of `v0.15.0-rc.1` to *staging*" in thread
    retried = [
        (e["user_id"], e["outcome"])
        for e in await bot.services.store.audit_entries("0.15.0-rc.1")
        if e["action"] == "deploy.retry"
    ]
    assert retried == [("U0CAROL", "ok")]
    # Clicked again where the old message still shows it: nothing to retry, said and audited.
    await bot.click(stale, "deploy_retry", user="U0CAROL", user_name="carol")
    said = await bot.slack.wait_for(
        lambda: [
            bot.slack.text_of(c.params)
            for c in bot.slack.calls_to("response_url")
            if "I did not retry" in bot.slack.text_of(c.params)
        ]
    )
    assert "is succeeded: there is nothing to retry" in said[0]


async def test_a_failed_gate_is_re_run_from_its_button_against_what_runs(
    start_bot, git_remote, tmp_path: Path
):
    flaky = tmp_path / "infra-fails"
    flaky.write_text("infra")
    config = make_config(git_remote, tmp_path, gate_env=f"GATE_FAIL=$(cat {flaky} 2>/dev/null)")
    bot = await start_bot(config)
    await bot.command("rc", user="U0ALICE", user_name="alice")
    failed = await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    text = bot.slack.text_of(failed)
    assert "Infrastructure validation — failed" in text and "Re-run Infrastructure" in text
    assert "Re-run Automated tests" not in text  # it passed
    stale = copy.deepcopy(failed)
    deploys_before = len(deploy_log(tmp_path))
    flaky.unlink()  # the flake is gone
    await bot.click(failed, "gate_rerun", user="U0CAROL", user_name="carol", gate="infra")
    message = await bot.slack.wait_for(
        lambda: (
            (m := release_message(bot.slack, "v0.15.0-rc.1")) is not None
            and "Infrastructure validation — passed" in bot.slack.text_of(m)
            and m
        ),
        timeout=20,
    )
    text = bot.slack.text_of(message)
    assert "Re-run" not in text and "Automated tests — passed" in text
    assert len(deploy_log(tmp_path)) == deploys_before  # the gate ran; nothing was deployed
    thread = thread_text(bot.slack, message)
    assert "<@U0CAROL> re-runs *Infrastructure validation* in *staging*" in thread
    await bot.click(stale, "gate_rerun", user="U0CAROL", user_name="carol", gate="infra")
    said = await bot.slack.wait_for(
        lambda: [
            bot.slack.text_of(c.params)
            for c in bot.slack.calls_to("response_url")
            if "I did not re-run it" in bot.slack.text_of(c.params)
        ]
    )
    assert "is passed: there is nothing to re-run" in said[0]
    reruns = [
        (e["user_id"], e["outcome"])
        for e in await bot.services.store.audit_entries("0.15.0-rc.1")
        if e["action"] == "gate.rerun"
    ]
    assert reruns == [("U0CAROL", "ok")]


async def test_a_re_run_whose_worker_is_lost_fails_its_gates_instead_of_leaving_them_running(
    start_bot, git_remote, tmp_path: Path
):
    """What the reaper does for a gates-only run whose worker died (its lease lapsed)."""
    bot = await start_bot(make_config(git_remote, tmp_path, gate_env="GATE_FAIL=infra"))
    await bot.command("rc", user="U0ALICE", user_name="alice")
    await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    store = bot.services.store
    await store.update_release(
        "0.15.0-rc.1",
        partial(releases.rerun_gate, gate_id="infra", last_environment="production"),
        ALICE,
        "gate.rerun",
    )
    await store.update_release(
        "0.15.0-rc.1",
        partial(releases.start_gate, gate_id="infra", now=store.clock()),
        ALICE,
        "gate.start",
    )
    run_id = f"0.15.0-rc.1@staging{deploy_release.GATES_RUN}dead"
    assert await deploy_release.report_lost_deploy(
        bot.services, "0.15.0-rc.1", run_id, "staging", "worker lost", message="The gates stopped."
    )
    gate = (await store.get_release("0.15.0-rc.1")).gate("infra")
    assert (gate.status, gate.detail) == ("failed", "worker lost")
    assert not await deploy_release.report_lost_deploy(
        bot.services, "0.15.0-rc.1", run_id, "staging", "again", message="again"
    )  # reported once

    def shown() -> str | None:
        message = release_message(bot.slack, "v0.15.0-rc.1")
        text = bot.slack.text_of(message)
        thread = thread_text(bot.slack, message)
        return text if "Re-run Infrastructure" in text and "The gates stopped." in thread else None

    text = await bot.slack.wait_for(shown)
    assert "Infrastructure validation — failed" in text


async def test_a_running_deploy_shows_its_elapsed_time_and_latest_line(
    start_bot, git_remote, tmp_path: Path
):
    """Redrawn every PROGRESS_SECONDS while the deploy runs, though its record does not
    change; then the outcome as usual."""
    bot = await start_bot(make_config(git_remote, tmp_path, deploy_env="DEPLOY_SLEEP=13"))
    await bot.command("rc", user="U0ALICE", user_name="alice")

    def running() -> str | None:
        message = release_message(bot.slack, "v0.15.0-rc.1")
        text = bot.slack.text_of(message) if message is not None else ""
        return text if "deploy running for" in text and "step 39 of the build" in text else None

    text = await bot.slack.wait_for(running, timeout=deploy_release.PROGRESS_SECONDS + 5)
    assert "⏳ *staging* — deploy running for 1" in text  # 10 s and more
    await wait_for_gates(bot.slack, "v0.15.0-rc.1")
