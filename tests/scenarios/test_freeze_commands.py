"""Freezing from Slack (issue 19): alice freezes production until a time in the team's zone;
a final of a ready candidate is refused with her reason, `/release status` shows who, why and
until when, someone else may not end her freeze, and once she unfreezes, the final goes. A
member of an approver group (a Slack user group in [freeze] approvers) ends her freeze; someone
outside it is refused, and ends nothing. The bot's clock is the test's."""

from __future__ import annotations

import asyncio
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
# The release managers' group approves freezes: whether someone is in it is Slack's to say.
GROUP_FREEZE_POLICY = """
[freeze]
approvers = ["S0RELMGR"]
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


async def frozen_by_alice(start_bot: StartBot, git_remote: GitRemote, tmp_path: Path) -> RunningBot:
    """A bot whose [freeze] approvers are the S0RELMGR group (dave alone in it), production
    frozen by alice at NOON."""
    bot = await start_bot(production_config(git_remote, tmp_path, GROUP_FREEZE_POLICY))
    bot.slack.usergroups["S0RELMGR"] = ["U0DAVE"]
    bot.services.store.clock = lambda: NOON
    await bot.command(
        'freeze production --until "2030-12-27 09:00" --reason "holiday traffic"',
        user="U0ALICE",
        user_name="alice",
    )
    assert await bot.services.freeze_records.active("production", NOON)
    return bot


async def answer_after_ack(bot: RunningBot, user: str) -> str:
    """What the bot answered `user` through their command's response_url (after the ack)."""

    def answered() -> str:
        return "\n".join(
            bot.slack.text_of(call)
            for call in bot.slack.calls_to("response_url")
            if str(call.params["_id"]).startswith(f"{user}-")
        )

    return await bot.slack.wait_for(answered)


async def freeze_trail(bot: RunningBot) -> list[tuple[str, str, str]]:
    return [
        (e["action"], e["outcome"], e["user_id"])
        for e in await bot.services.store.audit_entries()
        if e["action"].startswith("freeze.")
    ]


async def test_a_member_of_an_approver_group_ends_a_freeze_someone_else_set(
    start_bot: StartBot, git_remote: GitRemote, tmp_path: Path
) -> None:
    bot = await frozen_by_alice(start_bot, git_remote, tmp_path)
    # Only Slack can say whether dave is in S0RELMGR: the ack says it is under way, and never
    # waits for Slack's Web API.
    ack = bot.slack.text_of(
        await bot.command(
            'unfreeze production --reason "traffic is fine"', user="U0DAVE", user_name="dave"
        )
    )
    assert "Unfreezing *production*" in ack
    answer = await answer_after_ack(bot, "U0DAVE")
    assert "*production* is unfrozen: traffic is fine. It is open for changes now." in answer
    told = await channel_saying(bot, "unfroze *production*")
    assert (
        "<@U0DAVE> unfroze *production*: traffic is fine (ended <@U0ALICE>'s until "
        "2030-12-27 09:00 Europe/Berlin (holiday traffic))" in told
    )
    lookups = bot.slack.calls_to("usergroups.users.list")
    assert [call.params.get("usergroup") for call in lookups] == ["S0RELMGR"]
    assert await bot.services.freeze_records.active("production", NOON) == []
    assert "🧊" not in bot.slack.text_of(await bot.command("status"))
    assert await freeze_trail(bot) == [
        ("freeze.set", "ok", "U0ALICE"),
        ("freeze.end", "ok", "U0DAVE"),
    ]


async def test_someone_outside_the_approver_group_may_not_end_a_freeze_of_someone_else(
    start_bot: StartBot, git_remote: GitRemote, tmp_path: Path
) -> None:
    bot = await frozen_by_alice(start_bot, git_remote, tmp_path)
    ack = bot.slack.text_of(
        await bot.command("unfreeze production", user="U0ERIN", user_name="erin")
    )
    assert "Unfreezing *production*" in ack
    answer = await answer_after_ack(bot, "U0ERIN")
    assert (
        "I did not unfreeze *production*: *production* was frozen by <@U0ALICE>; only whoever "
        "set a freeze, or one of the approvers in [freeze], may end it early." in answer
    )
    # Slack was asked, and said erin is not in the group: nothing ended, nothing announced.
    assert len(bot.slack.calls_to("usergroups.users.list")) == 1
    assert await bot.services.freeze_records.active("production", NOON)
    status = bot.slack.text_of(await bot.command("status"))
    assert "🧊 *production* frozen until 2030-12-27 09:00 Europe/Berlin by <@U0ALICE>" in status
    assert "unfroze" not in channel_text(bot)
    assert await freeze_trail(bot) == [
        ("freeze.set", "ok", "U0ALICE"),
        ("freeze.end", "refused", "U0ERIN"),
    ]


async def test_an_unfreeze_slack_cannot_check_the_group_of_ends_nothing_and_says_try_again(
    start_bot: StartBot, git_remote: GitRemote, tmp_path: Path
) -> None:
    bot = await frozen_by_alice(start_bot, git_remote, tmp_path)
    bot.slack.fail_next("usergroups.users.list", status=500, times=5)
    await bot.command("unfreeze production", user="U0DAVE", user_name="dave")
    answer = await answer_after_ack(bot, "U0DAVE")
    assert (
        "I did not unfreeze *production*: *production* was frozen by <@U0ALICE>, and I could "
        "not check whether you are in the [freeze] approver group <!subteam^S0RELMGR>" in answer
    )
    assert "nothing was unfrozen, try again in a minute" in answer
    assert "nothing was approved" not in answer
    assert await bot.services.freeze_records.active("production", NOON)
    assert await freeze_trail(bot) == [
        ("freeze.set", "ok", "U0ALICE"),
        ("freeze.end", "refused", "U0DAVE"),
    ]


async def test_two_unfreezes_at_once_end_the_freeze_once(
    start_bot: StartBot, git_remote: GitRemote, tmp_path: Path
) -> None:
    # FREEZE_POLICY names carol an approver: she and alice (who set it) both may end it, and
    # both ask at the same moment. One ends it; the other finds nothing left to end.
    bot = await start_bot(production_config(git_remote, tmp_path, FREEZE_POLICY))
    bot.services.store.clock = lambda: NOON
    await bot.command('freeze production --until 2d --reason "holiday traffic"', user="U0ALICE")
    answers = await asyncio.gather(
        bot.command("unfreeze production", user="U0ALICE", user_name="alice"),
        bot.command("unfreeze production", user="U0CAROL", user_name="carol"),
    )
    said = [bot.slack.text_of(answer) for answer in answers]
    assert sum("is unfrozen" in text for text in said) == 1, said
    assert sum("has no freeze set from Slack" in text for text in said) == 1, said
    assert await bot.services.freeze_records.active("production", NOON) == []
    await channel_saying(bot, "unfroze *production*")
    told = [m for m in bot.slack.messages().values() if "unfroze" in bot.slack.text_of(m)]
    assert len(told) == 1
    assert [
        outcome for action, outcome, _ in await freeze_trail(bot) if action == "freeze.end"
    ] == ["ok"]
