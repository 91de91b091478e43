"""Bad input gets a clear answer and leaves nothing half-made; status, help and /healthz."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import aiohttp

from bot.runtime.container import Services
from bot.runtime.web import Bot
from bot.services import create_candidate
from tests.helpers.bot import RunningBot, make_settings
from tests.helpers.config import make_config
from tests.helpers.messages import wait_for_gates
from tests.helpers.repos import git

ORIGINAL_TAGS = {
    "v0.8.1-bug-fixes",
    "v0.13.3-final",
    "bd-12",
    "20240315-1200",
    "v0.14.0-rc.1",
    "v0.14.0",
    "v0.14.1",
}


async def answers(bot, fragment: str) -> str:
    """The text of the private answer (via response_url) that contains `fragment`."""
    calls = await bot.slack.wait_for(
        lambda: [
            c for c in bot.slack.calls_to("response_url") if fragment in bot.slack.text_of(c.params)
        ],
        timeout=20,
    )
    return bot.slack.text_of(calls[0].params)


async def assert_nothing_recorded(bot, remote):
    assert set(remote.remote_tags()) == ORIGINAL_TAGS
    assert await bot.services.store.releases_in_flight() == []
    assert bot.slack.calls_to("chat.postMessage") == []


async def test_unknown_subcommands_and_options_get_usage(start_bot, git_remote, tmp_path):
    bot = await start_bot(make_config(git_remote, tmp_path))
    for text, fragment in [
        ("deploy prod", "don't know `/release deploy`"),
        ("rc --force", "no option `--force`"),
        ("rc --bump", "needs a value"),
        (f"rc --description {'x' * 1001}", "1,001 characters"),
    ]:
        ack = await bot.command(text)
        assert ack["response_type"] == "ephemeral"
        assert fragment in bot.slack.text_of(ack), text
    ack = await bot.command("deploy prod")
    assert "/release rc" in bot.slack.text_of(ack)  # the usage comes with it
    await asyncio.sleep(0.5)
    await assert_nothing_recorded(bot, git_remote)


async def test_help_and_status(start_bot, git_remote, tmp_path):
    bot = await start_bot(make_config(git_remote, tmp_path))
    assert "/release rc" in bot.slack.text_of(await bot.command("help"))
    assert "/release status" in bot.slack.text_of(await bot.command(""))
    status = bot.slack.text_of(await bot.command("status"))
    assert "nothing deployed yet" in status
    assert "No releases in flight" in status
    assert "No environment is locked" in status


async def test_an_unfetchable_repository_is_reported(start_bot, git_remote, tmp_path):
    config = make_config(git_remote, tmp_path)
    config = dataclasses.replace(
        config, repository=dataclasses.replace(config.repository, url=str(tmp_path / "missing.git"))
    )
    bot = await start_bot(config)
    await bot.command("rc")
    text = await answers(bot, "could not fetch")
    assert "repository.url" in text
    await assert_nothing_recorded(bot, git_remote)
    entries = await bot.services.store.audit_entries()
    assert any(e["action"] == "rc.create" and e["outcome"] == "refused" for e in entries)


async def test_a_missing_release_branch_is_reported(start_bot, git_remote, tmp_path):
    config = make_config(git_remote, tmp_path)
    config = dataclasses.replace(
        config, repository=dataclasses.replace(config.repository, branch="release")
    )
    bot = await start_bot(config)
    await bot.command("rc")
    assert "`release` does not exist" in await answers(bot, "does not exist")
    await assert_nothing_recorded(bot, git_remote)


async def test_a_tag_that_exists_elsewhere_is_refused(start_bot, git_remote, tmp_path):
    # v0.15.0-rc.1 exists, but on a side branch, so it is not in main's history.
    work = git_remote.work
    git("checkout", "-q", "-b", "side", cwd=work)
    git_remote.commit("side work")
    git("tag", "v0.15.0-rc.1", cwd=work)
    git("push", "-q", "origin", "v0.15.0-rc.1", cwd=work)
    git("checkout", "-q", "main", cwd=work)
    bot = await start_bot(make_config(git_remote, tmp_path))
    await bot.command("rc")
    text = await answers(bot, "already exists")
    assert "v0.15.0-rc.1" in text and "--bump" in text
    assert await bot.services.store.releases_in_flight() == []
    assert bot.slack.calls_to("chat.postMessage") == []


async def test_a_rejected_push_leaves_no_tag_and_no_record(start_bot, git_remote, tmp_path):
    hook = git_remote.bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'tags are frozen this week' >&2\nexit 1\n")
    hook.chmod(0o755)
    bot = await start_bot(make_config(git_remote, tmp_path))
    await bot.command("rc")
    text = await answers(bot, "could not push")
    assert "tags are frozen this week" in text
    await assert_nothing_recorded(bot, git_remote)
    # No local tag left in the bot's clone either, so the next try starts clean.
    local = git("tag", cwd=bot.services.clone_path).split()
    assert "v0.15.0-rc.1" not in local
    entries = await bot.services.store.audit_entries("0.15.0-rc.1")
    assert [e["action"] for e in entries] == ["release.create", "release.discard"]

    hook.unlink()
    await bot.command("rc")
    await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    assert "v0.15.0-rc.1" in git_remote.remote_tags()


async def test_an_unknown_channel_is_reported_but_the_release_goes_on(
    start_bot, git_remote, tmp_path
):
    bot = await start_bot(make_config(git_remote, tmp_path))
    bot.slack.error_next("chat.postMessage", "channel_not_found")
    await bot.command("rc")
    text = await answers(bot, "could not post")
    assert "slack.channel" in text and "I try again every minute" in text
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release is not None and release.phase == "active" and release.message_ts is None
    # The scheduler's "release-messages" job: the message is posted late, once, and bound.
    assert await create_candidate.post_missing_messages(bot.services) == 1
    assert await create_candidate.post_missing_messages(bot.services) == 0
    message = await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release.message_ts == message.ts
    await bot.click(message, "gate_approve", gate="qa")  # its buttons work
    assert "You approved Manual QA" in await answers(bot, "You approved")


async def test_healthz_reports_redis(start_bot, git_remote, tmp_path, slack, prefix):
    bot = await start_bot(make_config(git_remote, tmp_path))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{bot.url}/healthz") as resp:
            assert resp.status == 200
        settings = dataclasses.replace(
            make_settings(prefix, slack, tmp_path / "x"), redis_url="redis://127.0.0.1:1/0"
        )
        down = Bot(Services.create(settings, make_config(git_remote, tmp_path)), "web")
        await down.start(port=0, host="127.0.0.1")
        try:
            async with http.get(f"http://127.0.0.1:{down.port}/healthz") as resp:
                assert resp.status == 503
                # Anyone may ask /healthz: it never shows where Redis is or why it failed.
                assert await resp.json() == {"ok": False, "redis": "Redis unreachable"}
        finally:
            await down.stop()


async def test_commands_get_a_clear_answer_in_time_when_redis_is_down(
    git_remote, tmp_path, slack, prefix
):
    settings = dataclasses.replace(
        make_settings(prefix, slack, tmp_path / "x"), redis_url="redis://127.0.0.1:1/0"
    )
    services = Services.create(settings, make_config(git_remote, tmp_path))
    down = Bot(services, "web")
    await down.start(port=0, host="127.0.0.1")
    try:
        async with aiohttp.ClientSession() as http:
            bot = RunningBot(bot=down, services=services, slack=slack, http=http)
            for text in ("status", "rc --description x"):
                started = time.monotonic()
                ack = await bot.command(text)
                assert time.monotonic() - started < 3
                assert "cannot reach my state store (Redis)" in slack.text_of(ack)
            assert "/release rc" in slack.text_of(await bot.command("help"))
    finally:
        await down.stop()
    assert set(git_remote.remote_tags()) == ORIGINAL_TAGS


async def test_every_command_is_on_the_audit_trail(start_bot, git_remote, tmp_path):
    bot = await start_bot(make_config(git_remote, tmp_path))
    for text in ("status", "help", "frobnicate", "lock prod --reason x"):
        await bot.command(text, user="U0CAROL", user_name="carol")

    async def commands():
        return [
            (e["user_id"], e["channel"], e["reason"], e["outcome"])
            for e in await bot.services.store.audit_entries()
            if e["action"] == "command"
        ]

    for _ in range(50):
        if len(await commands()) == 4:
            break
        await asyncio.sleep(0.05)
    assert await commands() == [
        ("U0CAROL", "C0DEV", "/release status", "ok"),
        ("U0CAROL", "C0DEV", "/release help", "ok"),
        ("U0CAROL", "C0DEV", "/release frobnicate", "invalid"),
        ("U0CAROL", "C0DEV", "/release lock prod --reason x", "invalid"),
    ]
