"""Approving and rejecting from the release message, through the real bot and signed clicks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.helpers.messages import thread_text
from tests.helpers.steps import message_of, staged


async def answer_to(bot, user: str, fragment: str) -> str:
    calls = await bot.slack.wait_for(
        lambda: [
            c
            for c in bot.slack.calls_to("response_url")
            if c.params.get("_id", "").startswith(user) and fragment in bot.slack.text_of(c.params)
        ]
    )
    return bot.slack.text_of(calls[-1].params)


async def test_approvals_are_recorded_shown_and_counted(start_bot, git_remote, tmp_path: Path):
    bot = await staged(start_bot, git_remote, tmp_path)
    status, _ = await bot.click(message_of(bot), "gate_approve", gate="qa")
    assert status == 200
    assert "You approved Manual QA" in await answer_to(bot, "U0BOB", "approved")
    text = await bot.slack.wait_for(
        lambda: (
            "approved by <@U0BOB>" in bot.slack.text_of(message_of(bot))
            and bot.slack.text_of(message_of(bot))
        )
    )
    assert "needs 1 more approval from <@U0BOB> or <@U0CAROL> or <!subteam^S0RELMGR>" in text
    assert "approved *Manual QA*" in thread_text(bot.slack, message_of(bot))

    # dave approves through the user group; two distinct approvers: ready.
    await bot.click(message_of(bot), "gate_approve", gate="sec", user="U0DAVE", user_name="dave")
    text = await bot.slack.wait_for(
        lambda: (
            "Ready for production" in bot.slack.text_of(message_of(bot))
            and bot.slack.text_of(message_of(bot))
        )
    )
    assert "approved by <@U0DAVE>" in text
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert [(g.id, [a.user_id for a in g.approvals]) for g in release.gates if not g.automatic] == [
        ("qa", ["U0BOB"]),
        ("sec", ["U0DAVE"]),
    ]
    entries = [
        (e["user_id"], e["action"], e["outcome"], e["environment"])
        for e in await bot.services.store.audit_entries("0.15.0-rc.1")
        if e["action"] == "gate.approve"
    ]
    assert entries == [
        ("U0BOB", "gate.approve", "ok", "production"),
        ("U0DAVE", "gate.approve", "ok", "production"),
    ]
    # The group was asked once and then cached.
    assert len(bot.slack.calls_to("usergroups.users.list")) == 1


async def test_refusals_are_private_audited_and_change_nothing(
    start_bot, git_remote, tmp_path: Path
):
    bot = await staged(start_bot, git_remote, tmp_path)
    await bot.click(message_of(bot), "gate_approve", gate="qa", user="U0ALICE", user_name="alice")
    assert "nobody approves their own release" in await answer_to(bot, "U0ALICE", "cannot")
    await bot.click(message_of(bot), "gate_approve", gate="qa", user="U0EVE", user_name="eve")
    assert "not one of the approvers" in await answer_to(bot, "U0EVE", "cannot")
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert all(not g.approvals for g in release.gates)
    refused = [
        (e["user_id"], e["outcome"])
        for e in await bot.services.store.audit_entries("0.15.0-rc.1")
        if e["action"] == "gate.approve"
    ]
    assert refused == [("U0ALICE", "refused"), ("U0EVE", "refused")]


async def test_the_same_click_fifty_times_at_once_is_one_approval(
    start_bot, git_remote, tmp_path: Path
):
    bot = await staged(start_bot, git_remote, tmp_path)
    message = message_of(bot)
    results = await asyncio.gather(
        *(bot.click(message, "gate_approve", gate="qa") for _ in range(50))
    )
    assert all(status == 200 for status, _ in results)
    await bot.slack.wait_for(
        lambda: (
            len(
                [
                    e
                    for e in bot.slack.calls_to("response_url")
                    if e.params.get("_id", "").startswith("U0BOB")
                ]
            )
            == 50
        ),
        timeout=30,
    )
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert [a.user_id for a in release.gate("qa").approvals] == ["U0BOB"]
    outcomes = [
        e["outcome"]
        for e in await bot.services.store.audit_entries("0.15.0-rc.1")
        if e["action"] == "gate.approve"
    ]
    assert outcomes.count("ok") == 1 and outcomes.count("duplicate") == 49


async def test_reject_asks_for_a_reason_and_stops_the_candidate(
    start_bot, git_remote, tmp_path: Path
):
    bot = await staged(start_bot, git_remote, tmp_path)
    await bot.click(message_of(bot), "gate_reject", gate="qa")
    opened = await bot.slack.wait_for(lambda: bot.slack.calls_to("views.open"))
    view = opened[0].params["view"]
    # The form carries only its ticket (bound to this click) and its service (a form's
    # submission has no channel to route it by); it is about QA.
    meta = json.loads(view["private_metadata"])
    assert set(meta) == {"t", "s"} and meta["s"] == bot.services.config.service
    assert "Reject *Manual QA*" in bot.slack.text_of(view["blocks"])

    status, body = await bot.submit_view(view, {"reason": " "})
    assert status == 200 and json.loads(body)["response_action"] == "errors"
    assert (await bot.services.store.get_release("0.15.0-rc.1")).gate("qa").rejection is None

    status, _ = await bot.submit_view(view, {"reason": "checkout button broken on iOS"})
    assert status == 200
    text = await bot.slack.wait_for(
        lambda: (
            "rejected by <@U0BOB>" in bot.slack.text_of(message_of(bot))
            and bot.slack.text_of(message_of(bot))
        )
    )
    assert "checkout button broken on iOS" in text
    assert "Ready for production" not in text
    assert "rejected *Manual QA*: checkout button broken on iOS" in thread_text(
        bot.slack, message_of(bot)
    )
    # Approving a rejected gate is refused.
    await bot.click(message_of(bot), "gate_approve", gate="sec", user="U0CAROL", user_name="carol")
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release.gate("qa").status == "failed"
    entry = [
        e
        for e in await bot.services.store.audit_entries("0.15.0-rc.1")
        if e["action"] == "gate.reject"
    ]
    assert entry[0]["outcome"] == "rejected" and "iOS" in entry[0]["reason"]
    # The click that opened the form is on the release's trail too, before the rejection.
    actions = [
        (e["user_id"], e["action"], e["outcome"])
        for e in await bot.services.store.audit_entries("0.15.0-rc.1")
        if e["action"] in ("reject.form", "gate.reject")
    ]
    assert actions == [
        ("U0BOB", "reject.form", "opened"),
        ("U0BOB", "gate.reject", "rejected"),
    ]


async def test_someone_who_may_not_decide_gets_no_reject_form(
    start_bot, git_remote, tmp_path: Path
):
    bot = await staged(start_bot, git_remote, tmp_path)
    await bot.click(message_of(bot), "gate_reject", gate="qa", user="U0EVE", user_name="eve")
    assert "not one of the approvers" in await answer_to(bot, "U0EVE", "cannot")
    assert bot.slack.calls_to("views.open") == []


async def test_when_slack_cannot_say_who_is_in_a_group_nothing_is_approved_and_they_hear_why(
    start_bot, git_remote, tmp_path: Path
):
    """Each way usergroups.users.list fails (an `ok: false`, an HTML error page; no answer
    in tests/adapters/test_user_directory.py) is answered, audited as refused and approves
    nothing; once Slack answers, the click goes,
    and the cached answer then serves through the next error."""
    bot = await staged(start_bot, git_remote, tmp_path)
    lookups = "usergroups.users.list"
    faults = [
        (
            lambda: bot.slack.error_next(lookups, "internal_error"),
            "Slack answered `internal_error`",
        ),
        (lambda: bot.slack.fail_next(lookups, status=404, html=True), "Slack answered HTTP 404"),
    ]
    for inject, why in faults:
        inject()
        await bot.click(message_of(bot), "gate_approve", gate="sec", user="U0DAVE")
        answer = await bot.slack.wait_for(
            lambda why=why: [
                bot.slack.text_of(c.params)
                for c in bot.slack.calls_to("response_url")
                if why in bot.slack.text_of(c.params)
            ],
            timeout=15,
        )
        assert "could not check whether you are in the approver group `S0RELMGR`" in answer[0]
        assert "nothing was approved; try again in a minute" in answer[0]
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert all(not g.approvals for g in release.gates if not g.automatic)
    refused = [
        e["reason"]
        for e in await bot.services.store.audit_entries("0.15.0-rc.1")
        if e["action"] == "gate.approve" and e["user_id"] == "U0DAVE"
    ]
    assert len(refused) == 2 and all("could not check" in r for r in refused), refused

    await bot.click(message_of(bot), "gate_approve", gate="sec", user="U0DAVE")
    assert "You approved Security scan" in await answer_to(bot, "U0DAVE", "You approved")
    asked = len(bot.slack.calls_to(lookups))
    bot.slack.error_next(lookups, "internal_error")  # within the cache's time: not asked
    await bot.click(message_of(bot), "gate_approve", gate="qa", user="U0DAVE")
    assert "You approved Manual QA" in await answer_to(bot, "U0DAVE", "You approved Manual")
    assert len(bot.slack.calls_to(lookups)) == asked
