"""Day one on an existing project: a repository with final tags the bot never made, a flags file
that moved, and a production the bot knows nothing of. The bot learns what production runs from
the newest final tag of the release branch (or is told, `/release adopt`), and says "unknown"
until then, never a wrong answer."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.config import production_config
from tests.helpers.messages import release_message, thread_text, wait_for_gates
from tests.helpers.repos import GitRemote, git
from tests.helpers.steps import live, rolled_back

MOVED = "packages/site/data/feature-flags.toml"
FLAGS_THEN = """\
# The flags as production has them, from before the file moved.
[flags.checkout_v2]
enabled = true
rollout_percentage = 50
"""
FLAGS_NOW = (
    FLAGS_THEN
    + """
[flags.dark_mode]
enabled = false
rollout_percentage = 0
"""
)
GATE = f"""
[[gates]]
id = "flags"
name = "Feature flags ready"
stage = "staging"
check = "flags-ready"

[flags]
path = "{MOVED}"
deploy_command = "true"
"""


def released_by_hand(remote: GitRemote) -> None:
    """v0.14.2 released without the bot, its flags in data/; then the file moved."""
    remote.commit_file("data/feature-flags.toml", FLAGS_THEN, "flags")
    remote.tag("v0.14.2", annotated=True)
    git("mv", "data/feature-flags.toml", "tmp.toml", cwd=remote.work)
    (remote.work / "packages/site/data").mkdir(parents=True)
    git("mv", "tmp.toml", MOVED, cwd=remote.work)
    git("commit", "-q", "-m", "move the flags", cwd=remote.work)
    remote.commit_file(MOVED, FLAGS_NOW, "dark mode, off")
    remote.push()


async def test_the_first_release_learns_production_and_can_be_rolled_back(
    start_bot, git_remote, tmp_path: Path
):
    released_by_hand(git_remote)
    bot = await start_bot(production_config(git_remote, tmp_path, GATE))
    status = bot.slack.text_of(await bot.command("status"))
    assert "*production* — unknown" in status and "/release adopt production" in status

    await bot.command("rc", user="U0ALICE", user_name="alice")
    message = await wait_for_gates(bot.slack, "v0.15.0-rc.1", count=3)
    text = bot.slack.text_of(message)
    # checkout_v2 is production's already (in data/ then): not new; dark_mode starts off.
    assert "Feature flags ready — passed" in text, thread_text(bot.slack, message)
    learnt = [
        (e["user_id"], e["environment"], e["reason"])
        for e in await bot.services.store.audit_entries()
        if e["action"] == "environment.adopt"
    ]
    assert learnt == [("releasebot", "production", "v0.14.2: the newest final tag of main")]

    await bot.click(message, "gate_approve", gate="qa")
    await bot.slack.wait_for(
        lambda: (
            "Ready for production" in bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
        )
    )
    await bot.command("final")
    await live(bot)
    ack = bot.slack.text_of(await bot.command('rollback --reason "errors"', user="U0BOB"))
    assert "Rolling back *production* from `v0.15.0` to `v0.14.2`" in ack
    await rolled_back(bot)
    await bot.command("unlock production", user="U0CAROL")
    # Any final tag of the repository, even one the bot never ran there.
    ack = bot.slack.text_of(
        await bot.command('rollback --to v0.14.1 --reason "older still"', user="U0BOB")
    )
    assert "Rolling back *production* from `v0.14.2` to `v0.14.1`" in ack
    assert "a final tag of the repository; the bot never ran it in production" in ack
    refused = bot.slack.text_of(
        await bot.command('rollback --to v0.14.0-rc.1 --reason "a candidate"', user="U0BOB")
    )
    assert "nor is it a final tag of the repository" in refused


async def test_an_adopted_version_is_what_a_hotfix_patches(start_bot, git_remote, tmp_path):
    bot = await start_bot(production_config(git_remote, tmp_path))

    async def adopted(text: str) -> str:
        """The answer that follows the ack, once the repository's tags were read."""
        before = len(bot.slack.calls_to("response_url"))
        await bot.command(text, user="U0CAROL", user_name="carol")
        found = await bot.slack.wait_for(lambda: bot.slack.calls_to("response_url")[before:])
        return bot.slack.text_of(found[0].params)

    assert "needs an environment and a version" in bot.slack.text_of(
        await bot.command("adopt production")
    )
    assert "needs a reason" in bot.slack.text_of(await bot.command("adopt production v0.14.0"))
    missing = await adopted('adopt production v0.99.0 --reason "typo"')
    assert "`v0.99.0` is not a tag of the repository" in missing
    noted = await adopted('adopt production v0.14.0 --reason "running before the bot"')
    assert "Noted: *production* runs `v0.14.0`" in noted
    assert "`v0.14.0`" in bot.slack.text_of(await bot.command("status"))

    await bot.command('hotfix --description "checkout crash"', user="U0CAROL")
    # v0.14.1 is final already: the patch of the adopted v0.14.0 is the next one.
    await wait_for_gates(bot.slack, "v0.14.2-rc.1", count=1)
    outcomes = [
        (e["user_id"], e["outcome"])
        for e in await bot.services.store.audit_entries()
        if e["action"] == "environment.adopt"
    ]
    assert outcomes == [("U0CAROL", "refused"), ("U0CAROL", "ok")]
