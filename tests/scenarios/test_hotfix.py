"""/release hotfix: a patch of production, with its own gates and approvals, marked HOTFIX."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.config import deploy_log, production_config
from tests.helpers.messages import release_message, thread_text, wait_for_gates
from tests.helpers.repos import GitRemote, git
from tests.helpers.steps import in_production, live

HOTFIX = """
[hotfix]
branches = ["hotfix/*"]
gates = ["e2e", "qa"]
required = 1
"""


async def test_a_hotfix_from_the_hotfix_branch_goes_to_production(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(production_config(git_remote, tmp_path, HOTFIX))
    await in_production(bot, git_remote)  # v0.15.0 runs in production
    # Meanwhile main moved on, and the fix is on a hotfix branch.
    git_remote.commit("new feature on main")
    git("fetch", "-q", "--tags", "origin", cwd=git_remote.work)
    git("checkout", "-q", "-b", "hotfix/checkout", "v0.15.0", cwd=git_remote.work)
    fix = git_remote.commit("fix checkout crash")
    git("push", "-q", "origin", "hotfix/checkout", cwd=git_remote.work)
    git("checkout", "-q", "main", cwd=git_remote.work)

    ack = bot.slack.text_of(
        await bot.command('hotfix --description "checkout crash" --issue INC-7', user="U0CAROL")
    )
    assert "Creating a hotfix" in ack
    message = await wait_for_gates(bot.slack, "v0.15.1-rc.1", count=1)
    assert git_remote.remote_tags()["v0.15.1-rc.1"] == fix
    text = bot.slack.text_of(message)
    assert "HOTFIX v0.15.1-rc.1" in text
    assert "Infrastructure validation" not in text  # not one of the hotfix gates
    thread = thread_text(bot.slack, message)
    assert "*HOTFIX* from `hotfix/checkout`" in thread and "review it afterwards" in thread
    assert "needs 1 more approval" in bot.slack.text_of(await bot.command("final"))

    await bot.click(message, "gate_approve", gate="qa")
    await bot.slack.wait_for(
        lambda: (
            "Ready for production" in bot.slack.text_of(release_message(bot.slack, "v0.15.1-rc.1"))
        )
    )
    await bot.command("final")
    await live(bot, "v0.15.1")
    assert git_remote.remote_tags()["v0.15.1"] == fix
    # Still a HOTFIX once promoted: its header, its tag's annotation, its audit trail.
    promoted = await bot.slack.wait_for(
        lambda: (
            "v0.15.1 · release" in bot.slack.text_of(release_message(bot.slack, "v0.15.1-rc.1"))
            and bot.slack.text_of(release_message(bot.slack, "v0.15.1-rc.1"))
        )
    )
    assert "🚑 HOTFIX v0.15.1 · release (from v0.15.1-rc.1)" in promoted
    annotation = git(
        "for-each-ref", "--format=%(contents)", "refs/tags/v0.15.1", cwd=git_remote.bare
    )
    assert annotation.startswith("HOTFIX v0.15.1 (from v0.15.1-rc.1)")
    tagged = [
        e["reason"]
        for e in await bot.services.store.audit_entries("0.15.1-rc.1")
        if e["action"] == "release.final-tag"
    ]
    assert tagged == [f"HOTFIX v0.15.1 on {fix}"]
    assert deploy_log(tmp_path)[-1].startswith(f"production 0.15.1 v0.15.1 {fix}")
    actions = [e["action"] for e in await bot.services.store.audit_entries("0.15.1-rc.1")]
    assert actions[0] == "hotfix.create"


async def test_with_production_unknown_a_hotfix_patches_the_newest_final_tag(
    start_bot, git_remote, tmp_path: Path
):
    """Day one: the bot never deployed production, so a hotfix learns what runs there from the
    newest final tag of the release branch (v0.14.1 here), audited, instead of refusing."""
    bot = await start_bot(production_config(git_remote, tmp_path, HOTFIX))
    assert "needs a description" in bot.slack.text_of(await bot.command("hotfix"))
    await bot.command('hotfix --description "x"')
    await wait_for_gates(bot.slack, "v0.14.2-rc.1", count=1)
    learnt = [
        e["reason"]
        for e in await bot.services.store.audit_entries()
        if e["action"] == "environment.adopt"
    ]
    assert learnt == ["v0.14.1: the newest final tag of main"]


async def test_no_hotfix_when_production_is_unknown_and_nothing_is_final(start_bot, tmp_path: Path):
    remote = GitRemote(bare=tmp_path / "bare.git", work=tmp_path / "fresh")
    git("init", "-q", "--bare", "-b", "main", str(remote.bare), cwd=tmp_path)
    git("clone", "-q", str(remote.bare), str(remote.work), cwd=tmp_path)
    git("checkout", "-q", "-b", "main", cwd=remote.work)
    remote.commit("first")
    remote.push()
    bot = await start_bot(production_config(remote, tmp_path, HOTFIX))
    await bot.command('hotfix --description "x"')
    answer = await bot.slack.wait_for(
        lambda: [
            c
            for c in bot.slack.calls_to("response_url")
            if "nothing to hotfix" in bot.slack.text_of(c.params)
        ]
    )
    text = bot.slack.text_of(answer[0].params)
    assert "I do not know what production runs" in text and "/release adopt production" in text
    assert remote.remote_tags() == {}
