"""The delivery figures after a real release to production: `/release report` in Slack,
`releasebot report` in a terminal (text and JSON), and the gauges of /metrics."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bot.devtools.slack_stand_in import validate_blocks
from bot.runtime.web import DeliveryFigures
from tests.helpers.config import config_text, environment, production_config, write_config
from tests.helpers.redis_server import REDIS_URL
from tests.helpers.steps import in_production


async def test_a_release_to_production_shows_in_the_delivery_figures(
    start_bot, git_remote, tmp_path: Path, prefix: str
):
    bot = await start_bot(production_config(git_remote, tmp_path))
    await in_production(bot, git_remote)  # v0.14.1 ran; the bot's v0.15.0 replaced it

    before = len(bot.slack.calls_to("response_url"))
    answer = await bot.command("report --since 1d")
    assert answer["text"] == "Working out the delivery figures…"
    [report] = await bot.slack.wait_for(
        lambda: [
            c
            for c in bot.slack.calls_to("response_url")[before:]
            if c.params.get("text") == "Delivery report"
        ],
        timeout=20,
    )
    assert validate_blocks(report.params["blocks"]) == []
    text = bot.slack.text_of(report.params)
    assert "*staging* 1 (" in text and "*production* 1 (" in text
    assert "0% (0 of 1 production deploys)" in text
    # v0.14.1 recorded as deployed (its commit), then v0.15.0 (the one commit since it).
    assert "(2 changes)" in text

    await bot.command("report --since yesterday")
    await bot.slack.wait_for(
        lambda: [
            c
            for c in bot.slack.calls_to("response_url")
            if "`--since`: cannot read 'yesterday' as a time" in bot.slack.text_of(c.params)
        ],
        timeout=10,
    )

    # The same figures in a terminal, as JSON for a script.
    path = write_config(
        tmp_path,
        config_text(
            url=str(git_remote.bare),
            environments=[environment("staging", "true"), environment("production", "true")],
        ),
    )
    env = {
        **os.environ,
        "REDIS_URL": REDIS_URL,
        "RELEASEBOT_REDIS_PREFIX": prefix,
        "RELEASEBOT_STATE_DIR": str(tmp_path / "report-state"),
    }

    async def releasebot(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.runtime.cli",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        return process.returncode or 0, out.decode(), err.decode()

    code, out, _ = await releasebot(
        "report", "--config", str(path), "--since", "1d", "--format", "json"
    )
    assert code == 0
    figures = json.loads(out)
    assert figures["deployment_frequency"]["production"]["deploys"] == 1
    assert figures["change_failure_rate"] == {"production_deploys": 1, "failed": 0, "rate": 0.0}
    assert figures["lead_time_seconds"]["changes"] == 2
    code, out, _ = await releasebot("report", "--config", str(path))
    assert code == 0 and "Change failure rate: 0% (0 of 1 production deploys)" in out
    code, _, err = await releasebot("report", "--config", str(path), "--since", "someday")
    assert code == 2 and "--since: cannot read 'someday' as a time" in err

    # And as gauges, worked out in the background of a scrape.
    figures_task = DeliveryFigures()
    figures_task.refresh(bot.services)
    assert figures_task.task is not None
    await figures_task.task
    async with bot.http.get(f"{bot.url}/metrics") as response:
        page = await response.text()
    gauges = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
    }
    service = ("service", bot.services.config.service)
    per_day = gauges[
        ("releasebot_deployment_frequency_per_day", (("environment", "production"), service))
    ]
    assert abs(per_day - 1 / 30) < 1e-9  # one deploy over the last 30 days
    assert gauges[("releasebot_change_failure_rate", (service,))] == 0.0
