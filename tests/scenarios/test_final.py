"""/release final: only with the approvals, exactly the tested commit, once."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.domain.actors import Actor
from bot.domain.releases import Deploy, Release, activate, block_deploy
from tests.helpers.config import SMOKE, deploy_log, make_config, production_config
from tests.helpers.messages import release_message, thread_text, wait_for_gates
from tests.helpers.releases import recorded
from tests.helpers.steps import candidate, in_production, live


async def test_final_promotes_the_approved_candidate_to_production(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(production_config(git_remote, tmp_path))
    message = await candidate(bot)
    rc_sha = git_remote.remote_tags()["v0.15.0-rc.1"]
    git_remote.commit("work after the candidate")  # main moves on; final must not take it
    git_remote.push()

    await bot.click(message, "gate_approve", gate="qa")
    await bot.slack.wait_for(
        lambda: (
            "Ready for production" in bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
        )
    )
    ack = bot.slack.text_of(
        await bot.command("final --description shipped", user="U0ALICE", user_name="alice")
    )
    assert "Promoting `v0.15.0-rc.1`" in ack
    await live(bot)

    tags = git_remote.remote_tags()
    assert tags["v0.15.0"] == rc_sha != git_remote.head()
    annotation = git_remote.tag_message("v0.15.0")
    assert "from v0.15.0-rc.1" in annotation
    assert "Promoted-by: alice (U0ALICE)" in annotation
    assert "Approved-by: bob (U0BOB) gate=qa (Manual QA) at=" in annotation
    log = deploy_log(tmp_path)
    assert log[-1].startswith(f"production 0.15.0 v0.15.0 {rc_sha}")
    versions = await bot.services.store.environment_versions(["staging", "production"])
    assert versions["production"]["tag"] == "v0.15.0"
    assert versions["staging"]["tag"] == "v0.15.0-rc.1"
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release.gate("smoke").status == "passed"
    assert await bot.services.store.releases_in_flight() == []
    text = await bot.slack.wait_for(
        lambda: (
            "Smoke tests — passed" in bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
            and bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
        )
    )
    assert "v0.15.0 · release (from v0.15.0-rc.1)" in text
    assert "Promoted as*\n`v0.15.0`" in text and "production* — deploy succeeded" in text
    assert "Ready for production" not in text
    # The first release production ever had from the bot: nothing to roll back to, no button.
    assert "Roll back production" not in text
    thread = thread_text(bot.slack, release_message(bot.slack, "v0.15.0-rc.1"))
    assert "promoted `v0.15.0-rc.1` as `v0.15.0`" in thread and "approved by <@U0BOB>" in thread
    actions = [e["action"] for e in await bot.services.store.audit_entries("0.15.0-rc.1")]
    for action in ("release.promote", "release.final-tag", "release.live"):
        assert action in actions


async def test_final_without_approvals_says_what_is_missing(start_bot, git_remote, tmp_path: Path):
    bot = await start_bot(production_config(git_remote, tmp_path))
    assert "no open release candidate" in bot.slack.text_of(await bot.command("final"))
    await candidate(bot)
    text = bot.slack.text_of(await bot.command("final"))
    assert "`v0.15.0-rc.1` is not ready for *production*" in text
    assert "Manual QA needs an approval" in text and "needs 1 more approval" in text
    await asyncio.sleep(1)
    assert "v0.15.0" not in git_remote.remote_tags()
    assert not any(line.startswith("production") for line in deploy_log(tmp_path))
    refused = [
        e
        for e in await bot.services.store.audit_entries("0.15.0-rc.1")
        if e["action"] == "release.promote"
    ]
    assert refused[0]["outcome"] == "refused"


async def test_a_newer_candidate_supersedes_the_older(start_bot, git_remote, tmp_path: Path):
    bot = await start_bot(production_config(git_remote, tmp_path))
    old = copy.deepcopy(await candidate(bot))  # as it stays on someone's screen
    await bot.click(old, "gate_approve", gate="qa")
    await bot.slack.wait_for(
        lambda: "approved by" in bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
    )
    git_remote.commit("fix")
    git_remote.push()
    await candidate(bot, "v0.15.0-rc.2")
    old_text = await bot.slack.wait_for(
        lambda: (
            "Superseded by `v0.15.0-rc.2`"
            in bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
            and bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
        )
    )
    assert "Approve Manual QA" not in old_text  # its buttons are gone
    # A click on the stale button (still on someone's screen) is refused.
    await bot.click(old, "gate_approve", gate="qa", user="U0CAROL", user_name="carol")
    answer = await bot.slack.wait_for(
        lambda: [
            c
            for c in bot.slack.calls_to("response_url")
            if "superseded" in bot.slack.text_of(c.params)
        ]
    )
    assert "approve that one instead" in bot.slack.text_of(answer[0].params)
    # /release final goes for the newest candidate, which has no approval yet.
    text = bot.slack.text_of(await bot.command("final"))
    assert "`v0.15.0-rc.2` is not ready" in text
    assert [r.version for r in await bot.services.store.releases_in_flight()] == ["0.15.0-rc.2"]


async def test_two_finals_at_once_promote_once(start_bot, git_remote, tmp_path: Path):
    bot = await start_bot(production_config(git_remote, tmp_path))
    second = await start_bot(production_config(git_remote, tmp_path), name="second")
    message = await candidate(bot)
    await bot.click(message, "gate_approve", gate="qa")
    await bot.slack.wait_for(
        lambda: (
            "Ready for production" in bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
        )
    )
    await asyncio.gather(
        bot.command("final"),
        second.command("final"),
        bot.command("final", user="U0CAROL", user_name="carol"),
    )
    await live(bot)
    await asyncio.sleep(1.5)
    production = [line for line in deploy_log(tmp_path) if line.startswith("production")]
    assert len(production) == 1
    promotes = [
        e
        for e in await bot.services.store.audit_entries("0.15.0-rc.1")
        if e["action"] == "release.final-tag"
    ]
    assert len(promotes) == 1


async def test_release_audit_posts_the_history_of_a_release(start_bot, git_remote, tmp_path: Path):
    bot = await start_bot(production_config(git_remote, tmp_path))
    message = await candidate(bot)
    await bot.click(message, "gate_approve", gate="qa")
    await bot.slack.wait_for(
        lambda: (
            "Ready for production" in bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
        )
    )
    await bot.command("final")
    await live(bot)
    for name in ("v0.15.0-rc.1", "0.15.0-rc.1", "v0.15.0"):
        await bot.command(f"audit {name}", user="U0CAROL", user_name="carol")
    await bot.slack.wait_for(
        lambda: (
            len(
                [
                    c
                    for c in bot.slack.calls_to("response_url")
                    if c.params.get("_id", "").startswith("U0CAROL") and c.params.get("blocks")
                ]
            )
            == 3
        )
    )
    texts = [
        bot.slack.text_of(c.params)
        for c in bot.slack.calls_to("response_url")
        if c.params.get("_id", "").startswith("U0CAROL")
    ]
    for text in texts:
        for action in ("release.create", "gate.approve", "release.promote", "deploy.finish"):
            assert action in text
        assert "<@U0BOB>" in text and "Audit trail" in text
    await bot.command("audit v9.9.9", user="U0CAROL", user_name="carol")
    await bot.slack.wait_for(
        lambda: [
            c
            for c in bot.slack.calls_to("response_url")
            if "I know no release `v9.9.9`" in bot.slack.text_of(c.params)
        ]
    )
    assert "at most a version" in bot.slack.text_of(await bot.command("audit a b"))


async def test_audit_finds_a_final_however_many_releases_came_after(
    start_bot, git_remote, tmp_path: Path
):
    """An auditor asks for an old final by its version: found through the final-version
    index, not among the newest releases (it used to be "I know no release" past 200)."""
    bot = await start_bot(production_config(git_remote, tmp_path))
    store = bot.services.store
    carol = Actor(user_id="U0CAROL", user_name="carol", channel="C0DEV")

    def promote(final: str) -> Callable[[Release], None]:
        def apply(release: Release) -> None:
            release.final_version, release.final_tag = final, f"v{final}"

        return apply

    async def one(n: int) -> None:
        version = f"1.{n}.0-rc.1"
        await store.create_release(
            recorded(version, sha=f"{n:040x}", created_at=1_700_000_000.0 + n, requester="U0CAROL"),
            carol,
        )
        await store.update_release(version, promote(f"1.{n}.0"), carol, "release.promote")

    for start in range(0, 260, 65):
        await asyncio.gather(*(one(n) for n in range(start, start + 65)))

    await bot.command("audit v1.0.0", user="U0CAROL", user_name="carol")
    await bot.command("audit 1.259.0", user="U0CAROL", user_name="carol")
    answers = await bot.slack.wait_for(
        lambda: (
            len(found := [c for c in bot.slack.calls_to("response_url") if c.params.get("blocks")])
            == 2
            and found
        )
    )
    texts = sorted(bot.slack.text_of(c.params) for c in answers)
    assert "I know no release" not in " ".join(texts)
    assert any("1.0.0-rc.1" in t and "release.promote" in t for t in texts), texts
    assert any("1.259.0-rc.1" in t and "release.promote" in t for t in texts), texts


async def test_a_promotion_that_never_went_live_leaves_the_flight_when_a_newer_one_does(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(production_config(git_remote, tmp_path))
    store = bot.services.store
    carol = Actor(user_id="U0CAROL", user_name="carol", channel="C0DEV")
    # An older promotion whose production deploy was blocked, recorded through the store.
    stuck = recorded("0.14.5-rc.1", created_at=store.clock() - 3600, requester="U0CAROL")
    await store.create_release(stuck, carol)

    def promoted_and_blocked(release: Release) -> None:
        activate(release, channel=None, message_ts=None)
        release.final_version, release.final_tag, release.promotion = "0.14.5", "v0.14.5", "done"
        deploy = Deploy(environment="production", id="d1")
        release.deploys["production"] = deploy
        block_deploy(release, "d1", store.clock(), "production was locked")

    await store.update_release(stuck.version, promoted_and_blocked, carol, "release.promote")
    assert "0.14.5-rc.1" in [r.version for r in await store.releases_in_flight()]

    await in_production(bot, git_remote)  # v0.15.0, made and promoted for real, goes live
    in_flight = [r.version for r in await store.releases_in_flight()]
    assert in_flight == [], in_flight
    overtaken = await store.get_release("0.14.5-rc.1")
    assert overtaken.phase == "done" and overtaken.superseded_by == "v0.15.0"
    entries = [e for e in await store.audit_entries() if e["action"] == "release.overtake"]
    assert [(e["release"], e["reason"]) for e in entries] == [
        ("0.14.5-rc.1", "v0.15.0 went live first")
    ]
    assert "0.14.5" not in bot.slack.text_of(await bot.command("status"))
    answer = bot.slack.text_of(await bot.command("final"))
    assert "no open release candidate" in answer


async def test_a_cancelled_candidate_keeps_its_tag_and_is_never_promoted(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(production_config(git_remote, tmp_path))
    message = await candidate(bot)
    stale = copy.deepcopy(message)  # its buttons, as a client that did not refresh shows them
    assert "needs a reason" in bot.slack.text_of(await bot.command("cancel"))
    answer = bot.slack.text_of(
        await bot.command('cancel --reason "wrong branch"', user="U0CAROL", user_name="carol")
    )
    assert "Cancelled `v0.15.0-rc.1`: it can no longer be promoted; its tag stays." in answer
    text = await bot.slack.wait_for(
        lambda: (
            "cancelled" in bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
            and bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
        )
    )
    assert "🚫 v0.15.0-rc.1 · cancelled" in text and "Cancelled by <@U0CAROL>: wrong branch" in text
    assert "Approve" not in text and "Reject" not in text  # its buttons are gone
    assert "v0.15.0-rc.1" in git_remote.remote_tags()
    assert await bot.services.store.releases_in_flight() == []
    assert "no open release candidate" in bot.slack.text_of(await bot.command("final"))
    # An Approve still shown on a client that did not refresh is refused.
    await bot.click(stale, "gate_approve", gate="qa")
    refused = await bot.slack.wait_for(
        lambda: [
            bot.slack.text_of(c.params)
            for c in bot.slack.calls_to("response_url")
            if "was cancelled by carol" in bot.slack.text_of(c.params)
        ]
    )
    assert refused
    again = bot.slack.text_of(await bot.command("cancel v0.15.0-rc.1 --reason twice"))
    assert "was cancelled already by carol" in again
    thread = thread_text(bot.slack, release_message(bot.slack, "v0.15.0-rc.1"))
    assert "<@U0CAROL> cancelled `v0.15.0-rc.1`: wrong branch" in thread
    outcomes = [
        e["outcome"]
        for e in await bot.services.store.audit_entries("0.15.0-rc.1")
        if e["action"] == "release.cancel"
    ]
    assert outcomes == ["ok", "duplicate"]
    # The next candidate is of the next number: the cancelled one's tag is not reused.
    git_remote.commit("the right branch")
    git_remote.push()
    await candidate(bot, "v0.15.0-rc.2")


async def test_a_failed_gate_waived_with_a_reason_and_another_approval_lets_it_go(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(
        make_config(git_remote, tmp_path, gate_env="GATE_FAIL=infra", extra=SMOKE)
    )
    await bot.command("rc", user="U0ALICE", user_name="alice")
    message = await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    assert "Infrastructure validation — failed" in bot.slack.text_of(message)
    await bot.click(message, "gate_waive", user="U0ALICE", user_name="alice", gate="infra")
    opened = await bot.slack.wait_for(lambda: bot.slack.calls_to("views.open"))
    view = opened[0].params["view"]
    status, _ = await bot.submit_view(
        view, {"reason": "known flake of the staging LB, INC-12"}, user="U0ALICE", user_name="alice"
    )
    assert status == 200
    asked = await bot.slack.wait_for(
        lambda: (
            "Approve waiver of Infrastructure" in bot.slack.text_of(message_of(bot))
            and message_of(bot)
        )
    )
    assert "waiver asked by <@U0ALICE>: known flake" in bot.slack.text_of(asked)
    assert "Ready for production" not in bot.slack.text_of(asked)
    await bot.click(asked, "gate_waive_approve", user="U0ALICE", user_name="alice", gate="infra")
    assert "someone else has to approve it" in await private_answer(bot, "U0ALICE", "waiver")
    await bot.click(asked, "gate_waive_approve", user="U0BOB", user_name="bob", gate="infra")
    await bot.click(message_of(bot), "gate_approve", user="U0BOB", user_name="bob", gate="qa")
    text = await bot.slack.wait_for(
        lambda: (
            "Ready for production" in bot.slack.text_of(message_of(bot))
            and bot.slack.text_of(message_of(bot))
        )
    )
    assert "☑️ Infrastructure validation — waived: known flake of the staging LB, INC-12" in text
    assert "approved by <@U0BOB>" in text
    await bot.command("final", user="U0ALICE", user_name="alice")
    await live(bot)
    annotation = git_remote.tag_message("v0.15.0")
    assert (
        "Waived: gate=infra (Infrastructure validation) asked-by=alice (U0ALICE) "
        "approved-by=bob (U0BOB) reason=known flake of the staging LB, INC-12"
    ) in annotation
    actions = [
        (e["user_id"], e["action"], e["outcome"])
        for e in await bot.services.store.audit_entries("0.15.0-rc.1")
        if e["action"].startswith(("gate.waive", "waive."))
    ]
    assert actions == [
        ("U0ALICE", "waive.form", "opened"),
        ("U0ALICE", "gate.waive", "asked"),
        ("U0ALICE", "gate.waive-approve", "refused"),
        ("U0BOB", "gate.waive-approve", "ok"),
    ]


def message_of(bot) -> Any:
    return release_message(bot.slack, "v0.15.0-rc.1")


async def private_answer(bot, user: str, fragment: str) -> str:
    found = await bot.slack.wait_for(
        lambda: [
            bot.slack.text_of(c.params)
            for c in bot.slack.calls_to("response_url")
            if c.params.get("_id", "").startswith(user) and fragment in bot.slack.text_of(c.params)
        ]
    )
    return found[-1]
