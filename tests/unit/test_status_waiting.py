"""What `/release status` says of the rollbacks and flag changes waiting for approvals: who
asked, why and how many more approvals each needs, people's text shown as text, and at most
ten of each kind, so that a flood of requests never makes a message Slack refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.devtools.slack_stand_in import validate_blocks
from bot.domain.actors import Actor
from bot.domain.approval_policy import Approval
from bot.domain.config import parse_config
from bot.domain.flag_requests import new_request
from bot.domain.windows import Freeze
from bot.services.ports import Status
from bot.services.show_status import render_status
from tests.helpers.rollbacks import rollback_request

CONFIG = parse_config(
    {
        "repository": {"url": "/tmp/repo.git"},
        "slack": {"channel": "#releases"},
        "environments": [
            {"name": "staging", "deploy_command": "true"},
            {"name": "production", "deploy_command": "true"},
        ],
        "rollback": {"required": 2},
        "flags": {"required": 2},
    }
)


def rollback(request_id: str, environment: str = "production", reason: str = "errors"):
    return rollback_request(
        request_id,
        environment=environment,
        from_release="",
        from_tag="v0.9.0",
        reason=reason,
        requested_at=1_800_000_000.0,
        approvals=[Approval("U0BOB", "bob", 1_800_000_100.0)],
        channel="C0RELEASE",
        message_ts="1800000000.000100",
    )


def shown(status: Status) -> str:
    blocks = render_status(status, CONFIG)
    assert validate_blocks(blocks) == []
    return "\n".join(b["text"]["text"] for b in blocks if b.get("type") == "section")


def test_each_waiting_request_says_who_asked_why_and_what_it_needs():
    flag = new_request(Actor("U0CAROL", "carol", "C0DEV"), "enable", "new_search", 1.8e9)
    flag.description = "<!channel> for the launch"
    flag.ts = "1800000000.000200"
    text = shown(
        Status(
            {},
            [],
            {},
            waiting_rollbacks=[rollback("r1", reason="<!channel> checkout *errors*")],
            waiting_flag_requests=[flag],
        )
    )
    assert "*Waiting for approvals*" in text
    assert "⏪ *production* back to `v0.8.0` from `v0.9.0`, asked by <@U0ALICE>" in text
    assert "&lt;!channel&gt; checkout" in text and "<!channel>" not in text  # shown as text
    assert "— needs 1 more approval" in text  # two asked for, bob's counted
    assert "🚩 enable new_search, asked by <@U0CAROL>" in text
    assert "— needs 2 more approvals" in text


def test_only_what_a_click_can_still_decide_is_listed():
    unposted = rollback("r2")
    unposted.message_ts = ""  # its message was never posted: no button to click
    asked = new_request(Actor("U0CAROL", "carol", "C0DEV"), "enable", "new_search", 1.8e9)
    asked.ts = "1800000000.000200"
    text = shown(
        Status(
            {},
            [],
            {},
            waiting_rollbacks=[unposted, rollback("r3", environment="qa")],  # qa: removed
            waiting_flag_requests=[asked],
            flag_kills={"new_search": 1.8e9 + 60},  # turned off after it was asked: voided
        )
    )
    assert "Waiting for approvals" not in text
    later = shown(
        Status({}, [], {}, waiting_flag_requests=[asked], flag_kills={"new_search": 1.8e9 - 60})
    )
    assert "🚩 enable new_search" in later  # killed before it was asked: it still waits


def test_nothing_waiting_shows_no_such_section():
    assert "Waiting for approvals" not in shown(Status({}, [], {}))


def test_a_flood_of_requests_is_cut_to_ten_of_each_kind():
    many = [rollback(f"r{n}", reason="x" * 500) for n in range(200)]
    text = shown(Status({}, [], {}, waiting_rollbacks=many))
    assert text.count("⏪ *production* back to") == 10
    assert "…and 190 more rollbacks" in text
    assert "…and 1 more rollback\n" in shown(Status({}, [], {}, waiting_rollbacks=many[:11])) + "\n"


def test_text_that_escaping_lengthens_never_makes_a_message_slack_refuses():
    # "&" is shown as "&amp;": a reason of 500 fills a section of its own. Freezes are not
    # cut to ten (each one holds), so sixty of them overflow the message's 50 blocks.
    start = datetime(2026, 12, 1, tzinfo=UTC)
    freezes = {
        "production": [
            Freeze(start, start + timedelta(days=30 + n), "&" * 500, "U0ALICE") for n in range(60)
        ]
    }
    many = [rollback(f"r{n}", reason="&" * 500) for n in range(200)]
    blocks = render_status(Status({}, [], {}, waiting_rollbacks=many), CONFIG, freezes)
    assert validate_blocks(blocks) == [] and len(blocks) == 50
    assert "more parts left out: too long" in blocks[-1]["elements"][0]["text"]


def test_a_rollback_with_all_its_approvals_says_it_has_not_started():
    request = rollback("r1")
    request.approvals.append(Approval("U0CAROL", "carol", 1_800_000_200.0))
    assert "approved, not started yet" in shown(Status({}, [], {}, waiting_rollbacks=[request]))
