"""/flag end to end: a real repository with a real flags file (comments and all), real pushes
(also racing ones), the flag deploy, the site's /flags, approvals, and ramps driven by the
scheduler and paused by a failing health endpoint."""

from __future__ import annotations

import copy
import json
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.domain.actors import Actor
from bot.domain.flag_requests import new_request
from bot.domain.flags import read_flags
from bot.domain.windows import Freeze
from bot.services import change_flags
from tests.helpers.config import make_config
from tests.helpers.flags import FLAGS, FLAGS_PATH, old_flag_request, push_flags
from tests.helpers.messages import wait_for_gates
from tests.helpers.repos import GitRemote, git
from tests.helpers.signing import sign
from tests.helpers.sites import LocalSite


def remote_flags(remote: GitRemote) -> str:
    return git("show", f"main:{FLAGS_PATH}", cwd=remote.bare) + "\n"


class FlagSite(LocalSite):
    """Production as the tests see it: /flags from the file the last flag deploy put live,
    /health that the tests can break."""

    def __init__(self, live: Path) -> None:
        super().__init__()
        self.live = live
        self.health = 200

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/flags", self._flags)
        app.router.add_get("/health", self._health)

    async def _flags(self, request: web.Request) -> web.Response:
        text = self.live.read_text() if self.live.exists() else ""
        return web.json_response({"flags": tomllib.loads(text).get("flags", {})})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "UP"}, status=self.health)


@pytest.fixture
async def site(tmp_path: Path):
    async with FlagSite(tmp_path / "live-flags.toml") as running:
        yield running


def flag_config(
    remote: GitRemote, tmp_path: Path, site: FlagSite, *, required: int = 1, extra: str = ""
) -> Any:
    push_flags(remote, FLAGS)
    return make_config(
        remote,
        tmp_path,
        production_url=site.url,
        extra=f"""
[flags]
deploy_command = "cp {FLAGS_PATH} {site.live}"
verify_seconds = 5
required = {required}
{extra}""",
    )


def headline(message: Any) -> str:
    """The first line of a flag message: what, and its status."""
    return message.blocks[0]["text"]["text"].split("\n")[0] if message.blocks else ""


def flag_message(slack: Any, words: str) -> Any:
    return next(
        (
            m
            for m in slack.messages().values()
            if m.thread_ts is None and headline(m).startswith(f"🚩 *{words}*")
        ),
        None,
    )


async def wait_status(slack: Any, words: str, status: str, timeout: float = 20) -> Any:
    def done() -> Any:
        message = flag_message(slack, words)
        return (
            message
            if (message and f"· {status}" in slack.text_of(message))
            or (message and status in slack.text_of(message).split("\n")[0])
            else None
        )

    return await slack.wait_for(done, timeout=timeout)


def thread(slack: Any, message: Any) -> str:
    return "\n".join(slack.text_of(m) for m in slack.thread(message.ts))


async def test_a_flag_change_is_committed_deployed_and_verified(
    start_bot, git_remote, tmp_path: Path, site: FlagSite
):
    bot = await start_bot(flag_config(git_remote, tmp_path, site))
    slack = bot.slack
    listing = await flag_list(bot)
    assert "`new_search` — on, 50%" in listing and "`new_infrastructure` — off, 0%" in listing

    ack = slack.text_of(await flag(bot, 'create dark_mode --description "Dark mode"'))
    assert "On it: create dark_mode" in ack
    message = await wait_status(slack, "create dark_mode", "done")
    text = remote_flags(git_remote)
    assert text.startswith(FLAGS)  # comments, order and the other flags as they were
    assert read_flags(text)["dark_mode"].summary == "off, 0%"
    log = git("log", "-1", "--format=%an <%ae>%n%B", "main", cwd=git_remote.bare)
    assert log.startswith("alice <U0ALICE@slack.invalid>")
    assert "Flag dark_mode: create dark_mode" in log and "by alice (U0ALICE)" in log
    assert "dark_mode" in site.live.read_text()  # the flag deploy put it live
    details = await slack.wait_for(
        lambda: (t := thread(slack, message)) and "/flags reports `dark_mode` off, 0%" in t and t
    )
    assert "Committed" in details

    # Lowering needs no approval; the site reports the new percentage.
    await flag(bot, "set new_search 20")
    message = await wait_status(slack, "set new_search to 20%", "done")
    # Thread lines go through the channel's outbox, paced: they may follow the status.
    await slack.wait_for(lambda: "/flags reports `new_search` on, 20%" in thread(slack, message))
    assert read_flags(remote_flags(git_remote))["new_search"].rollout_percentage == 20
    actions = [(e["action"], e["outcome"]) for e in await bot.services.store.audit_entries()]
    assert ("flag.commit", "ok") in actions and ("flag.deploy", "succeeded") in actions


