"""`GET /metrics`, scraped as Prometheus would and parsed with prometheus_client's own parser:
requests and acks, Slack calls (429s too), jobs, deploys, locks, incidents, with no label
value a user chose."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.config import make_config
from tests.helpers.sites import Fleet
from tests.helpers.steps import candidate

Sample = tuple[str, frozenset[tuple[str, str]]]


async def scrape(bot) -> tuple[dict[Sample, float], str]:
    async with bot.http.get(f"{bot.url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return samples, text


def value(samples: dict[Sample, float], metric: str, /, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


async def test_metrics_count_what_the_bot_did_with_bounded_labels(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(make_config(git_remote, tmp_path))
    # The registry is the process's: these figures are compared with a scrape before.
    before, _ = await scrape(bot)
    await bot.command("status")
    await bot.command("zz-not-a-command <@U0MALLORY> v9.9.9")
    bot.slack.fail_next("chat.postMessage", retry_after=1, times=1)
    await candidate(bot)  # rc: a job, a deploy of staging under its lock, messages (one 429)
    after, text = await scrape(bot)

    def grew(metric: str, /, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    status = {"kind": "command", "name": "/release status"}
    svc = bot.services.config.service  # what the service's own figures are labelled with
    assert grew("releasebot_requests_total", outcome="ok", **status) == 1
    assert grew("releasebot_ack_seconds_count", **status) == 1
    assert grew("releasebot_requests_total", kind="command", name="/release other", outcome="ok")
    assert grew("releasebot_requests_total", kind="command", name="/release rc", outcome="ok")
    assert grew("releasebot_slack_api_calls_total", method="chat.postMessage", status="429") == 1
    assert grew("releasebot_slack_api_calls_total", method="chat.postMessage", status="200") >= 1
    assert grew("releasebot_jobs_total", service=svc, kind="create-rc", outcome="done") == 1
    assert grew("releasebot_jobs_total", service=svc, kind="deploy", outcome="done") == 1
    assert grew("releasebot_job_queue_wait_seconds_count", service=svc, kind="deploy") == 1
    deploys = {"environment": "staging", "outcome": "succeeded"}
    assert grew("releasebot_deploys_total", service=svc, **deploys) == 1
    assert grew("releasebot_lock_holds_total", service=svc, lock="staging") >= 1
    assert grew("releasebot_lock_held_seconds_count", service=svc, lock="staging") >= 1
    for severity in ("warning", "critical"):
        labels = {"service": svc, "environment": "production", "severity": severity}
        assert ("releasebot_open_incidents", frozenset(labels.items())) in after
    # Nothing a user typed or is: no user ID, no version, no free text in any label.
    for unwanted in ("U0ALICE", "U0MALLORY", "0.15.0", "zz-not-a-command"):
        assert unwanted not in text


async def test_each_service_of_a_bot_counts_under_its_own_name(
    start_bot, git_remote, tmp_path: Path
):
    base = make_config(git_remote, tmp_path)
    web = dataclasses.replace(
        base, service="web", slack=dataclasses.replace(base.slack, channel="#web")
    )
    api = dataclasses.replace(
        base,
        service="api",
        slack=dataclasses.replace(base.slack, channel="#api"),
        repository=dataclasses.replace(base.repository, tag_prefix="api-v"),
    )
    bot = await start_bot([web, api])
    before, _ = await scrape(bot)
    await bot.command("rc web")
    await bot.slack.wait_for(lambda: "Automated tests passed" in str(bot.slack.messages()), 30)
    after, _ = await scrape(bot)

    def grew(metric: str, /, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert grew("releasebot_jobs_total", service="web", kind="create-rc", outcome="done") == 1
    assert grew("releasebot_jobs_total", service="api", kind="create-rc", outcome="done") == 0
    assert grew("releasebot_lock_holds_total", service="web", lock="staging") >= 1
    for service in ("web", "api"):  # each service's incidents gauge, read at the scrape
        labels = {"service": service, "environment": "production", "severity": "critical"}
        assert ("releasebot_open_incidents", frozenset(labels.items())) in after


async def test_one_monitoring_tick_probes_every_services_checks(
    start_bot, git_remote, tmp_path: Path
):
    async with Fleet() as site:

        def with_check(name: str, channel: str, n: int) -> Any:
            base = make_config(
                git_remote,
                tmp_path,
                extra=f"""
[monitoring]
tick_seconds = 0.2

[[environments.checks]]
name = "health"
url = "{site.url}/health/{n}"
interval_seconds = 0.2
""",
            )
            return dataclasses.replace(
                base,
                service=name,
                slack=dataclasses.replace(base.slack, channel=channel),
                repository=dataclasses.replace(base.repository, tag_prefix=f"{name}-v"),
            )

        bot = await start_bot([with_check("web", "#web", 1), with_check("api", "#api", 2)])

        async def probed() -> bool:
            samples, _ = await scrape(bot)
            return all(
                value(
                    samples,
                    "releasebot_check_results_total",
                    service=service,
                    environment="production",
                    check="health",
                    outcome="ok",
                )
                >= 2
                for service in ("web", "api")
            )

        for _ in range(100):
            if await probed():
                break
            await asyncio.sleep(0.1)
        assert await probed()
        # One monitoring job, on the first service's scheduler, ticks both.
        jobs = [
            job.id
            for scheduler in bot.bot.schedulers
            for job in scheduler.get_jobs()
            if job.id == "monitor"
        ]
        assert jobs == ["monitor"]
