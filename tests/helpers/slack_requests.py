"""Slack's requests as the tests send them: the shared builders (bot/devtools/payloads.py)
with the tests' workspace, channel and people."""

from __future__ import annotations

from typing import Any, Protocol

from bot.devtools import payloads
from bot.devtools.payloads import interaction_body

__all__ = ["WORKSPACE", "click_payload", "command_body", "form_payload", "interaction_body"]

WORKSPACE = payloads.Workspace(
    team_id="T0TEST", team_domain="acme", app_id="A0TEST", token="legacy"
)
CHANNEL_ID, CHANNEL_NAME = "C0DEV", "dev"


class Shown(Protocol):
    """A message as a click carries it: the stand-in's Message, or a copy a test made."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]


def command_body(
    text: str,
    response_url: str,
    *,
    command: str = "/release",
    user: str = "U0ALICE",
    user_name: str = "alice",
    trigger_id: str | None = None,
    channel: tuple[str, str] = (CHANNEL_ID, CHANNEL_NAME),
) -> str:
    """The form body of `/release text` (or another `command`) typed in #dev (or in
    `channel`: its id and name)."""
    return payloads.form_body(
        payloads.slash_command(
            WORKSPACE,
            payloads.Person(user, user_name),
            command=command,
            text=text,
            channel_id=channel[0],
            channel_name=channel[1],
            response_url=response_url,
            trigger=trigger_id,
        )
    )


def click_payload(
    message: Shown,
    block: dict[str, Any],
    element: dict[str, Any],
    response_url: str,
    *,
    user: str = "U0BOB",
    user_name: str = "bob",
    channel_name: str = "releases",
) -> dict[str, Any]:
    """A press of `element` (in `block`) of `message`, in its channel (`channel_name`)."""
    shown = {"ts": message.ts, "text": message.text, "blocks": message.blocks}
    return payloads.block_actions(
        WORKSPACE,
        payloads.Person(user, user_name),
        channel_id=message.channel,
        channel_name=channel_name,
        message=shown,
        block_id=block.get("block_id"),
        action=element,
        response_url=response_url,
    )


def form_payload(
    view: dict[str, Any], values: dict[str, str], *, user: str = "U0BOB", user_name: str = "bob"
) -> dict[str, Any]:
    """`view` sent with `values` (block id -> what was typed)."""
    return payloads.view_submission(
        WORKSPACE, payloads.Person(user, user_name), view=view, values=values, view_id="V0TEST"
    )