async def flag(bot: Any, text: str, **kwargs: Any) -> dict[str, Any]:
    body = bot.command_body(text, command="/flag", **kwargs)
    status, data = await bot.post(body, sign(body))
    assert status == 200, (status, data)
    return data


async def flag_list(bot: Any) -> str:
    before = len(bot.slack.calls_to("response_url"))
    await flag(bot, "list")
    await bot.slack.wait_for(lambda: len(bot.slack.calls_to("response_url")) > before)
    return bot.slack.text_of(bot.slack.calls_to("response_url")[-1])


async def test_raising_exposure_needs_approval_the_kill_switch_does_not(
    start_bot, git_remote, tmp_path: Path, site: FlagSite
):
    bot = await start_bot(flag_config(git_remote, tmp_path, site))
    slack = bot.slack
    await flag(bot, "set new_search 80")
    message = await wait_status(slack, "set new_search to 80%", "awaiting approval")
    head = git("rev-parse", "main", cwd=git_remote.bare)
    status, _ = await bot.click(message, "flag_approve", user="U0ALICE", user_name="alice")
    assert status == 200
    await slack.wait_for(
        lambda: "someone else has to approve" in slack.text_of(slack.calls_to("response_url")[-1])
    )
    assert git("rev-parse", "main", cwd=git_remote.bare) == head  # nothing changed yet
    await bot.click(message, "flag_approve", user="U0BOB", user_name="bob")
    done = await wait_status(slack, "set new_search to 80%", "done")
    assert "Approved by <@U0BOB>" in slack.text_of(done)
    assert read_flags(remote_flags(git_remote))["new_search"].rollout_percentage == 80
    assert "Approved-by: <U0BOB>" in git("log", "-1", "--format=%B", "main", cwd=git_remote.bare)

    # The kill switch: no approval, straight out.
    await flag(bot, "disable new_search")
    await wait_status(slack, "disable new_search", "done")
    assert read_flags(remote_flags(git_remote))["new_search"].enabled is False
    assert (
        "new_search" in site.live.read_text()
        and "enabled = false" in site.live.read_text().split("[flags.new_search]")[1]
    )


async def test_a_lost_push_race_is_retried_but_the_same_flag_is_never_overwritten(
    start_bot, git_remote, tmp_path: Path, site: FlagSite
):
    bot = await start_bot(flag_config(git_remote, tmp_path, site), role="web")
    services = bot.services
    actor = Actor("U0ALICE", "alice", "C0DEV")
    stale = await change_flags.read_current(services)
    # Someone else pushes first, changing another flag: ours goes on top of theirs.
    push_flags(git_remote, FLAGS.replace("Search v2", "Search, second edition"), "theirs")
    request = new_request(actor, "enable", "new_infrastructure", 0.0)
    sha, _ = await change_flags.commit_change(services, request, actor, based_on=stale)
    text = remote_flags(git_remote)
    assert "Search, second edition" in text and read_flags(text)["new_infrastructure"].enabled
    assert git("rev-parse", "main", cwd=git_remote.bare) == sha
    assert git("rev-parse", "main~1", cwd=git_remote.bare) == git_remote.head()

    # Someone else pushes first, changing the same flag: theirs stands, ours is a conflict.
    stale = await change_flags.read_current(services)
    git("pull", "-q", "origin", "main", cwd=git_remote.work)
    theirs = push_flags(
        git_remote,
        remote_flags(git_remote).replace("rollout_percentage = 50", "rollout_percentage = 5"),
        "theirs, same flag",
    )
    request = new_request(actor, "set", "new_search", 0.0, percentage=90)
    with pytest.raises(change_flags.Conflict, match="someone changed `new_search` meanwhile"):
        await change_flags.commit_change(services, request, actor, based_on=stale)
    assert git("rev-parse", "main", cwd=git_remote.bare) == theirs


