"""A thousand checks failing at once, with two scheduler replicas and Slack throttling: each
incident opens once, the channel gets about one message a second (a summary, not a thousand),
checks go on meanwhile, and nothing said is lost."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from bot.devtools.slack_stand_in import validate_blocks
from tests.helpers.config import make_config
from tests.helpers.sites import LocalSite

CHECKS = 1000


class Fleet(LocalSite):
    """One endpoint per check; all down or all up as the test says."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/health/{n}", self._health)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=503 if self.down else 200, text="")


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


async def test_a_mass_outage_opens_each_incident_once_and_posts_a_paced_summary(
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

    async def all_open() -> bool:
        return len(await audited(first, "incident.open")) >= CHECKS

    for _ in range(300):
        if await all_open():
            break
        await asyncio.sleep(0.1)
    opened = await audited(first, "incident.open")
    per_check = Counter(e["reason"].split(":")[0] for e in opened)
    assert len(per_check) == CHECKS and set(per_check.values()) == {1}  # each once

    # Throttled meanwhile, the ticks went on: checks kept running while Slack said 429.
    results_key = store.keys.check_results("production", "svc-0000")
    before = await first.services.redis.llen(results_key)
    summary = await slack.wait_for(
        lambda: next(
            (
                m
                for m in slack.messages().values()
                if f"{CHECKS} checks failing in production" in slack.text_of(m)
            ),
            None,
        ),
        timeout=30,
    )
    assert await first.services.redis.llen(results_key) > before
    assert validate_blocks(summary.blocks) == []
    assert "<@U0ONCALL>" in slack.text_of(summary)
    await asyncio.sleep(3.0)  # a second replica's ticks open nothing again
    assert len(await audited(first, "incident.open")) == CHECKS

    posts = slack.calls_to("chat.postMessage")
    assert len([c for c in posts if c.status == 200]) <= 3, [slack.text_of(c.params) for c in posts]
    assert len([c for c in posts if c.status == 429]) == 5
    gaps = [b.at - a.at for a, b in itertools.pairwise(posts)]
    assert min(gaps) >= 0.9, gaps  # paced, 429s included

    # Every incident knows its message (the summary): its Acknowledge all stops them all.
    states = await first.services.monitor_state.check_states(
        [("production", f"svc-{n:04d}") for n in range(CHECKS)]
    )
    places = [
        await first.services.monitor_state.incident_place(s.incident.id)
        for s in states
        if s.incident is not None
    ]
    assert len(places) == CHECKS and {p.ts for p in places if p} == {summary.ts}
    status, _ = await first.click(summary, "incident_group_ack", user="U0ONCALL", user_name="o")
    assert status == 200
    answer = await slack.wait_for(
        lambda: [
            c
            for c in slack.calls_to("response_url")
            if "Acknowledged 1000 incidents" in slack.text_of(c.params)
        ],
        timeout=20,
    )
    assert answer
    assert len(await audited(first, "incident.acknowledge")) == CHECKS
    await slack.wait_for(
        lambda: [m for m in slack.thread(summary.ts) if "acknowledged 1000" in slack.text_of(m)],
        timeout=10,
    )
    status, _ = await first.click(summary, "incident_group_ack", user="U0ONCALL", user_name="o")
    await slack.wait_for(
        lambda: [
            c for c in slack.calls_to("response_url") if "Nothing left" in slack.text_of(c.params)
        ],
        timeout=10,
    )

    # Recovery is one message too.
    fleet.down = False
    recovered = await slack.wait_for(
        lambda: [
            m
            for m in slack.messages().values()
            if f"{CHECKS} checks recovered in production" in slack.text_of(m)
        ],
        timeout=30,
    )
    assert len(recovered) == 1
    assert len(await audited(first, "incident.resolve")) == CHECKS
    assert slack.calls_to("chat.update") == []  # a summary is never redrawn per incident
