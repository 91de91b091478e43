"""A rollback starts from what the bot's clone has, but never from a tag moved since: the
real bot, worker, Redis, Slack stand-in and git remote."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.config import deploy_log, production_config
from tests.helpers.messages import release_message, thread_text
from tests.helpers.repos import git
from tests.helpers.steps import ROLLBACK_POLICY as POLICY
from tests.helpers.steps import in_production, rolled_back


def local_tags(path: Path) -> set[str]:
    return set(git("tag", "--list", cwd=path).split())


async def test_a_rollback_to_a_tag_moved_since_it_ran_is_refused(
    start_bot, git_remote, tmp_path: Path
):
    """The bot's clone has v0.14.1 at the commit production ran; the remote's tag now points
    elsewhere. The rollback must neither deploy the new commit nor pretend all is well."""
    bot = await start_bot(production_config(git_remote, tmp_path))
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
    bot = await start_bot(production_config(git_remote, tmp_path, POLICY))
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
