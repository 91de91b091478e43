"""The request builders that the shell, the ack benchmark and the tests share."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

from slack_sdk.signature import SignatureVerifier

from bot.devtools import payloads

WORKSPACE = payloads.Workspace(team_id="T0X", team_domain="x", app_id="A0X", token="legacy")
BOB = payloads.Person("U0BOB", "bob")
REASON_FORM = {
    "type": "modal",
    "callback_id": "reject",
    "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": "Why?"}},
        {
            "type": "input",
            "block_id": "why",
            "element": {"type": "plain_text_input", "action_id": "reason_text"},
        },
    ],
}


def test_signed_headers_verify_as_slack_signed_ones_and_only_for_their_body():
    body = payloads.form_body({"command": "/release", "text": "rc --description café"})
    headers = payloads.signed_headers(body, "s3cret")
    verifier = SignatureVerifier("s3cret")
    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + "&x=1", headers)
    assert not SignatureVerifier("other").is_valid_request(body, headers)
    stale = payloads.signed_headers(body, "s3cret", timestamp=int(time.time()) - 301)
    assert not verifier.is_valid_request(body, stale)
    assert headers["Content-Type"] == payloads.FORM


def test_a_slash_command_form_carries_who_where_and_a_fresh_trigger():
    fields = payloads.slash_command(
        WORKSPACE,
        BOB,
        command="/flag",
        text="list",
        channel_id="C0DEV",
        channel_name="dev",
        response_url="http://127.0.0.1:1/r/U0BOB",
    )
    again = payloads.slash_command(
        WORKSPACE,
        BOB,
        command="/flag",
        text="list",
        channel_id="C0DEV",
        channel_name="dev",
        response_url="http://127.0.0.1:1/r/U0BOB",
    )
    assert fields["trigger_id"] != again["trigger_id"]
    sent = {k: v[0] for k, v in parse_qs(payloads.form_body(fields)).items()}
    assert sent == fields
    assert (sent["user_id"], sent["user_name"], sent["team_id"], sent["command"]) == (
        "U0BOB",
        "bob",
        "T0X",
        "/flag",
    )


def test_a_button_press_names_the_message_and_the_pressed_element():
    button = {"type": "button", "action_id": "gate_approve", "value": '{"g": "qa"}'}
    message = {
        "ts": "1.000100",
        "text": "v1",
        "blocks": [{"type": "actions", "block_id": "b1", "elements": [button]}],
    }
    payload = payloads.block_actions(
        WORKSPACE,
        BOB,
        channel_id="C0R",
        channel_name="releases",
        message=message,
        block_id="b1",
        action=button,
        response_url="http://127.0.0.1:1/r",
    )
    body = payloads.interaction_body(payload)
    assert json.loads(parse_qs(body)["payload"][0]) == payload
    [action] = payload["actions"]
    assert action["action_id"] == "gate_approve" and action["block_id"] == "b1"
    assert float(action["action_ts"]) > 0
    assert payload["container"]["message_ts"] == "1.000100"
    assert payload["message"]["blocks"] == message["blocks"]
    assert payload["user"]["id"] == "U0BOB"


def test_a_form_puts_what_was_typed_under_its_element():
    payload = payloads.view_submission(
        WORKSPACE, BOB, view=REASON_FORM, values={"why": "broken"}, view_id="V1"
    )
    assert payload["view"]["state"]["values"] == {
        "why": {"reason_text": {"type": "plain_text_input", "value": "broken"}}
    }
    assert payload["view"]["callback_id"] == "reject" and payload["view"]["id"] == "V1"
    # A box the form does not have (a forged form) is keyed by its block id.
    assert payloads.form_state(REASON_FORM, {"reason": "x"}) == {
        "reason": {"reason": {"type": "plain_text_input", "value": "x"}}
    }
