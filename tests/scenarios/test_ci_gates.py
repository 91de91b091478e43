"""Gates passed by the team's CI on GitHub (the REST stand-in on 127.0.0.1): a gate waits
without holding a worker, its checklist line saying for what, passes when the contexts pass,
fails with the failing check's link, fails at its timeout naming what never reported, and never
passes while GitHub is down. A failed one is re-run or waived like any gate, and stays waived
whatever CI says later."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from bot.adapters.github import GitHubConfig
from bot.devtools.github_stand_in import GitHubStandIn
from bot.devtools.slack_stand_in import Message, validate_blocks
from bot.services import ci_gates
from tests.helpers.bot import RunningBot
from tests.helpers.config import make_config
from tests.helpers.messages import release_message, thread_text

OWNER, REPO = "acme", "site"


CONTEXTS = ("ci/e2e", "Accessibility")
# Waivers of a failed gate take two approvals, from bob and dave.
TWO_WAIVER_APPROVALS = """
[waivers]
required = 2
approvers = ["U0BOB", "U0DAVE"]
"""


def ci_config(timeout: float = 60, contexts: Sequence[str] = CONTEXTS) -> str:
    return f"""
[github]
repository = "{OWNER}/{REPO}"

[[gates]]
id = "ci"
name = "CI checks"
stage = "staging"
check = "github"
contexts = {json.dumps(list(contexts))}
allow_failures = ["lint"]
timeout_seconds = {timeout}
"""


async def thread_saying(bot, message, words: str) -> str:
    """The release's thread once it says `words` (replies go out paced)."""

    def said() -> str | None:
        text = thread_text(bot.slack, message)
        return text if words in text else None

    found: str = await bot.slack.wait_for(said)
    return found


@pytest.fixture
async def github():
    async with GitHubStandIn() as stand_in:
        yield stand_in


async def waiting_candidate(
    start_bot, git_remote, tmp_path: Path, github, timeout: float = 60, extra: str = ""
):
    github.repo(OWNER, REPO)  # the repository exists on GitHub; nothing reported on it yet
    bot = await start_bot(
        make_config(git_remote, tmp_path, extra=ci_config(timeout) + extra),
        github=GitHubConfig(api_url=github.base_url, token=github.token, max_wait=2, retries=1),
    )
    await bot.command("rc")
    message = await bot.slack.wait_for(
        lambda: (
            (m := release_message(bot.slack, "v0.15.0-rc.1"))
            and "waiting for ci/e2e, Accessibility" in thread_text(bot.slack, m)
            and m
        ),
        timeout=30,
    )
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release is not None and release.gate("ci").status == "running"
    return bot, message, release.sha


async def test_a_ci_gate_waits_then_passes_when_its_contexts_pass(
    start_bot, git_remote, tmp_path: Path, github: GitHubStandIn
):
    bot, message, sha = await waiting_candidate(start_bot, git_remote, tmp_path, github)
    github.set_status(OWNER, REPO, sha, "ci/e2e", "pending")
    assert await ci_gates.recheck_waiting(bot.services) == 0  # still waiting: nothing said
    github.set_status(OWNER, REPO, sha, "ci/e2e", "success")
    github.add_check_run(OWNER, REPO, sha, "Accessibility")
    github.add_check_run(OWNER, REPO, sha, "lint", conclusion="failure")
    assert await ci_gates.recheck_waiting(bot.services) == 1
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release is not None and release.gate("ci").status == "passed"
    text = await thread_saying(bot, message, "CI checks passed")
    assert "CI passed: ci/e2e, Accessibility" in text and "allowed to fail" in text
    for reply in bot.slack.thread(message.ts):
        assert validate_blocks(reply.blocks) == []
    finished = [
        e
        for e in await bot.services.store.audit_entries("0.15.0-rc.1")
        if e["action"] == "gate.finish" and e["reason"].startswith("ci:")
    ]
    assert [e["outcome"] for e in finished] == ["passed"]
    assert await ci_gates.recheck_waiting(bot.services) == 0  # decided once


