"""The work of several services in one bot: a worker limited to some services leaves the
others' jobs queued for theirs, and the fleet's status line counts a service's incidents."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from bot.domain.config import Config
from tests.helpers.config import make_config
from tests.helpers.repos import GitRemote


def named(config: Config, name: str) -> Config:
    return dataclasses.replace(
        config,
        service=name,
        slack=dataclasses.replace(config.slack, channel=f"#{name}-releases"),
        repository=dataclasses.replace(config.repository, tag_prefix=f"{name}-v"),
    )


async def test_a_worker_limited_to_some_services_leaves_the_others_queued(
    start_bot, git_remote: GitRemote, tmp_path: Path
):
    web = named(make_config(git_remote, tmp_path), "web")
    api = named(make_config(git_remote, tmp_path), "api")
    bot = await start_bot([web, api], workers_for={"web"})
    web_services, api_services = bot.bot.fleet.services
    await bot.command("rc web")
    await bot.command("rc api")

    async def candidate(services) -> object:
        """The service's candidate (its version comes from its own tags: web-v…, api-v…)."""
        in_flight = await services.store.releases_in_flight()
        return in_flight[0] if in_flight else None

    for _ in range(100):
        release = await candidate(web_services)
        if (
            release is not None
            and release.deploys.get("staging")
            and (release.deploys["staging"].status == "succeeded")
        ):
            break
        await asyncio.sleep(0.1)
    release = await candidate(web_services)
    assert release is not None and release.deploys["staging"].status == "succeeded"
    # api's candidate job waits on api's own queue: no worker here takes it.
    assert await candidate(api_services) is None
    assert await api_services.queue.count("queued") >= 1


async def test_the_fleet_status_counts_a_services_open_incidents(
    start_bot, git_remote: GitRemote, tmp_path: Path
):
    web = named(make_config(git_remote, tmp_path, deploy_env="DEPLOY_FAIL=disk-full"), "web")
    api = named(make_config(git_remote, tmp_path), "api")
    bot = await start_bot([web, api])
    await bot.command("rc web")  # its staging deploy fails: an incident opens
    await bot.slack.wait_for(lambda: "deploy failed" in str(bot.slack.messages()), timeout=30)
    status = bot.slack.text_of(await bot.command("status"))
    lines = {line.split("*")[1]: line for line in status.splitlines() if line.startswith("*")}
    assert "1 open incident" in lines["web"] and "incident" not in lines["api"]
