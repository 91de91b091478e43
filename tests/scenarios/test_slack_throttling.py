"""Slack throttling the release message's updates: the newest state always wins, and a
Retry-After holds every update of the bot for its time."""

from __future__ import annotations

import asyncio
import itertools
import json
import random

import pytest

from bot.blocks.release import release_message as render
from bot.devtools.slack_stand_in import validate_blocks
from tests.helpers.config import make_config
from tests.helpers.messages import release_message, thread_text
from tests.helpers.steps import candidate, staged


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


async def test_a_burst_of_approvals_is_a_few_paced_thread_replies(start_bot, git_remote, tmp_path):
    """Twenty approvals in a burst: the thread gets every one of them, in a few replies at
    Slack's pace of one message a second in the channel, not twenty."""
    gates = "".join(
        f'\n[[gates]]\nid = "m{n}"\nname = "Check {n}"\nstage = "staging"\nmanual = true\n'
        for n in range(20)
    )
    bot = await start_bot(make_config(git_remote, tmp_path, extra=gates), post_interval=1.0)
    slack = bot.slack
    message = await candidate(bot)
    await bot.services.chat.sender.settled()
    start = len(slack.calls_to("chat.postMessage"))
    clicks = await asyncio.gather(
        *(bot.click(message, "gate_approve", gate=f"m{n}") for n in range(20))
    )
    assert all(status == 200 for status, _ in clicks)

    def approvals() -> list[str]:
        return [
            line
            for line in thread_text(slack, message).splitlines()
            if line.startswith("✅ <@U0BOB>")
        ]

    await slack.wait_for(lambda: len(approvals()) >= 20, timeout=30)
    assert sorted(approvals()) == sorted(f"✅ <@U0BOB> approved *Check {n}*." for n in range(20))
    posts = slack.calls_to("chat.postMessage")[start:]
    assert len(posts) <= 6, len(posts)
    gaps = [b.at - a.at for a, b in itertools.pairwise(posts)]
    assert not gaps or min(gaps) >= 0.9, gaps
    for post in posts:
        assert validate_blocks(post.params["blocks"]) == []


@pytest.mark.parametrize("seed", [11, 29])
async def test_the_message_ends_on_the_final_state_whatever_the_throttling(
    start_bot, git_remote, tmp_path, seed
):
    """A property over random throttle patterns (seeded, so a failure replays): bursts of
    429s with random Retry-Afters, at random moments among random state changes; once all
    is sent, the message shows the final state and nothing older lands after it."""
    rng = random.Random(seed)
    gates = "".join(
        f'\n[[gates]]\nid = "m{n}"\nname = "Check {n}"\nstage = "staging"\nmanual = true\n'
        for n in range(12)
    )
    bot = await start_bot(make_config(git_remote, tmp_path, extra=gates))
    slack, store = bot.slack, bot.services.store
    message = await candidate(bot)
    pending = [f"m{n}" for n in range(12)]
    rng.shuffle(pending)
    for _ in range(3):
        steps = []
        for _ in range(rng.randint(1, 4)):
            steps.append(("click", pending.pop()))
            if rng.random() < 0.5:
                steps.append(("throttle", (rng.choice([1, 1, 2]), rng.randint(1, 4))))
        for kind, what in steps:
            if kind == "throttle":
                retry_after, times = what
                slack.fail_next("chat.update", retry_after=retry_after, times=times)
            else:
                status, _ = await bot.click(message, "gate_approve", gate=what)
                assert status == 200
            await asyncio.sleep(rng.uniform(0, 0.4))

        async def shows_final() -> bool:
            release = await store.get_release("0.15.0-rc.1")
            shown = slack.messages()[message.ts].blocks
            return bot.services.chat.idle and shown == render(release, bot.services.config)

        for _ in range(300):
            if await shows_final():
                break
            await asyncio.sleep(0.1)
        assert await shows_final(), (seed, steps)
        await asyncio.sleep(1.2)  # nothing older lands later
        assert await shows_final(), (seed, steps)


async def test_two_replicas_never_update_one_release_message_at_once(
    start_bot, git_remote, tmp_path
):
    """Each replica has one sender per message; across replicas a lease makes it one: an
    older state read by one replica cannot land after a newer one sent by the other."""
    one = await staged(start_bot, git_remote, tmp_path)
    two = await start_bot(one.services.config, role="web", name="two")
    slack, store = one.slack, one.services.store
    message = release_message(slack, "v0.15.0-rc.1")
    assert message is not None
    in_flight, most, landed = 0, 0, []

    async def slow_update(params: dict) -> dict:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.2)  # Slack under load: each update takes a while
        landed.append(params["blocks"])
        in_flight -= 1
        return {"channel": params["channel"], "ts": params["ts"]}

    slack.on("chat.update", slow_update)
    renders = []
    for gate, user in (("qa", "U0BOB"), ("sec", "U0CAROL"), ("sec", "U0DAVE")):
        status, _ = await one.click(message, "gate_approve", gate=gate, user=user)
        assert status == 200
        renders += [asyncio.create_task(two.services.chat.render_now("0.15.0-rc.1"))]
        renders += [asyncio.create_task(one.services.chat.render_now("0.15.0-rc.1"))]
        await asyncio.sleep(0.05)
    await asyncio.gather(*renders)
    await one.services.chat.drain()
    release = await store.get_release("0.15.0-rc.1")
    blocks = render(release, one.services.config)
    assert most == 1
    last = json.loads(landed[-1]) if isinstance(landed[-1], str) else landed[-1]
    assert last == blocks