async def test_a_failing_check_fails_the_gate_with_its_link(
    start_bot, git_remote, tmp_path: Path, github: GitHubStandIn
):
    bot, message, sha = await waiting_candidate(start_bot, git_remote, tmp_path, github)
    github.set_status(OWNER, REPO, sha, "ci/e2e", "failure", target_url="https://ci.example/e2e/9")
    assert await ci_gates.recheck_waiting(bot.services) == 1
    text = await thread_saying(bot, message, "CI checks failed")
    assert "ci/e2e: failure https://ci.example/e2e/9" in text
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release is not None and release.gate("ci").status == "failed"


async def test_a_context_that_never_reports_fails_the_gate_at_its_timeout(
    start_bot, git_remote, tmp_path: Path, github: GitHubStandIn
):
    bot, _, sha = await waiting_candidate(start_bot, git_remote, tmp_path, github, 2)
    github.set_status(OWNER, REPO, sha, "ci/e2e", "success")
    assert await ci_gates.recheck_waiting(bot.services) == 0
    await asyncio.sleep(2.2)
    assert await ci_gates.recheck_waiting(bot.services) == 1
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release is not None and release.gate("ci").status == "failed"
    assert release.gate("ci").detail == "after 2s, never reported: Accessibility"


async def test_while_github_is_down_the_gate_waits_then_fails_never_passes(
    start_bot, git_remote, tmp_path: Path, github: GitHubStandIn
):
    bot, _, sha = await waiting_candidate(start_bot, git_remote, tmp_path, github, 2)
    github.set_status(OWNER, REPO, sha, "ci/e2e", "success")
    github.add_check_run(OWNER, REPO, sha, "Accessibility")
    github.fail_next(f"/repos/{OWNER}/{REPO}/commits", 500, times=1000)
    assert await ci_gates.recheck_waiting(bot.services) == 0  # down: it waits
    await asyncio.sleep(2.2)
    assert await ci_gates.recheck_waiting(bot.services) == 1  # then fails, with why
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release is not None and release.gate("ci").status == "failed"
    assert "GitHub is unavailable" in release.gate("ci").detail


async def test_a_failed_ci_gate_is_re_run_from_its_button_once_ci_is_green(
    start_bot, git_remote, tmp_path: Path, github: GitHubStandIn
):
    bot, message, sha = await waiting_candidate(start_bot, git_remote, tmp_path, github)
    github.set_status(OWNER, REPO, sha, "ci/e2e", "failure", target_url="https://ci.example/e2e/9")
    assert await ci_gates.recheck_waiting(bot.services) == 1
    failed = await bot.slack.wait_for(
        lambda: (
            (m := release_message(bot.slack, "v0.15.0-rc.1")) is not None
            and "Re-run CI checks" in bot.slack.text_of(m)
            and m
        ),
        timeout=20,
    )
    github.set_status(OWNER, REPO, sha, "ci/e2e", "success")  # re-run in CI, green now
    github.add_check_run(OWNER, REPO, sha, "Accessibility")
    await bot.click(failed, "gate_rerun", user="U0CAROL", user_name="carol", gate="ci")
    await thread_saying(bot, message, "CI checks passed")
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release is not None and release.gate("ci").status == "passed"


# --- the checklist line of a waiting gate, and waivers -------------------------------------------

VERSION, TAG = "0.15.0-rc.1", "v0.15.0-rc.1"


async def message_saying(bot: RunningBot, words: str) -> Message:
    """The release message once it says `words` (it is redrawn a moment after a change); it
    is valid Block Kit."""

    def says() -> Message | None:
        shown = release_message(bot.slack, TAG)
        return shown if shown is not None and words in bot.slack.text_of(shown) else None

    found: Message = await bot.slack.wait_for(says, timeout=20)
    assert validate_blocks(found.blocks) == []
    return found


async def private_answer(bot: RunningBot, user: str, words: str) -> str:
    """The latest answer only `user` sees (to a click) that says `words`."""

    def said() -> list[str]:
        return [
            text
            for call in bot.slack.calls_to("response_url")
            if call.params.get("_id", "").startswith(user)
            and words in (text := bot.slack.text_of(call.params))
        ]

    answers: list[str] = await bot.slack.wait_for(said)
    return answers[-1]


