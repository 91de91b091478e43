"""Health monitoring against real HTTP servers on 127.0.0.1 that the tests make slow, failing,
flapping or wrong about their version; alerts go to the Slack stand-in."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.adapters.redis.store import Store
from bot.devtools.slack_stand_in import validate_blocks
from bot.domain import rollbacks
from bot.domain.health.checks import Result
from bot.services import version_history
from bot.services.monitor_health import Monitor
from tests.helpers.config import make_config, production_config
from tests.helpers.messages import release_message, thread_text
from tests.helpers.sites import LocalSite
from tests.helpers.steps import candidate, in_production, live


class HealthSite(LocalSite):
    """A site with /health and /build-info whose answers the test changes as it goes."""

    def __init__(self) -> None:
        super().__init__()
        self.status = 200
        self.delay = 0.0
        self.version = "0.15.0"
        self.flap = False
        self.hits: Counter[str] = Counter()

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/health", self._health)
        app.router.add_get("/build-info", self._build_info)

    async def _health(self, request: web.Request) -> web.Response:
        self.hits["health"] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.status
        if self.flap:
            status = 500 if self.hits["health"] % 2 else 200
        return web.json_response({"status": "ok" if status < 500 else "broken"}, status=status)

    async def _build_info(self, request: web.Request) -> web.Response:
        self.hits["build-info"] += 1
        return web.json_response({"version": self.version})


@pytest.fixture
async def site():
    async with HealthSite() as running:
        yield running


def checks(
    site: HealthSite,
    *,
    tick: float = 0.1,
    interval: float = 0.2,
    reminder: float = 60,
    window: float = 3600,
    extra: str = "",
) -> str:
    return f"""
[[environments.checks]]
name = "health"
url = "{site.url}/health"
interval_seconds = {interval}
timeout_seconds = 2
json = {{ status = "ok" }}

[[environments.checks]]
name = "build-info"
url = "{site.url}/build-info"
interval_seconds = {interval}
version_field = "version"

[monitoring]
tick_seconds = {tick}
failures_to_alert = 3
successes_to_resolve = 2
reminder_seconds = {reminder}
oncall = ["U0ONCALL"]
latency_samples = 3
degradation_floor_ms = 50
window_seconds = {window}
window_interval_seconds = {interval}
{extra}"""


async def deployed(store: Store, version: str = "0.15.0", release: str = "") -> None:
    await store.set_environment_version("production", version, f"v{version}", "a" * 40, release)


def incidents(slack: Any, kind: str = "") -> list[Any]:
    """Incident messages (each incident is one message, however long it lasts)."""
    return [
        m
        for m in slack.messages().values()
        if kind in slack.text_of(m)
        and "· production ·" in slack.text_of(m)
        and ("Failing results" in slack.text_of(m) or "*resolved* after" in slack.text_of(m))
    ]


async def health_report(bot: Any, text: str) -> str:
    """`/release {text}`'s report: acked at once, then answered privately after the ack."""
    before = len(bot.slack.calls_to("response_url"))
    await bot.command(text)
    answers = await bot.slack.wait_for(
        lambda: [
            c
            for c in bot.slack.calls_to("response_url")[before:]
            if c.params.get("text") == "Health checks"
        ]
    )
    return str(bot.slack.text_of(answers[0].params))


async def ticks(
    monitor: Monitor, store: Store, start: float, count: int, step: float = 1.0
) -> float:
    """`count` ticks `step` apart on the monitor's clock, each one's messages sent after it
    (the outbox sends them after the tick, paced)."""
    now = start
    for _ in range(count):
        now += step
        assert await monitor.tick(now) > 0
        await monitor.services.chat.sender.settled()
    return now


