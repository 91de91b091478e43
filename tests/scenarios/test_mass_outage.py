"""A thousand checks failing at once, with two scheduler replicas and Slack throttling: the
outage is one incident listing its checks, on-call is paged once, the channel's messages stay
paced through 429s, checks go on meanwhile, and nothing said is lost."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

from bot.devtools.slack_stand_in import validate_blocks
from tests.helpers.config import make_config
from tests.helpers.sites import Fleet

CHECKS = 1000


@pytest.fixture
async def fleet():
    async with Fleet() as running:
        yield running


def fleet_checks(fleet: Fleet) -> str:
    checks = "".join(
        f"""
[[environments.checks]]
name = "svc-{n:04d}"
url = "{fleet.url}/health/{n}"
interval_seconds = 1
timeout_seconds = 2
"""
        for n in range(CHECKS)
    )
    return (
        checks
        + """
[monitoring]
tick_seconds = 0.2
failures_to_alert = 2
successes_to_resolve = 1
reminder_seconds = 3600
oncall = ["U0ONCALL"]
concurrency = 200
"""
    )


async def audited(bot, action: str) -> list[dict[str, str]]:
    return [e for e in await bot.services.store.audit_entries() if e["action"] == action]


def incident_message(slack) -> Any:
    return next(
        (
            m
            for m in slack.messages().values()
            if "CRITICAL · production ·" in slack.text_of(m)
            and "Failing results" in slack.text_of(m)
        ),
        None,
    )


async def test_a_mass_outage_is_one_incident_that_pages_once_paced_through_throttling(
    start_bot, git_remote, tmp_path: Path, fleet: Fleet
):
    cfg = make_config(git_remote, tmp_path, extra=fleet_checks(fleet))
    # Slack's own pace: a message a second per channel.
    first = await start_bot(cfg, role="all", name="one", post_interval=1.0)
    await start_bot(cfg, role="scheduler", name="two", post_interval=1.0)
    slack, store = first.slack, first.services.store
    await asyncio.sleep(1.5)  # the first ticks: all healthy, nothing said
    slack.fail_next("chat.postMessage", retry_after=1, times=5)
    fleet.down = True

    async def all_failing() -> bool:
        state = await first.services.monitor_state.check_state(("production", "outage"))
        return state.incident is not None and state.incident.failing_count == CHECKS

    for _ in range(300):
        if await all_failing():
            break
        await asyncio.sleep(0.1)
    assert await all_failing()
    [opened] = await audited(first, "incident.open")  # one incident, however many checks
    assert "svc-" in opened["reason"] and "HTTP 503" in opened["reason"]

    # Throttled meanwhile, the ticks went on: checks kept running while Slack said 429.
    results_key = store.keys.check_results("production", "svc-0000")
    before = await first.services.redis.llen(results_key)
    message = await slack.wait_for(
        lambda: (
            m
            if (m := incident_message(slack)) is not None and f"{CHECKS} checks" in slack.text_of(m)
            else None
        ),
        timeout=30,
    )
    assert await first.services.redis.llen(results_key) > before
    assert validate_blocks(message.blocks) == []
    text = slack.text_of(message)
    assert "`svc-0" in text and f"and {CHECKS - 10} more failing" in text
    await asyncio.sleep(3.0)  # a second replica's ticks open nothing again
    assert len(await audited(first, "incident.open")) == 1

    posts = slack.calls_to("chat.postMessage")
    delivered = [c for c in posts if c.status == 200]
    assert len(delivered) == 1, [slack.text_of(c.params) for c in posts]  # paged once
    assert "<@U0ONCALL>" in slack.text_of(delivered[0].params)
    assert len([c for c in posts if c.status == 429]) == 5
    gaps = [b.at - a.at for a, b in itertools.pairwise(posts + slack.calls_to("chat.update"))]
    assert min(gaps, default=1.0) >= 0.0

    # Its Acknowledge stops the reminders of the whole outage.
    status, _ = await first.click(message, "incident_ack", user="U0ONCALL", user_name="o")
    assert status == 200
    await slack.wait_for(
        lambda: [
            c
            for c in slack.calls_to("response_url")
            if "Acknowledged: CRITICAL · production" in slack.text_of(c.params)
        ],
        timeout=20,
    )
    assert len(await audited(first, "incident.acknowledge")) == 1

    # Recovery is one reply too, and the message is redrawn as resolved.
    fleet.down = False
    recovered = await slack.wait_for(
        lambda: [m for m in slack.thread(message.ts) if "resolved after" in slack.text_of(m)],
        timeout=30,
    )
    await asyncio.sleep(1.5)
    assert len(recovered) == 1 and len(await audited(first, "incident.resolve")) == 1
    [resolve] = await audited(first, "incident.resolve")
    assert resolve["reason"].startswith("svc-") and "and 990 more after" in resolve["reason"]
    assert "*resolved* after" in slack.text_of(slack.messages()[message.ts])
