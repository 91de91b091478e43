"""One bot, several services (issue 18): each with its own repository, channel, state and
queue; a command names its service or comes from its channel; a lock in one never blocks
another; the same version number in two services stays apart."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from bot.domain.config import Config
from tests.helpers.config import make_config
from tests.helpers.repos import GitRemote, messy_remote


def service(config: Config, name: str, channel: str) -> Config:
    return dataclasses.replace(
        config, service=name, slack=dataclasses.replace(config.slack, channel=channel)
    )


def two_services(tmp_path: Path, git_remote: GitRemote) -> tuple[Config, Config]:
    for folder in ("api", "web-log", "api-log"):
        (tmp_path / folder).mkdir()
    api_remote = messy_remote(tmp_path / "api")
    api_remote.commit("api: a change of its own")
    api_remote.push()
    web = service(make_config(git_remote, tmp_path / "web-log"), "web", "#web-releases")
    api = service(make_config(api_remote, tmp_path / "api-log"), "api", "#api-releases")
    return web, api


async def gates_done(bot: Any, channel: str, tag: str = "v0.15.0-rc.1") -> Any:
    """The release message of `tag` in `channel`, once its automatic gates finished."""

    def done() -> Any:
        for message in bot.slack.messages().values():
            if message.thread_ts is not None or message.channel != bot.slack.channel_id(channel):
                continue
            if (
                message.blocks
                and tag in str(message.blocks[0])
                and (bot.slack.text_of(message).count("passed in") >= 2)
            ):
                return message
        return None

    return await bot.slack.wait_for(done, timeout=30)


async def test_two_services_release_apart_in_their_own_channels(
    start_bot, git_remote: GitRemote, tmp_path: Path
):
    web, api = two_services(tmp_path, git_remote)
    bot = await start_bot([web, api])
    fleet = bot.bot.fleet
    # Named after the sub-command, from anywhere; or typed in the service's own channel.
    ack = bot.slack.text_of(await bot.command("rc web"))
    assert "Follow along in #web-releases" in ack
    ack = bot.slack.text_of(await bot.command("rc", channel="#api-releases"))
    assert "Follow along in #api-releases" in ack
    await gates_done(bot, "#web-releases")
    await gates_done(bot, "#api-releases")
    # The same version number in two services: two releases, apart.
    web_services, api_services = fleet.services
    web_release = await web_services.store.get_release("0.15.0-rc.1")
    api_release = await api_services.store.get_release("0.15.0-rc.1")
    assert web_release is not None and api_release is not None
    assert web_release.sha != api_release.sha
    assert web_services.store.keys.prefix != api_services.store.keys.prefix
    assert web_services.clone_path != api_services.clone_path
    # A lock in one service never blocks the other.
    ack = bot.slack.text_of(
        await bot.command('lock staging --reason "db migration"', channel="#web-releases")
    )
    assert "locked" in ack.lower()
    assert await api_services.locks.holder("staging") is None
    assert await web_services.locks.holder("staging") is not None
    # A click on api's message acts on api's release.
    message = await gates_done(bot, "#api-releases")
    await bot.click(message, "gate_approve", gate="qa")
    api_release = await api_services.store.get_release("0.15.0-rc.1")
    web_release = await web_services.store.get_release("0.15.0-rc.1")
    assert api_release is not None and api_release.gate("qa").status == "passed"
    assert web_release is not None and web_release.gate("qa").status == "pending"


async def test_without_a_service_the_bot_lists_them_and_status_shows_all(
    start_bot, git_remote: GitRemote, tmp_path: Path
):
    web, api = two_services(tmp_path, git_remote)
    bot = await start_bot([web, api])
    ack = bot.slack.text_of(await bot.command("rc"))  # typed in #dev: no service's channel
    assert "several services: `web`, `api`" in ack and "/release rc web" in ack
    ack = bot.slack.text_of(await bot.command("rc shop"))
    assert "`shop` is not one of them" in ack
    await bot.command("rc a")  # a prefix of one service's name only
    await gates_done(bot, "#api-releases")
    status = bot.slack.text_of(await bot.command("status"))
    assert "2 services" in status
    assert "*web* (#web-releases)" in status and "*api* (#api-releases)" in status
    assert "in flight: `v0.15.0-rc.1`" in status
    full = bot.slack.text_of(await bot.command("status api"))
    assert "v0.15.0-rc.1" in full and "2 services" not in full
