"""Freezing from Slack (issue 19): alice freezes production until a time in the team's zone;
a final of a ready candidate is refused with her reason, `/release status` shows who, why and
until when, someone else may not end her freeze, and once she unfreezes, the final goes. The
bot's clock is the test's."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.helpers.bot import RunningBot
from tests.helpers.config import production_config
from tests.helpers.repos import GitRemote
from tests.helpers.steps import StartBot, in_production, live, ready_for_production

# Christmas Eve 2030, noon in Berlin.
NOON = datetime(2030, 12, 24, 11, 0, tzinfo=UTC).timestamp()
FREEZE_POLICY = """
[freeze]
approvers = ["U0CAROL"]
timezone = "Europe/Berlin"
"""


def channel_text(bot: RunningBot) -> str:
    """Every message the bot posted, as text."""
    return "\n".join(bot.slack.text_of(m) for m in bot.slack.messages().values())


async def channel_saying(bot: RunningBot, words: str) -> str:
    """Every message the bot posted, as text, once one of them says `words`."""

    def said() -> str:
        text = channel_text(bot)
        return text if words in text else ""

    return await bot.slack.wait_for(said)


async def test_a_freeze_from_slack_holds_a_final_until_it_is_ended(
    start_bot: StartBot, git_remote: GitRemote, tmp_path: Path
) -> None:
    bot = await start_bot(production_config(git_remote, tmp_path, FREEZE_POLICY))
    await in_production(bot, git_remote)  # v0.15.0 is live
    bot.services.store.clock = lambda: NOON
    answer = bot.slack.text_of(
        await bot.command(
            'freeze production --until "2030-12-27 09:00" --reason "holiday traffic"',
            user="U0ALICE",
            user_name="alice",
        )
    )
    assert "*production* is frozen until 2030-12-27 09:00 Europe/Berlin: holiday traffic" in (
        answer
    )
    # The channel is told: who, why, until when, and when it opens.
    told = await channel_saying(bot, "froze *production*")
    assert "<@U0ALICE> froze *production* until 2030-12-27 09:00 Europe/Berlin" in told
    assert "opens Friday 09:00 Europe/Berlin, in 2 days 21 h" in told

    await ready_for_production(bot, "v0.16.0-rc.1", rc="rc --allow-empty")
    refused = bot.slack.text_of(await bot.command("final"))
    assert "*production* is closed for changes" in refused and "holiday traffic" in refused
    assert "v0.16.0" not in git_remote.remote_tags()

    status = bot.slack.text_of(await bot.command("status"))
    assert (
        "🧊 *production* frozen until 2030-12-27 09:00 Europe/Berlin by <@U0ALICE>: "
        "holiday traffic" in status
    )

    # Bob neither set it nor approves freezes: he may not end it.
    bobs = bot.slack.text_of(
        await bot.command("unfreeze production", user="U0BOB", user_name="bob")
    )
    assert "I did not unfreeze *production*: *production* was frozen by <@U0ALICE>" in bobs
    assert await bot.services.freeze_records.active("production", NOON)

    ended = bot.slack.text_of(
        await bot.command(
            'unfreeze production --reason "traffic is fine"', user="U0ALICE", user_name="alice"
        )
    )
    assert "*production* is unfrozen: traffic is fine. It is open for changes now." in ended
    assert "🧊" not in bot.slack.text_of(await bot.command("status"))
    trail = [
        (e["action"], e["outcome"], e["user_id"])
        for e in await bot.services.store.audit_entries()
        if e["action"].startswith("freeze.")
    ]
    assert trail == [
        ("freeze.set", "ok", "U0ALICE"),
        ("freeze.end", "refused", "U0BOB"),
        ("freeze.end", "ok", "U0ALICE"),
    ]

    await bot.command("final")
    await live(bot, "v0.16.0")
    assert "v0.16.0" in git_remote.remote_tags()


async def test_freezing_an_unknown_environment_names_the_ones_there_are(
    start_bot: StartBot, git_remote: GitRemote, tmp_path: Path
) -> None:
    bot = await start_bot(production_config(git_remote, tmp_path, FREEZE_POLICY))
    answer = bot.slack.text_of(await bot.command('freeze prod --until 3h --reason "x"'))
    assert "There is no environment `prod`. Environments: `staging`, `production`." in answer
    assert await bot.services.freeze_records.active("production", bot.services.store.clock()) == []