async def test_bad_flag_input_gets_an_answer_and_the_file_is_untouched(
    start_bot, git_remote, tmp_path: Path, site: FlagSite
):
    bot = await start_bot(flag_config(git_remote, tmp_path, site))
    slack = bot.slack
    head = git("rev-parse", "main", cwd=git_remote.bare)
    assert "`150` is not a percentage" in slack.text_of(await flag(bot, "set new_search 150"))
    assert "only goes up" in slack.text_of(await flag(bot, "ramp new_search 50,20 --every 1h"))

    async def private_answer(text: str) -> str:
        before = len(slack.calls_to("response_url"))
        await flag(bot, text)
        await slack.wait_for(lambda: len(slack.calls_to("response_url")) > before, timeout=20)
        return slack.text_of(slack.calls_to("response_url")[-1])

    assert "no flag `new_serch`" in await private_answer("enable new_serch")
    assert "at 50% already" in await private_answer("ramp new_search 10,50 --every 1h")
    assert git("rev-parse", "main", cwd=git_remote.bare) == head
    broken = push_flags(git_remote, "[flags.new_search\nenabled = true\n", "oops")
    answer = await private_answer("disable new_search")
    assert "not valid TOML" in answer and "I changed nothing" in answer
    assert git("rev-parse", "main", cwd=git_remote.bare) == broken
    refused = [
        e
        for e in await bot.services.store.audit_entries()
        if e["action"].startswith("flag.") and e["outcome"] == "refused"
    ]
    assert len(refused) == 3


async def test_a_ramp_steps_up_pauses_on_a_critical_alert_and_finishes(
    start_bot, git_remote, tmp_path: Path, site: FlagSite
):
    extra = f"""
[monitoring]
tick_seconds = 0.1
failures_to_alert = 2
successes_to_resolve = 1

[[environments.checks]]
name = "health"
url = "{site.url}/health"
interval_seconds = 0.2
"""
    bot = await start_bot(flag_config(git_remote, tmp_path, site, required=0, extra=extra))
    slack = bot.slack
    site.health = 503  # production is failing before the ramp even starts
    await slack.wait_for(
        lambda: any(
            "CRITICAL · production · health" in slack.text_of(m) for m in slack.messages().values()
        ),
        timeout=15,
    )
    await flag(bot, "ramp new_infrastructure 10,50,100 --every 1s")
    words = "ramp new_infrastructure 10%, 50%, 100%, every 1s"
    message = await slack.wait_for(lambda: flag_message(slack, words), timeout=20)
    await slack.wait_for(lambda: "Ramp paused before 10%" in thread(slack, message), timeout=15)
    assert read_flags(remote_flags(git_remote))["new_infrastructure"].summary == "off, 0%"
    site.health = 200  # resolved: the ramp goes on, step by step
    await slack.wait_for(lambda: "Ramp finished" in thread(slack, message), timeout=40)
    steps = thread(slack, message)
    assert (
        steps.index("off, 0% → on, 10%")
        < steps.index("on, 10% → on, 50%")
        < steps.index("on, 50% → on, 100%")
    )
    assert "the ramp goes on" in steps
    assert read_flags(remote_flags(git_remote))["new_infrastructure"].summary == "on, 100%"
    assert "rollout_percentage = 100" in site.live.read_text()


