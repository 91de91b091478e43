"""Reading what the bot posted to the Slack stand-in: release messages and their threads."""

from __future__ import annotations

import re
from typing import Any

from bot.devtools.slack_stand_in import Message, SlackStandIn


def release_message(slack: SlackStandIn, tag: str) -> Message | None:
    """The release message of the candidate `tag` (by its header, not any mention of it)."""
    for message in slack.messages().values():
        if (
            message.thread_ts is None
            and message.blocks
            and message.blocks[0].get("type") == "header"
            and re.search(
                rf"(?<![\w.-]){re.escape(tag)}(?![\w.-])", message.blocks[0]["text"]["text"]
            )
        ):
            return message
    return None


def thread_text(slack: SlackStandIn, message: Any) -> str:
    return "\n".join(slack.text_of(m) for m in slack.thread(message.ts))


async def wait_for_failed_deploy(slack: SlackStandIn, tag: str) -> Message:
    def failed() -> Message | None:
        message = release_message(slack, tag)
        return message if message and "deploy failed" in slack.text_of(message) else None

    found = await slack.wait_for(failed, timeout=20)
    assert found is not None  # wait_for returns only what is truthy
    return found


async def wait_for_gates(slack: SlackStandIn, tag: str, count: int = 2) -> Message:
    """The release message once its automatic gates are finished (passed or failed)."""

    def done() -> Message | None:
        message = release_message(slack, tag)
        if message is None:
            return None
        text = slack.text_of(message)
        finished = text.count("passed in") + text.count("failed in")
        return message if finished >= count else None

    found = await slack.wait_for(done, timeout=30)
    assert found is not None
    return found


async def thread_saying(
    slack: SlackStandIn, message: Any, words: str, timeout: float = 10.0
) -> str:
    """The text of `message`'s thread once it contains `words`."""

    def said() -> str:
        text = thread_text(slack, message)
        return text if words in text else ""

    return await slack.wait_for(said, timeout=timeout)