async def test_one_blip_is_quiet_an_outage_is_one_message_until_it_resolves(
    start_bot, git_remote, tmp_path: Path, site: HealthSite
):
    bot = await start_bot(
        make_config(git_remote, tmp_path, extra=checks(site, reminder=5)), role="web"
    )
    store, slack = bot.services.store, bot.slack
    await deployed(store)
    monitor = Monitor(bot.services)
    try:
        now = await ticks(monitor, store, 1000.0, 3)
        site.status = 500  # one blip
        now = await ticks(monitor, store, now, 1)
        site.status = 200
        now = await ticks(monitor, store, now, 3)
        assert incidents(slack) == [] and slack.calls_to("chat.postMessage") == []

        site.status = 503  # an outage: opens on the third failure in a row
        now = await ticks(monitor, store, now, 2)
        assert incidents(slack) == []
        now = await ticks(monitor, store, now, 1)
        [message] = incidents(slack)
        text = slack.text_of(message)
        assert "CRITICAL · production · health" in text and "HTTP 503" in text
        assert "<@U0ONCALL>" in text and message.thread_ts is None  # no release: the channel
        actions = [
            e["action_id"] for b in message.blocks if b["type"] == "actions" for e in b["elements"]
        ]
        assert actions == ["incident_ack", "rollback_start"]

        now = await ticks(monitor, store, now, 12)  # 12 s on: reminders every 5 s at most
        assert len(incidents(slack)) == 1
        reminders = [m for m in slack.thread(message.ts) if "Still failing" in slack.text_of(m)]
        assert len(reminders) == 2 and "<@U0ONCALL>" in slack.text_of(reminders[0])

        status, _ = await bot.click(
            slack.messages()[message.ts], "incident_ack", user="U0ONCALL", user_name="olga"
        )
        assert status == 200
        await slack.wait_for(lambda: "acknowledged" in thread_text(slack, message))
        assert "Acknowledged*\nby <@U0ONCALL>" in slack.text_of(slack.messages()[message.ts])
        now = await ticks(monitor, store, now, 12)
        assert (
            len([m for m in slack.thread(message.ts) if "Still failing" in slack.text_of(m)]) == 2
        )  # no more after the ack

        site.status = 200
        now = await ticks(monitor, store, now, 1)
        assert "resolved" not in slack.text_of(slack.messages()[message.ts])
        now = await ticks(monitor, store, now, 1)
        final = slack.messages()[message.ts]
        assert "resolved* after" in slack.text_of(final)
        assert not [b for b in final.blocks if b["type"] == "actions"]
        assert "resolved after 26s" in thread_text(slack, message)
        assert len(incidents(slack)) == 1
    finally:
        await monitor.close()
    audit = [(e["action"], e["user_id"]) for e in await store.audit_entries()]
    assert ("incident.open", "releasebot") in audit and ("incident.resolve", "releasebot") in audit
    assert ("incident.acknowledge", "U0ONCALL") in audit
    # The results survive a restart: a new monitor carries on from them.
    history = await bot.services.redis.llen(store.keys.check_results("production", "health"))
    assert history == 36


async def test_checks_failing_together_are_one_incident_that_pages_once_and_lists_each(
    start_bot, git_remote, tmp_path: Path, site: HealthSite
):
    bot = await start_bot(
        make_config(git_remote, tmp_path, extra=checks(site, reminder=2)), role="web"
    )
    store, slack = bot.services.store, bot.slack
    await deployed(store)
    monitor = Monitor(bot.services)
    try:
        now = await ticks(monitor, store, 1000.0, 2)
        site.status, site.version = 500, "0.14.1"  # /health down, /build-info wrong
        now = await ticks(monitor, store, now, 3)
        [message] = incidents(slack)
        text = slack.text_of(message)
        assert "CRITICAL · production · 2 checks" in text
        assert "`health`" in text and "`build-info`" in text and "reports version `0.14.1`" in text
        assert text.count("<@U0ONCALL>") == 1
        [opened] = [e for e in await store.audit_entries() if e["action"] == "incident.open"]
        assert opened["reason"].startswith("2 checks failing: ")

        now = await ticks(monitor, store, now, 4)  # reminders every 2 s: one per interval
        reminders = [m for m in slack.thread(message.ts) if "Still failing" in slack.text_of(m)]
        assert len(reminders) == 2 and "2 checks failing" in slack.text_of(reminders[0])

        site.version = "0.15.0"  # one check recovers: the message says so, nobody is paged
        now = await ticks(monitor, store, now, 2)
        text = slack.text_of(slack.messages()[message.ts])
        assert (
            "CRITICAL · production · health" in text and "Recovered meanwhile: `build-info`" in text
        )
        changed = [e for e in await store.audit_entries() if e["action"] == "incident.change"]
        assert changed and changed[-1]["reason"].startswith("1 failing, 1 recovered")

        site.status = 200  # the last one recovers: the incident ends, once
        now = await ticks(monitor, store, now, 2)
        final = slack.messages()[message.ts]
        assert "resolved* after" in slack.text_of(final)
        assert "Was: health, build-info failing" in slack.text_of(final) or (
            "Was: build-info, health failing" in slack.text_of(final)
        )
        replies = [m for m in slack.thread(message.ts) if "resolved after" in slack.text_of(m)]
        assert len(replies) == 1 and len(incidents(slack)) == 1
        posts = slack.calls_to("chat.postMessage")
        assert len(posts) == 1 + 3 + 1  # the incident, its reminders, its end
        for call in posts + slack.calls_to("chat.update"):
            assert validate_blocks(call.params["blocks"]) == []
    finally:
        await monitor.close()