async def test_the_feature_flags_ready_gate(start_bot, git_remote, tmp_path: Path, site: FlagSite):
    gate = """
[[gates]]
id = "flags"
name = "Feature flags ready"
stage = "staging"
check = "flags-ready"
"""
    push_flags(git_remote, FLAGS + "\n[flags.dark_mode]\nenabled = true\nrollout_percentage = 5\n")
    bot = await start_bot(make_config(git_remote, tmp_path, extra=gate))
    await bot.command("rc --description flags")
    message = await wait_for_gates(bot.slack, "v0.15.0-rc.1", count=3)
    text = bot.slack.text_of(message)
    assert "Feature flags ready — failed" in text
    await bot.services.chat.sender.settled()  # thread replies are sent after, paced
    details = "\n".join(bot.slack.text_of(m) for m in bot.slack.thread(message.ts))
    assert "`dark_mode` is new and starts on, 5%" in details
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release.gate("flags").status == "failed"


async def test_a_ramp_stops_on_request_or_when_someone_changes_the_flag_by_hand(
    start_bot, git_remote, tmp_path: Path, site: FlagSite
):
    extra = "\n[monitoring]\ntick_seconds = 0.1\n"
    bot = await start_bot(flag_config(git_remote, tmp_path, site, required=0, extra=extra))
    slack = bot.slack
    assert "`new_search` has no ramp going" in slack.text_of(
        await flag(bot, "ramp new_search --stop")
    )
    await flag(bot, "ramp new_search 60,70,80 --every 1h")
    words = "ramp new_search 60%, 70%, 80%, every 1h"
    message = await slack.wait_for(lambda: flag_message(slack, words), timeout=20)
    await slack.wait_for(lambda: "Next: 60% → *70%*" in thread(slack, message), timeout=20)
    answer = slack.text_of(await flag(bot, "ramp new_search --stop", user="U0BOB", user_name="bob"))
    assert "Stopped the ramp of `new_search`" in answer
    await slack.wait_for(lambda: "<@U0BOB> stopped the ramp" in thread(slack, message))
    assert read_flags(remote_flags(git_remote))["new_search"].rollout_percentage == 60

    # A second ramp; someone lowers the flag by hand before its second step: it stops.
    await flag(bot, "ramp new_search 65,90 --every 2s")
    words = "ramp new_search 65%, 90%, every 2s"
    message = await slack.wait_for(lambda: flag_message(slack, words), timeout=20)
    await slack.wait_for(lambda: "Next: 65% → *90%*" in thread(slack, message), timeout=20)
    git("pull", "-q", "origin", "main", cwd=git_remote.work)
    push_flags(
        git_remote,
        remote_flags(git_remote).replace("rollout_percentage = 65", "rollout_percentage = 30"),
        "by hand",
    )
    await slack.wait_for(
        lambda: "Ramp stopped: `new_search` was changed by hand" in thread(slack, message),
        timeout=20,
    )
    assert read_flags(remote_flags(git_remote))["new_search"].rollout_percentage == 30
    stops = [e["action"] for e in await bot.services.store.audit_entries()]
    assert "flag.ramp-stop" in stops


async def test_a_site_that_does_not_report_the_change_is_called_out(
    start_bot, git_remote, tmp_path: Path, site: FlagSite
):
    push_flags(git_remote, FLAGS)
    # A flag deploy that "succeeds" without putting anything live.
    bot = await start_bot(
        make_config(
            git_remote,
            tmp_path,
            production_url=site.url,
            extra="""
[flags]
deploy_command = "true"
verify_seconds = 1
""",
        )
    )
    await flag(bot, "set new_search 30")
    message = await wait_status(bot.slack, "set new_search to 30%", "done")
    # The thread's reply goes through the channel's outbox, paced: it may follow the redraw.
    await bot.slack.wait_for(
        lambda: (
            "/flags still reports the flag missing after 1s; expected on, 30%"
            in thread(bot.slack, message)
        ),
        timeout=10,
    )


