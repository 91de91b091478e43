"""Who did something: the audit trail and every transition name an actor."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """Who caused a change: a Slack user (ID and name) in a channel, or the bot itself."""

    user_id: str = "releasebot"
    user_name: str = "releasebot"
    channel: str = ""


BOT = Actor()