async def test_flapping_alerts_on_error_rate_and_a_wrong_version_is_caught(
    start_bot, git_remote, tmp_path: Path, site: HealthSite
):
    extra = "error_rate_samples = 10\nerror_rate_percent = 20\n"
    bot = await start_bot(
        make_config(git_remote, tmp_path, extra=checks(site, extra=extra)), role="web"
    )
    store, slack = bot.services.store, bot.slack
    await deployed(store)
    monitor = Monitor(bot.services)
    try:
        site.flap = True  # fail, pass, fail, pass: never three in a row
        now = await ticks(monitor, store, 0.0, 9)
        assert incidents(slack) == []  # the window is not full yet
        now = await ticks(monitor, store, now, 3)
        [message] = incidents(slack, "health")
        assert "error rate 50.0% over the last 10 checks" in slack.text_of(message)

        site.version = "0.14.1"  # the deploy did not land
        await ticks(monitor, store, now, 3)
        [wrong] = incidents(slack, "build-info")
        assert "reports version `0.14.1`, but `0.15.0` was deployed here" in slack.text_of(wrong)
    finally:
        await monitor.close()


async def test_degradation_warns_quietly_then_escalates_and_pages(
    start_bot, git_remote, tmp_path: Path, site: HealthSite
):
    bot = await start_bot(make_config(git_remote, tmp_path, extra=checks(site)), role="web")
    store, slack = bot.services.store, bot.slack
    await deployed(store, "0.14.0")
    site.version = "0.14.0"
    monitor = Monitor(bot.services)
    try:
        site.delay = 0.2  # the baseline, before the release
        now = await ticks(monitor, store, 0.0, 4)
        await deployed(store, "0.15.0")
        site.version = "0.15.0"
        site.delay = 0.27  # about 35% slower: more than 20%, not more than 50%
        now = await ticks(monitor, store, now, 5)
        [message] = incidents(slack)
        text = slack.text_of(message)
        assert "WARNING · production · health" in text and "slower than before this release" in text
        assert "U0ONCALL" not in text and "rollback_start" not in json.dumps(message.blocks)

        site.delay = 0.5  # 150% slower: critical, and now on-call hears of it
        await ticks(monitor, store, now, 3)
        text = slack.text_of(slack.messages()[message.ts])
        assert "CRITICAL · production · health" in text and "<@U0ONCALL>" in text
        assert "Now *critical*" in thread_text(slack, message)
        assert "<@U0ONCALL>" in thread_text(slack, message)
        assert len(incidents(slack)) == 1
    finally:
        await monitor.close()


async def test_two_replicas_check_once_and_alert_once(
    start_bot, git_remote, tmp_path: Path, site: HealthSite
):
    cfg = make_config(git_remote, tmp_path, extra=checks(site, tick=0.05, interval=0.2))
    first = await start_bot(cfg, role="scheduler", name="one")
    await start_bot(cfg, role="scheduler", name="two")
    store, slack = first.services.store, first.slack
    await deployed(store)
    site.status = 500
    await slack.wait_for(lambda: incidents(slack), timeout=10)
    await asyncio.sleep(2.0)
    assert len(incidents(slack)) == 1
    assert len(slack.calls_to("chat.postMessage")) == 1
    # Each check ran about once per interval, not once per replica.
    results = [
        Result.from_json(r)
        for r in await first.services.redis.lrange(
            store.keys.check_results("production", "health"), 0, -1
        )
    ]
    times = sorted(r.at for r in results)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.19, gaps