async def gate_status(bot: RunningBot) -> tuple[str, int]:
    """The CI gate's status and the release record's revision (which every write moves on)."""
    release = await bot.services.store.get_release(VERSION)
    assert release is not None
    return release.gate("ci").status, release.rev


async def waive_ci_gate(bot: RunningBot, failed: Message, reason: str) -> Message:
    """Carol asks through the Waive button and its form; bob, then dave approve it, as
    [waivers] wants (two of them); the message once it shows the gate waived."""
    await bot.click(failed, "gate_waive", user="U0CAROL", user_name="carol", gate="ci")
    opened = await bot.slack.wait_for(lambda: bot.slack.calls_to("views.open"))
    status, _ = await bot.submit_view(
        opened[-1].params["view"], {"reason": reason}, user="U0CAROL", user_name="carol"
    )
    assert status == 200
    asked = await message_saying(bot, "Approve waiver of CI checks")
    await bot.click(asked, "gate_waive_approve", user="U0BOB", user_name="bob", gate="ci")
    assert "needs more approvals" in await private_answer(bot, "U0BOB", "waiver")
    assert (await gate_status(bot))[0] == "failed"  # one approval of the two it needs
    await bot.click(asked, "gate_waive_approve", user="U0DAVE", user_name="dave", gate="ci")
    assert "counts as passed" in await private_answer(bot, "U0DAVE", "waiver")
    assert (await gate_status(bot))[0] == "waived"
    return await message_saying(bot, f"☑️ CI checks — waived: {reason}")


async def test_the_checklist_line_of_a_waiting_ci_gate_says_what_it_waits_for(
    start_bot, git_remote, tmp_path: Path, github: GitHubStandIn
):
    bot, _, sha = await waiting_candidate(start_bot, git_remote, tmp_path, github)
    await message_saying(bot, "⏳ CI checks — waiting for ci/e2e, Accessibility")
    github.set_status(OWNER, REPO, sha, "ci/e2e", "pending")
    _, rev = await gate_status(bot)
    assert await ci_gates.recheck_waiting(bot.services) == 0
    assert await gate_status(bot) == ("running", rev)  # waiting for the same: nothing written
    github.set_status(OWNER, REPO, sha, "ci/e2e", "success")
    github.add_check_run(OWNER, REPO, sha, "Accessibility", status="in_progress")
    assert await ci_gates.recheck_waiting(bot.services) == 0
    text = bot.slack.text_of(await message_saying(bot, "⏳ CI checks — waiting for Accessibility"))
    assert "ci/e2e" not in text
    noted = [
        e["reason"]
        for e in await bot.services.store.audit_entries(VERSION)
        if e["action"] == "gate.wait"
    ]
    assert noted == ["ci: waiting for ci/e2e, Accessibility", "ci: waiting for Accessibility"]
    github.add_check_run(OWNER, REPO, sha, "Accessibility")
    assert await ci_gates.recheck_waiting(bot.services) == 1
    await message_saying(bot, "✅ CI checks — passed in")


async def test_a_long_list_of_contexts_is_cut_on_the_checklist_line(
    start_bot, git_remote, tmp_path: Path, github: GitHubStandIn
):
    github.repo(OWNER, REPO)
    contexts = [f"integration/{'very-long-shard-name-' * 3}{n:02}" for n in range(60)]
    bot = await start_bot(
        make_config(git_remote, tmp_path, extra=ci_config(contexts=contexts)),
        github=GitHubConfig(api_url=github.base_url, token=github.token, max_wait=2, retries=1),
    )
    await bot.command("rc")
    shown = await message_saying(bot, "⏳ CI checks — waiting for integration/")
    line = next(
        line for line in bot.slack.text_of(shown).splitlines() if line.startswith("⏳ CI checks")
    )
    named, more = line.count("integration/"), line.rsplit(" and ", 1)[-1]
    assert more == f"{60 - named} more" and named >= 1 and len(line) < 250, line


