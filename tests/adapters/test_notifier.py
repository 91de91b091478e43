"""The release message is updated in place, coalesced, and never left stale."""

from __future__ import annotations

import asyncio
from functools import partial

from bot.domain import releases
from bot.domain.actors import BOT
from bot.runtime.container import Services
from tests.helpers.bot import make_settings
from tests.helpers.config import make_config


async def make_release(services: Services, slack) -> releases.Release:
    release = releases.new_release(
        services.config,
        version="1.0.0-rc.1",
        tag="v1.0.0-rc.1",
        sha="a" * 40,
        requester="U0ALICE",
        requester_name="alice",
        description="",
        issue=None,
        now=1.0,
    )
    await services.store.create_release(release, BOT)
    posted = await services.notifier.post(
        "#releases",
        [{"type": "section", "text": {"type": "mrkdwn", "text": "placeholder"}}],
        "placeholder",
    )
    release, _ = await services.store.update_release(
        release.version,
        partial(releases.activate, channel=posted["channel"], message_ts=posted["ts"]),
        BOT,
        "release.tag",
    )
    return release


async def test_a_burst_of_changes_is_one_update_showing_the_latest_state(
    redis, prefix, slack, git_remote, tmp_path
):
    services = Services.create(
        make_settings(prefix, slack, tmp_path), make_config(git_remote, tmp_path)
    )
    try:
        release = await make_release(services, slack)
        for gate in ("e2e", "infra"):
            await services.store.update_release(
                release.version, partial(releases.start_gate, gate_id=gate, now=2.0), BOT, "g"
            )
            services.notifier.refresh(release.version)
            await services.store.update_release(
                release.version,
                partial(releases.finish_gate, gate_id=gate, now=3.5, ok=True),
                BOT,
                "g",
            )
            for _ in range(10):
                services.notifier.refresh(release.version)
        await services.notifier.drain()
        updates = slack.calls_to("chat.update")
        assert len(updates) == 1
        text = slack.text_of(updates[0].params)
        assert text.count("passed in 1.5s") == 2
    finally:
        await services.close()


async def test_an_update_whose_owner_died_is_rendered_by_the_next_refresh(
    redis, prefix, slack, git_remote, tmp_path
):
    services = Services.create(
        make_settings(prefix, slack, tmp_path), make_config(git_remote, tmp_path)
    )
    try:
        release = await make_release(services, slack)
        # Another process took the render flag and died before rendering.
        await redis.set(services.store.keys.render(release.version), "1", px=1200)
        services.notifier.refresh(release.version)
        await asyncio.sleep(0.3)
        assert slack.calls_to("chat.update") == []
        await services.notifier.drain()
        assert len(slack.calls_to("chat.update")) == 1
    finally:
        await services.close()


async def test_a_message_is_redrawn_and_a_failed_redraw_is_logged_not_raised(
    redis, prefix, slack, git_remote, tmp_path, caplog
):
    services = Services.create(
        make_settings(prefix, slack, tmp_path), make_config(git_remote, tmp_path)
    )
    try:
        posted = await services.notifier.post(
            "#releases",
            [{"type": "section", "text": {"type": "mrkdwn", "text": "before"}}],
            "before",
        )
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "after"}}]
        await services.notifier.update(posted["channel"], posted["ts"], blocks, "after")
        shown = slack.text_of(slack.messages()[posted["ts"]])
        assert "after" in shown and "before" not in shown
        slack.error_next("chat.update", "message_not_found")
        await services.notifier.update(posted["channel"], posted["ts"], [], "lost")
        assert "message_not_found" in caplog.text
        assert slack.text_of(slack.messages()[posted["ts"]]) == shown
    finally:
        await services.close()
