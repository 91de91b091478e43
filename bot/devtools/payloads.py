"""What Slack sends to an app's request URL, built from plain values: slash command forms,
block_actions and view_submission payloads, and the headers that sign them.

`releasebot shell`, the ack benchmark and the tests all speak to the bot as Slack would; they
build their requests here so that the three send the same shapes, and a change to what Slack
sends is made once. Pure: nothing here does I/O (time and randomness only name requests).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Workspace:
    """Where the requests come from, as Slack names it in every payload."""

    team_id: str
    team_domain: str
    app_id: str
    token: str  # the legacy verification token, which Slack still sends in every payload


@dataclass(frozen=True)
class Person:
    """Who typed the command, pressed the button or sent the form."""

    id: str
    name: str


def trigger_id() -> str:
    """A fresh trigger id: Slack's are unique per interaction, and the bot opens forms with
    them."""
    return f"{secrets.randbits(48)}.{time.time_ns()}"


def slash_command(
    workspace: Workspace,
    person: Person,
    *,
    command: str,
    text: str,
    channel_id: str,
    channel_name: str,
    response_url: str,
    trigger: str | None = None,
) -> dict[str, str]:
    """The fields of a slash command, as Slack posts them (a form) or sends them over Socket
    Mode (an envelope's payload)."""
    return {
        "token": workspace.token,
        "team_id": workspace.team_id,
        "team_domain": workspace.team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": person.id,
        "user_name": person.name,
        "command": command,
        "text": text,
        "api_app_id": workspace.app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger or trigger_id(),
    }


def _user(workspace: Workspace, person: Person) -> dict[str, str]:
    return {
        "id": person.id,
        "username": person.name,
        "name": person.name,
        "team_id": workspace.team_id,
    }


def block_actions(
    workspace: Workspace,
    person: Person,
    *,
    channel_id: str,
    channel_name: str,
    message: Mapping[str, Any],
    block_id: str | None,
    action: Mapping[str, Any],
    response_url: str,
) -> dict[str, Any]:
    """A button press on a message: `message` is the message as the person's screen shows it
    (`ts`, `text`, `blocks`), `action` the pressed element as it is in those blocks."""
    return {
        "type": "block_actions",
        "api_app_id": workspace.app_id,
        "token": workspace.token,
        "team": {"id": workspace.team_id, "domain": workspace.team_domain},
        "user": _user(workspace, person),
        "container": {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "channel": {"id": channel_id, "name": channel_name},
        "message": {
            "ts": message["ts"],
            "text": message.get("text", ""),
            "blocks": message.get("blocks", []),
        },
        "trigger_id": trigger_id(),
        "response_url": response_url,
        "actions": [{**action, "block_id": block_id, "action_ts": f"{time.time():.6f}"}],
    }


def form_state(view: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """`state.values` of a submitted form: `values` maps an input block's id to what was typed.
    Each value goes under its block's element (its action id and type) as Slack puts it; a
    block the view does not have (a forged form) is keyed by its block id alone."""
    elements = {
        block.get("block_id"): block.get("element") or {}
        for block in view.get("blocks", [])
        if block.get("type") == "input"
    }
    state: dict[str, Any] = {}
    for block_id, value in values.items():
        element = elements.get(block_id, {})
        state[block_id] = {
            str(element.get("action_id", block_id)): {
                "type": str(element.get("type", "plain_text_input")),
                "value": value,
            }
        }
    return state


def view_submission(
    workspace: Workspace,
    person: Person,
    *,
    view: Mapping[str, Any],
    values: Mapping[str, str],
    view_id: str,
) -> dict[str, Any]:
    """A form (modal) sent: the view as it was opened, with what was typed in it."""
    return {
        "type": "view_submission",
        "api_app_id": workspace.app_id,
        "token": workspace.token,
        "team": {"id": workspace.team_id, "domain": workspace.team_domain},
        "user": _user(workspace, person),
        "trigger_id": trigger_id(),
        "view": {**view, "id": view_id, "state": {"values": form_state(view, values)}},
    }


def form_body(fields: Mapping[str, str]) -> str:
    """A slash command's request body."""
    return urlencode(fields)


def interaction_body(payload: Mapping[str, Any]) -> str:
    """An interaction's request body: the payload as JSON in one form field."""
    return urlencode({"payload": json.dumps(payload)})


def signed_headers(
    body: str | bytes, secret: str, *, timestamp: int | None = None, content_type: str = FORM
) -> dict[str, str]:
    """The headers Slack signs a request with. The signature is slack_sdk's own, so a request
    built here is signed exactly as Slack signs it (`timestamp` defaults to now)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    if signature is None:  # slack_sdk gives none only without a timestamp, which we always pass
        raise ValueError("slack_sdk did not sign the request")
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
        "Content-Type": content_type,
    }
