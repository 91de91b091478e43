"""What listeners read out of Slack's payloads, written once: who acted, where, and what a
button or a form carries. Anything damaged reads as None, never as an exception."""

from __future__ import annotations

import json
from typing import Any

from bot.domain.actors import Actor


def command_actor(command: dict[str, Any]) -> Actor:
    """Who typed a slash command, and in which channel."""
    return Actor(
        str(command.get("user_id", "")),
        str(command.get("user_name", "")),
        str(command.get("channel_id", "")),
    )


def _object(body: dict[str, Any], name: str) -> dict[str, Any]:
    """`body[name]` if it is a JSON object, else an empty one (a damaged payload)."""
    value = body.get(name)
    return value if isinstance(value, dict) else {}


def click_actor(body: dict[str, Any], channel: str | None = None) -> Actor:
    """Who clicked (or sent a form), in `channel` or the channel of the click."""
    user = _object(body, "user")
    where = channel if channel is not None else clicked_message(body)[0]
    return Actor(
        str(user.get("id", "")), str(user.get("username") or user.get("name") or ""), where
    )


def button_value(body: dict[str, Any]) -> dict[str, str] | None:
    """The JSON object a button carries, with string values; None if it is damaged."""
    try:
        value = json.loads(body["actions"][0]["value"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return None
    return value


def action_id(body: dict[str, Any]) -> str:
    try:
        return str(body["actions"][0]["action_id"])[:255]
    except (KeyError, IndexError, TypeError):
        return ""


def clicked_message(body: dict[str, Any]) -> tuple[str, str]:
    """(channel, ts) of the message the click was made on; empty strings if none."""
    container = _object(body, "container")
    channel = _object(body, "channel")
    message = _object(body, "message")
    return (
        str(container.get("channel_id") or channel.get("id") or ""),
        str(container.get("message_ts") or message.get("ts") or ""),
    )


def form_metadata(view: dict[str, Any]) -> dict[str, str] | None:
    """The private metadata the bot put on a form; None if it is not one of ours."""
    try:
        meta = json.loads(view.get("private_metadata") or "")
    except (TypeError, ValueError):
        return None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        return None
    return meta


def of_service(view: dict[str, Any], service: str) -> dict[str, Any]:
    """`view` with the service it is for in its metadata: a form's submission carries no
    channel, so a bot of several services routes it by this (bot.runtime.fleet)."""
    meta = json.loads(view.get("private_metadata") or "{}")
    return {**view, "private_metadata": json.dumps({**meta, "s": service})}