async def test_a_failed_ci_gate_is_waived_with_the_approvals_waivers_need(
    start_bot, git_remote, tmp_path: Path, github: GitHubStandIn
):
    bot, message, sha = await waiting_candidate(
        start_bot, git_remote, tmp_path, github, extra=TWO_WAIVER_APPROVALS
    )
    waiting = await message_saying(bot, "⏳ CI checks — waiting for")
    assert "Waive" not in bot.slack.text_of(waiting)  # only a failed gate is waived
    github.set_status(OWNER, REPO, sha, "ci/e2e", "failure", target_url="https://ci.example/e2e/9")
    assert await ci_gates.recheck_waiting(bot.services) == 1
    failed = await message_saying(bot, "❌ CI checks — failed in")
    assert "Ready for production" not in bot.slack.text_of(failed)
    waived = await waive_ci_gate(bot, failed, "e2e flakes on the staging LB, INC-12")
    assert "(asked by <@U0CAROL>, approved by <@U0BOB>, <@U0DAVE>)" in bot.slack.text_of(waived)
    await bot.click(waived, "gate_approve", user="U0BOB", user_name="bob", gate="qa")
    await message_saying(bot, "Ready for production")  # the release goes on
    asked = [
        (e["user_id"], e["action"], e["outcome"])
        for e in await bot.services.store.audit_entries(VERSION)
        if e["action"].startswith("gate.waive")
    ]
    assert asked == [
        ("U0CAROL", "gate.waive", "asked"),
        ("U0BOB", "gate.waive-approve", "ok"),
        ("U0DAVE", "gate.waive-approve", "ok"),
    ]
    assert "approved the waiver of *CI checks*: it counts as passed" in thread_text(
        bot.slack, message
    )


async def test_a_waived_ci_gate_stays_waived_whatever_ci_says_later(
    start_bot, git_remote, tmp_path: Path, github: GitHubStandIn
):
    bot, message, sha = await waiting_candidate(
        start_bot, git_remote, tmp_path, github, 2, extra=TWO_WAIVER_APPROVALS
    )
    github.set_status(OWNER, REPO, sha, "ci/e2e", "pending")  # CI is slow today
    await asyncio.sleep(2.2)
    assert await ci_gates.recheck_waiting(bot.services) == 1  # failed at its timeout
    failed = await message_saying(bot, "❌ CI checks — failed in")
    await waive_ci_gate(bot, failed, "CI is down for maintenance, tested by hand")
    # CI finishes at last, and fails: the gate was waived, so it is not even looked at.
    github.set_status(OWNER, REPO, sha, "ci/e2e", "failure", target_url="https://ci.example/e2e/9")
    github.add_check_run(OWNER, REPO, sha, "Accessibility", conclusion="failure")
    looked = len(github.requests("GET", f"/repos/{OWNER}/{REPO}/commits"))
    _, rev = await gate_status(bot)
    assert await ci_gates.recheck_waiting(bot.services) == 0
    assert await gate_status(bot) == ("waived", rev)  # nothing written
    assert len(github.requests("GET", f"/repos/{OWNER}/{REPO}/commits")) == looked
    # Replies go out in order: once the approval below is in the thread, anything the recheck
    # had said would be there before it.
    await bot.click(failed, "gate_approve", user="U0BOB", user_name="bob", gate="qa")
    text = await thread_saying(bot, message, "approved *Manual QA*")
    assert text.count("❌ CI checks failed") == 1  # at its timeout, and not again
    await message_saying(bot, "Ready for production")


async def test_a_cancelled_candidate_stops_waiting_for_ci(
    start_bot, git_remote, tmp_path: Path, github: GitHubStandIn
):
    bot, _message, sha = await waiting_candidate(start_bot, git_remote, tmp_path, github)
    await bot.command('cancel --reason "wrong branch"')
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release is not None
    gate = release.gate("ci")
    assert gate.status == "failed" and "the candidate was cancelled" in gate.detail
    # Not a failure of what staging runs, and nothing more is asked of GitHub for it.
    asked = len(github.calls)
    github.set_status(OWNER, REPO, sha, "ci/e2e", "failure")
    assert await ci_gates.recheck_waiting(bot.services) == 0
    assert len(github.calls) == asked
    # Its checklist line no longer says it waits.
    await bot.slack.wait_for(
        lambda: (
            "❌ CI checks — failed" in bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
        )
    )