async def click_answer(bot: Any, message: Any, user: str, user_name: str) -> str:
    """Press Approve as `user`; returns the private answer."""
    before = len(bot.slack.calls_to("response_url"))
    status, _ = await bot.click(message, "flag_approve", user=user, user_name=user_name)
    assert status == 200
    await bot.slack.wait_for(lambda: len(bot.slack.calls_to("response_url")) > before)
    return bot.slack.text_of(bot.slack.calls_to("response_url")[-1])


async def test_flag_approvals_count_distinct_approvers_and_every_click_is_audited(
    start_bot, git_remote, tmp_path: Path, site: FlagSite
):
    bot = await start_bot(
        flag_config(git_remote, tmp_path, site, required=2, extra='approvers = ["U0BOB", "S0WEB"]')
    )
    slack = bot.slack
    slack.usergroups["S0WEB"] = ["U0CAROL"]
    await flag(bot, "set new_search 80")
    message = await wait_status(slack, "set new_search to 80%", "awaiting approval")
    assert "Needs 2 more approvals from <@U0BOB>, <!subteam^S0WEB>" in slack.text_of(message)
    as_first_posted = copy.deepcopy(message)  # with its button, for a late click
    assert "not one of the approvers" in await click_answer(bot, message, "U0EVE", "eve")
    assert "1 more approval needed" in await click_answer(bot, message, "U0BOB", "bob")
    # `/release status` lists it while it waits, with what it still needs.
    waiting = slack.text_of(await bot.command("status"))
    assert "Waiting for approvals" in waiting
    assert "🚩 set new_search to 80%, asked by <@U0ALICE>" in waiting
    assert "needs 1 more approval" in waiting
    assert "approved it already" in await click_answer(bot, message, "U0BOB", "bob")
    assert "someone else has to approve" in await click_answer(bot, message, "U0ALICE", "alice")
    assert "is going ahead" in await click_answer(bot, message, "U0CAROL", "carol")
    done = await wait_status(slack, "set new_search to 80%", "done")
    assert "Approved by <@U0BOB>, <@U0CAROL>" in slack.text_of(done)
    assert "Waiting for approvals" not in slack.text_of(await bot.command("status"))
    log = git("log", "-1", "--format=%B", "main", cwd=git_remote.bare)
    assert "Approved-by: <U0BOB>\nApproved-by: <U0CAROL>" in log
    assert "nothing to approve" in await click_answer(bot, as_first_posted, "U0BOB", "bob")
    clicks = [
        (e["user_id"], e["outcome"])
        for e in await bot.services.store.audit_entries()
        if e["action"] == "flag.approve"
    ]
    assert clicks == [
        ("U0EVE", "refused"),
        ("U0BOB", "ok"),
        ("U0BOB", "duplicate"),
        ("U0ALICE", "refused"),
        ("U0CAROL", "ok"),
        ("U0BOB", "refused"),
    ]


async def test_a_request_stored_by_the_bot_before_the_upgrade_is_approved_and_applied(
    start_bot, git_remote, tmp_path: Path, site: FlagSite, redis, prefix
):
    """A team's request in flight survives the upgrade: one approval recorded in the old
    shape ({"user", "at"}, no name) counts, and the second one sends it out."""
    bot = await start_bot(flag_config(git_remote, tmp_path, site, required=2))
    posted = await bot.services.notifier.post("C0RELEASES", [], "🚩 set new_search to 80%")
    old = old_flag_request(id="0ld0ne", channel=posted["channel"], ts=posted["ts"])
    await redis.set(f"{prefix}flagreq:0ld0ne", json.dumps(old), ex=3600)
    where = (posted["channel"], posted["ts"])
    bob, carol = Actor("U0BOB", "bob", "C0DEV"), Actor("U0CAROL", "carol", "C0DEV")
    assert (
        await change_flags.approve(bot.services, bob, "0ld0ne", where) == "You approved it already."
    )
    answer = await change_flags.approve(bot.services, carol, "0ld0ne", where)
    assert answer == "Approved; set new_search to 80% is going ahead."
    await bot.slack.wait_for(
        lambda: read_flags(remote_flags(git_remote))["new_search"].rollout_percentage == 80,
        timeout=30,
    )
    log = git("log", "-1", "--format=%B", "main", cwd=git_remote.bare)
    assert "Approved-by: <U0BOB>\nApproved-by: <U0CAROL>" in log


