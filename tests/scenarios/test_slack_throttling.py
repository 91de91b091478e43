"""Slack throttling the release message's updates: the newest state always wins, and a
Retry-After holds every update of the bot for its time."""

from __future__ import annotations

import asyncio
import json

from bot.blocks.release import release_message as render
from bot.devtools.slack_stand_in import validate_blocks
from tests.helpers.messages import release_message
from tests.helpers.steps import staged


async def test_after_any_429s_the_message_shows_the_newest_state(start_bot, git_remote, tmp_path):
    bot = await staged(start_bot, git_remote, tmp_path)
    slack, store = bot.slack, bot.services.store
    message = release_message(slack, "v0.15.0-rc.1")
    assert message is not None
    # Every update for a while is refused, Retry-After 1, while the state keeps changing.
    slack.fail_next("chat.update", retry_after=1, times=8)
    for gate, user in (("qa", "U0BOB"), ("sec", "U0CAROL"), ("sec", "U0DAVE")):
        status, _ = await bot.click(message, "gate_approve", gate=gate, user=user)
        assert status == 200
        await asyncio.sleep(0.3)

    async def settled() -> bool:
        release = await store.get_release("0.15.0-rc.1")
        shown = slack.messages()[message.ts]
        return bot.services.chat.idle and shown.blocks == render(release, bot.services.config)

    for _ in range(200):
        if await settled():
            break
        await asyncio.sleep(0.1)
    release = await store.get_release("0.15.0-rc.1")
    shown = slack.messages()[message.ts]
    assert json.dumps(shown.blocks) == json.dumps(render(release, bot.services.config))
    assert validate_blocks(shown.blocks) == []
    await asyncio.sleep(1.5)  # nothing older lands later
    assert slack.messages()[message.ts].blocks == shown.blocks

    # A state already shown is not sent again, and the shown revision is never lowered.
    notifier, shown_key = bot.services.chat, store.keys.rendered("0.15.0-rc.1")
    sent = len(slack.calls_to("chat.update"))
    await notifier.render_now("0.15.0-rc.1")
    assert len(slack.calls_to("chat.update")) == sent
    await bot.services.redis.set(shown_key, release.rev + 5)  # a newer state shown elsewhere
    await notifier.render_now("0.15.0-rc.1")
    assert len(slack.calls_to("chat.update")) == sent
    assert int(await bot.services.redis.get(shown_key)) == release.rev + 5
    await bot.services.redis.set(shown_key, release.rev - 1)  # an older state shown
    await notifier.render_now("0.15.0-rc.1")
    assert len(slack.calls_to("chat.update")) == sent + 1
    assert int(await bot.services.redis.get(shown_key)) == release.rev

    updates = slack.calls_to("chat.update")
    refused = [c for c in updates if c.status == 429]
    assert len(refused) == 8
    for call in refused:  # held across tasks: no update of any message within its Retry-After
        too_soon = [c for c in updates if call.at < c.at < call.at + 0.95]
        assert too_soon == [], (call.at, [c.at for c in too_soon])