async def test_after_production_deploy_the_window_summary_lands_in_the_release_thread(
    start_bot, git_remote, tmp_path: Path, site: HealthSite
):
    extra = checks(site, tick=0.05, interval=0.1, window=2.0)
    bot = await start_bot(production_config(git_remote, tmp_path, extra=extra))
    slack = bot.slack
    message = await candidate(bot)
    await bot.click(message, "gate_approve", gate="qa")
    await slack.wait_for(
        lambda: "Ready for production" in slack.text_of(release_message(slack, "v0.15.0-rc.1"))
    )
    await bot.command("final", user="U0ALICE", user_name="alice")
    await live(bot)

    def summary() -> Any:
        return next(
            (
                m
                for m in slack.thread(message.ts)
                if "after" in slack.text_of(m) and "Checks run" in slack.text_of(m)
            ),
            None,
        )

    posted = await slack.wait_for(summary, timeout=15)
    text = slack.text_of(posted)
    assert "*production* after" in text and "`0.15.0`: *healthy*" in text
    assert "p95 latency" in text and "Latency over the window:" in text
    window = [
        e
        for e in await bot.services.store.audit_entries("0.15.0-rc.1")
        if e["action"] == "monitor.window"
    ]
    assert window and window[0]["outcome"] == "healthy"

    site.status = 502  # after the window: incidents go to the release's thread too
    incident = await slack.wait_for(lambda: next(iter(incidents(slack)), None), timeout=10)
    assert incident.thread_ts == message.ts
    for _ in range(50):  # the tick that posted it saves the check's state right after
        health = await health_report(bot, "health production")
        if "critical" in health:
            break
        await asyncio.sleep(0.1)
    assert "production* · health — 🔴 critical" in health and "HTTP 502" in health
    assert "build-info — ✅ healthy" in health
    wrong = slack.text_of(await bot.command("health nowhere"))
    assert "nowhere" in wrong and "production" in wrong


async def test_a_failed_deploy_is_a_critical_incident_in_the_release_thread(
    start_bot, git_remote, tmp_path: Path, site: HealthSite
):
    bot = await start_bot(
        make_config(git_remote, tmp_path, deploy_env="DEPLOY_FAIL=boom", extra=checks(site))
    )
    slack = bot.slack
    await bot.command("rc --description infra")
    incident = await slack.wait_for(
        lambda: next(
            (
                m
                for m in slack.messages().values()
                if "deploy failed" in slack.text_of(m) and "CRITICAL" in slack.text_of(m)
            ),
            None,
        ),
        timeout=20,
    )
    text = slack.text_of(incident)
    assert "CRITICAL · staging · deploy failed" in text and "<@U0ONCALL>" in text
    assert incident.thread_ts == release_message(slack, "v0.15.0-rc.1").ts
    for _ in range(50):  # the incident's state is saved once its message is posted
        health = await health_report(bot, "health staging")
        if "staging* · deploy" in health:
            break
        await asyncio.sleep(0.1)
    assert "staging* · deploy" in health and "the deploy of `v0.15.0-rc.1` failed" in health


async def test_release_health_acks_at_once_and_answers_privately_after(
    start_bot, git_remote, tmp_path: Path, site: HealthSite
):
    bot = await start_bot(make_config(git_remote, tmp_path, extra=checks(site)), role="web")
    store, slack = bot.services.store, bot.slack
    await deployed(store)
    monitor = Monitor(bot.services)
    try:
        site.status = 503
        await ticks(monitor, store, 1000.0, 3)
    finally:
        await monitor.close()

    ack = await bot.command("health production")
    # The ack says it is coming; the report itself is read after it, however many checks.
    assert "Reading the health checks" in slack.text_of(ack) and ack.get("blocks") is None
    [answer] = await slack.wait_for(
        lambda: [c for c in slack.calls_to("response_url") if "Health checks" in str(c.params)]
    )
    assert answer.params["response_type"] == "ephemeral"
    assert validate_blocks(answer.params["blocks"], where="health") == []
    report = slack.text_of(answer.params)
    assert "health" in report and "build-info" in report and "HTTP 503" in report

    ack = await bot.command("health nowhere")
    assert "nowhere" in slack.text_of(ack) and "production" in slack.text_of(ack)