async def test_the_kill_switch_goes_out_while_slack_throttles_every_post(
    start_bot, git_remote, tmp_path: Path, site: FlagSite
):
    """The flag is off on the site before any Slack call: with chat.postMessage answering
    429 for eight seconds, the site has it off in well under that, and the message arrives
    once Slack takes posts again, with the commit and the verification."""
    bot = await start_bot(flag_config(git_remote, tmp_path, site))
    for method in ("chat.postMessage", "chat.update"):
        bot.slack.fail_next(method, retry_after=1, times=8)
    started = time.monotonic()
    await flag(bot, "disable new_search")

    def off() -> bool:
        live = site.live.read_text() if site.live.exists() else ""
        return (
            "[flags.new_search]" in live
            and "enabled = false" in live.split("[flags.new_search]")[1].split("[flags.")[0]
        )

    await bot.slack.wait_for(off, timeout=10)
    assert time.monotonic() - started < 5.0
    done = await wait_status(bot.slack, "disable new_search", "done", timeout=30)
    text = bot.slack.text_of(done)
    assert "Commit `" in text and "now off" in text, text
    actions = [e["action"] for e in await bot.services.store.audit_entries()]
    assert (
        actions.index("flag.disable") < actions.index("flag.commit") < actions.index("flag.deploy")
    )


async def test_disabling_a_flag_already_off_says_so_and_changes_nothing(
    start_bot, git_remote, tmp_path: Path, site: FlagSite
):
    bot = await start_bot(flag_config(git_remote, tmp_path, site))
    await flag(bot, "disable new_search")
    await wait_status(bot.slack, "disable new_search", "done")
    head = git("rev-parse", "main", cwd=git_remote.bare)
    deployed = site.live.stat().st_mtime_ns
    before = len(bot.slack.calls_to("response_url"))
    await flag(bot, "disable new_search")
    await bot.slack.wait_for(lambda: len(bot.slack.calls_to("response_url")) > before)
    answer = bot.slack.text_of(bot.slack.calls_to("response_url")[-1])
    assert "`new_search` is already off" in answer and "no commit and no deploy" in answer
    assert git("rev-parse", "main", cwd=git_remote.bare) == head
    assert site.live.stat().st_mtime_ns == deployed
    refused = [
        e["outcome"]
        for e in await bot.services.store.audit_entries()
        if e["action"] == "flag.disable"
    ]
    assert refused == ["approved", "refused"]


async def test_the_kill_switch_voids_what_was_asked_of_the_flag_before_it(
    start_bot, git_remote, tmp_path: Path, site: FlagSite
):
    """An approval pending when the kill switch is pressed can never turn the flag back on."""
    bot = await start_bot(flag_config(git_remote, tmp_path, site))
    slack = bot.slack
    await flag(bot, "set new_search 80")
    pending = await wait_status(slack, "set new_search to 80%", "awaiting approval")
    await flag(bot, "disable new_search", user="U0CAROL", user_name="carol")
    await wait_status(slack, "disable new_search", "done")
    head = git("rev-parse", "main", cwd=git_remote.bare)
    await bot.click(pending, "flag_approve", user="U0BOB", user_name="bob")
    said = await slack.wait_for(
        lambda: [
            slack.text_of(c.params)
            for c in slack.calls_to("response_url")
            if "voided" in slack.text_of(c.params)
        ]
    )
    assert "the kill switch turned `new_search` off after it was asked" in said[0]
    assert git("rev-parse", "main", cwd=git_remote.bare) == head
    assert read_flags(remote_flags(git_remote))["new_search"].enabled is False
    refused = [
        e["reason"]
        for e in await bot.services.store.audit_entries()
        if e["action"] == "flag.approve" and e["outcome"] == "refused"
    ]
    assert refused == ["new_search: voided by the kill switch"]


