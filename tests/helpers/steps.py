"""Steps that many scenarios take on the way to what they test: a candidate whose gates ran,
approvals on it, a release live in production."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bot.devtools.slack_stand_in import Message
from tests.helpers.bot import RunningBot
from tests.helpers.config import make_config
from tests.helpers.messages import release_message, thread_text, wait_for_gates
from tests.helpers.repos import GitRemote

StartBot = Callable[..., Awaitable[RunningBot]]  # the `start_bot` fixture

# A second manual gate, and two approvals for production from bob, carol or the release
# managers' group (whose members a test puts in the stand-in's usergroups).
APPROVAL_POLICY = """
[[gates]]
id = "sec"
name = "Security scan"
stage = "staging"
manual = true

[approvals.production]
required = 2
approvers = ["U0BOB", "U0CAROL", "S0RELMGR"]
"""


async def candidate(
    bot: RunningBot, tag: str = "v0.15.0-rc.1", rc: str = "rc --description infra"
) -> Message:
    """alice's `/release rc` (or `rc`, the command's text); its release message once the
    automatic gates are done."""
    await bot.command(rc, user="U0ALICE", user_name="alice")
    return await wait_for_gates(bot.slack, tag)


async def ready_for_production(
    bot: RunningBot, tag: str = "v0.15.0-rc.1", rc: str = "rc --description infra"
) -> Message:
    """alice's candidate `tag` with Manual QA approved by bob: its message once it says it is
    ready for production (`/release final` then promotes it, unless something stops it)."""
    await bot.click(await candidate(bot, tag, rc), "gate_approve", gate="qa")

    def ready() -> Message | None:
        shown = release_message(bot.slack, tag)
        return shown if shown and "Ready for production" in bot.slack.text_of(shown) else None

    found = await bot.slack.wait_for(ready)
    assert found is not None
    return found


async def live(bot: RunningBot, tag: str = "v0.15.0") -> Message:
    """The message saying `tag` is live in production, once it is posted."""

    def done() -> Message | None:
        for message in bot.slack.messages().values():
            if f"`{tag}` is live in *production*" in bot.slack.text_of(message):
                return message
        return None

    found = await bot.slack.wait_for(done, timeout=30)
    assert found is not None
    return found


async def in_production(bot: RunningBot, git_remote: GitRemote) -> None:
    """v0.14.1 ran in production before the bot's v0.15.0 replaced it."""
    await bot.services.store.set_environment_version(
        "production", "0.14.1", "v0.14.1", git_remote.remote_tags()["v0.14.1"]
    )
    await ready_for_production(bot)
    await bot.command("final")
    await live(bot)


async def staged(start_bot: StartBot, git_remote: GitRemote, tmp_path: Path) -> RunningBot:
    """A bot with APPROVAL_POLICY (dave in the release managers' group) and alice's candidate
    v0.15.0-rc.1, its automatic gates done."""
    bot = await start_bot(make_config(git_remote, tmp_path, extra=APPROVAL_POLICY))
    bot.slack.usergroups["S0RELMGR"] = ["U0DAVE"]
    await bot.command("rc", user="U0ALICE", user_name="alice")
    await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    return bot


def message_of(bot: RunningBot) -> Any:
    """The release message of v0.15.0-rc.1 as it is now."""
    return release_message(bot.slack, "v0.15.0-rc.1")


# Two named approvers for a rollback (the scenario tests of rollbacks and their benchmark).
ROLLBACK_POLICY = """
[rollback]
required = 2
approvers = ["U0BOB", "U0CAROL"]
"""


async def rolled_back(bot: RunningBot) -> str:
    """The thread of the production release once it says it was rolled back."""
    message = release_message(bot.slack, "v0.15.0-rc.1")

    def said() -> str:
        text = thread_text(bot.slack, message)
        return text if "Rolled back *production*" in text else ""

    return await bot.slack.wait_for(said, timeout=30)


async def status_saying(bot: RunningBot, wanted: str, timeout: float = 10.0) -> str:
    """`/release status` asked again until it says `wanted` (what a click or a job records
    may land a moment after the message a test waited for); its text."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        text = bot.slack.text_of(await bot.command("status"))
        if wanted in text:
            return text
        assert asyncio.get_running_loop().time() < deadline, text
        await asyncio.sleep(0.25)  # past the status snapshot's 0.2 s
