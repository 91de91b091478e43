"""A freeze's reason is someone's text (`/release freeze … --reason`): wherever the bot quotes
it (the refusal of a final, the EMERGENCY override's request in the thread, a flag change
refused), it is shown as text, never a channel broadcast, a mention or a link, while the bot's own
mention of who froze it stays a mention."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.bot import RunningBot
from tests.helpers.config import production_config
from tests.helpers.steps import in_production, ready_for_production

HOSTILE = "<!channel> ask <@U0EVE>, see <https://evil.example|the plan>"
SHOWN = "&lt;!channel&gt; ask &lt;@U0EVE&gt;, see &lt;https://evil.example|the plan&gt;"


def everything_posted(bot: RunningBot) -> str:
    return "\n".join(bot.slack.text_of(m) for m in bot.slack.messages().values())


async def test_a_freeze_reason_is_quoted_as_text_everywhere(start_bot, git_remote, tmp_path: Path):
    bot = await start_bot(production_config(git_remote, tmp_path))
    await in_production(bot, git_remote)
    await bot.command(
        f'freeze production --until 2d --reason "{HOSTILE}"', user="U0CAROL", user_name="carol"
    )
    await ready_for_production(bot, "v0.16.0-rc.1", "rc --allow-empty")

    refused = bot.slack.text_of(await bot.command("final", user="U0ALICE", user_name="alice"))
    assert "is closed for changes" in refused
    assert SHOWN in refused and "(by <@U0CAROL>)" in refused
    assert "<!channel>" not in refused and "<https://" not in refused

    await bot.command(
        'final --emergency --reason "checkout down"', user="U0ALICE", user_name="alice"
    )
    asked = await bot.slack.wait_for(
        lambda: (
            "asks for an *EMERGENCY override*" in everything_posted(bot) and everything_posted(bot)
        )
    )
    assert SHOWN in asked and "(by <@U0CAROL>)" in asked
    assert "<!channel>" not in asked and "<https://" not in asked

    status = bot.slack.text_of(await bot.command("status", user="U0ALICE", user_name="alice"))
    assert SHOWN in status and "<!channel>" not in status