async def test_a_waiting_flag_request_is_cancelled_by_who_asked_and_never_applied(
    start_bot, git_remote, tmp_path: Path, site: FlagSite
):
    approvers = 'approvers = ["U0BOB"]'  # eve is neither the requester nor an approver
    bot = await start_bot(flag_config(git_remote, tmp_path, site, extra=approvers))
    slack = bot.slack
    await flag(bot, "set new_search 80")
    pending = await wait_status(slack, "set new_search to 80%", "awaiting approval")
    stale = copy.deepcopy(pending)
    head = git("rev-parse", "main", cwd=git_remote.bare)
    await bot.click(pending, "flag_cancel", user="U0EVE", user_name="eve")
    await bot.click(pending, "flag_cancel", user="U0ALICE", user_name="alice")
    cancelled = await wait_status(slack, "set new_search to 80%", "cancelled")
    text = slack.text_of(cancelled)
    assert "cancelled by alice" in text and "Approve" not in text
    await bot.click(stale, "flag_approve", user="U0BOB", user_name="bob")
    await slack.wait_for(
        lambda: [
            c
            for c in slack.calls_to("response_url")
            if "That request is cancelled already" in slack.text_of(c.params)
        ]
    )
    assert git("rev-parse", "main", cwd=git_remote.bare) == head
    cancels = [
        (e["user_id"], e["outcome"])
        for e in await bot.services.store.audit_entries()
        if e["action"] == "flag.cancel"
    ]
    assert cancels == [("U0EVE", "refused"), ("U0ALICE", "ok")]


async def test_a_freeze_pauses_a_ramp_refuses_more_exposure_and_lets_the_kill_switch_through(
    start_bot, git_remote, tmp_path: Path, site: FlagSite
):
    extra = "\n[monitoring]\ntick_seconds = 0.1\n"
    bot = await start_bot(flag_config(git_remote, tmp_path, site, required=0, extra=extra))
    slack = bot.slack
    await flag(bot, "ramp new_search 60,70 --every 1s")
    words = "ramp new_search 60%, 70%, every 1s"
    message = await slack.wait_for(lambda: flag_message(slack, words), timeout=20)
    await slack.wait_for(lambda: "Next: 60% → *70%*" in thread(slack, message), timeout=20)
    # Production freezes for three seconds, from Slack (as /release freeze sets it).
    now = time.time()
    await bot.services.freeze_records.add(
        "production",
        Freeze(
            start=datetime.fromtimestamp(now - 1, UTC),
            until=datetime.fromtimestamp(now + 3, UTC),
            reason="incident review",
            who="U0CAROL",
        ),
    )
    await slack.wait_for(lambda: "Ramp paused before 70%" in thread(slack, message), timeout=15)
    assert "incident review" in thread(slack, message)
    # Showing a feature to more people is refused meanwhile.
    before = len(slack.calls_to("response_url"))
    await flag(bot, "set new_search 95")
    refused = await slack.wait_for(
        lambda: [
            slack.text_of(c.params)
            for c in slack.calls_to("response_url")[before:]
            if "was not changed" in slack.text_of(c.params)
        ],
        timeout=15,
    )
    assert "*production* is closed for changes" in refused[0]
    assert refused[0].startswith("⏸ ")  # a notice of when it opens, not a warning
    # The freeze ends: the ramp goes on by itself.
    await slack.wait_for(
        lambda: "What paused it is over; the ramp goes on" in thread(slack, message), timeout=20
    )
    await slack.wait_for(lambda: "Ramp finished" in thread(slack, message), timeout=20)
    # Frozen again: the kill switch still goes through.
    await bot.services.freeze_records.add(
        "production",
        Freeze(
            start=datetime.fromtimestamp(time.time() - 1, UTC),
            until=datetime.fromtimestamp(time.time() + 600, UTC),
            reason="incident review",
        ),
    )
    await flag(bot, "disable new_search")
    await wait_status(slack, "disable new_search", "done")
    assert read_flags(remote_flags(git_remote))["new_search"].enabled is False