async def test_a_degraded_window_marks_the_version_failed_for_rollbacks(
    start_bot, git_remote, tmp_path: Path, site: HealthSite
):
    """A rollback never goes back by itself to a version whose window was degraded there."""
    extra = checks(site, tick=0.05, interval=0.1, window=1.5)
    bot = await start_bot(production_config(git_remote, tmp_path, extra=extra))
    site.flap = True  # every other answer a 500: far over the window's error rate
    await in_production(bot, git_remote)
    history: list[dict[str, str]] = []
    for _ in range(100):
        history = await bot.services.store.environment_history("production")
        if "0.15.0" in rollbacks.known_bad(history):
            break
        await asyncio.sleep(0.1)
    assert "0.15.0" in rollbacks.known_bad(history), history
    windows = [
        e["outcome"]
        for e in await bot.services.store.audit_entries()
        if e["action"] == "monitor.window"
    ]
    assert windows == ["degraded"]


async def test_after_a_rollback_incidents_go_to_the_thread_of_the_release_rolled_back_to(
    start_bot, git_remote, tmp_path: Path, site: HealthSite
):
    extra = checks(site, tick=0.05, interval=0.1, window=0.5)
    bot = await start_bot(production_config(git_remote, tmp_path, extra=extra))
    slack = bot.slack
    for n, tag in enumerate(("v0.15.0", "v0.16.0")):
        if n:
            git_remote.commit("the next change")
            git_remote.push()
        message = await candidate(bot, f"{tag}-rc.1")
        await bot.click(message, "gate_approve", gate="qa")
        await slack.wait_for(
            lambda tag=tag: (
                "Ready for production" in slack.text_of(release_message(slack, f"{tag}-rc.1"))
            )
        )
        await bot.command("final", user="U0ALICE", user_name="alice")
        await live(bot, tag)
    await bot.command('rollback --reason "errors"', user="U0BOB", user_name="bob")
    store = bot.services.store
    for _ in range(100):
        runs = (await store.environment_versions(["production"]))["production"]
        if runs.get("version") == "0.15.0":
            break
        await asyncio.sleep(0.1)
    assert runs["version"] == "0.15.0" and runs["release"] == "0.15.0-rc.1"
    site.status = 502
    incident = await slack.wait_for(
        lambda: next(iter(incidents(slack, "health")), None), timeout=10
    )
    assert incident.thread_ts == release_message(slack, "v0.15.0-rc.1").ts


async def test_an_unknown_environment_learns_what_runs_from_its_build_info(
    start_bot, git_remote, tmp_path: Path, site: HealthSite
):
    """Day one: production was never deployed by the bot; its /build-info says v0.14.1, a tag
    of the repository, so that is what the bot takes it to run (audited), and rollbacks,
    hotfixes and the flags-ready gate start from it."""
    site.version = "0.14.1"
    bot = await start_bot(production_config(git_remote, tmp_path, extra=checks(site)))
    store = bot.services.store
    # The version index, as the scheduler's version-index job builds it within a minute.
    await version_history.rebuild_version_index(bot.services)
    runs: dict[str, str] = {}
    for _ in range(100):
        runs = (await store.environment_versions(["production"]))["production"]
        if runs.get("version"):
            break
        await asyncio.sleep(0.1)
    assert (runs["version"], runs["tag"]) == ("0.14.1", "v0.14.1")
    assert runs["sha"] == git_remote.remote_tags()["v0.14.1"]
    [entry] = await store.environment_history("production")
    assert entry["adopted"] == "reported by its build-info check"
    learnt = [
        e["reason"] for e in await store.audit_entries() if e["action"] == "environment.adopt"
    ]
    assert learnt == ["v0.14.1: reported by its build-info check"]
    assert "`v0.14.1`" in bot.slack.text_of(await bot.command("status"))
