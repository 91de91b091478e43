"""One bot, several services (issue 18): each with its own repository, channel, state and
queue; a command names its service or comes from its channel; a lock in one never blocks
another; the same version number in two services stays apart."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.devtools.slack_stand_in import SlackStandIn
from bot.domain.config import Config
from bot.domain.fleet import parse_services
from bot.runtime.fleet import Fleet
from bot.runtime.web import Bot
from tests.helpers.bot import RunningBot, make_settings
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


def twenty_services(remote: GitRemote) -> tuple[Config, ...]:
    """Twenty services releasing one repository, read from one config file as the bot reads
    it: shared environments, each service its channel and its own tag prefix (a repository
    shared by services needs one each: bot.domain.fleet)."""
    services = "".join(
        f"""
[[services]]
name = "s{n:02d}"
slack = {{ channel = "#s{n:02d}-releases" }}
repository = {{ tag_prefix = "s{n:02d}/v" }}
"""
        for n in range(20)
    )
    text = f"""
[repository]
url = "{remote.bare}"
branch = "main"

[slack]
channel = "#releases"

[worker]
shutdown_grace_seconds = 0

[[environments]]
name = "staging"
deploy_command = "true"

[[environments]]
name = "production"
deploy_command = "true"
{services}"""
    return parse_services(tomllib.loads(text))


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    """`check()` once it returns something truthy (polled every 0.05 s)."""
    deadline = time.monotonic() + timeout
    while not (found := await check()):
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.05)
    return found


async def test_twenty_services_in_one_bot_a_command_acts_on_its_service_alone(
    start_bot, git_remote: GitRemote
):
    configs = twenty_services(git_remote)
    tags_before = set(git_remote.remote_tags())
    bot = await start_bot(configs)
    fleet = bot.bot.fleet
    assert fleet.names == [f"s{n:02d}" for n in range(20)]
    by_name = {each.config.service: each for each in fleet.services}
    ack = bot.slack.text_of(await bot.command("rc s07"))
    assert "Follow along in #s07-releases" in ack
    [release] = await eventually(by_name["s07"].store.releases_in_flight)
    assert release.tag.startswith("s07/v")
    await eventually(lambda: asyncio.sleep(0, release.tag in git_remote.remote_tags()))
    # The one tag pushed is s07's; no other service made a candidate or holds anything.
    assert set(git_remote.remote_tags()) - tags_before == {release.tag}
    for name, each in by_name.items():
        if name != "s07":
            assert await each.store.releases_in_flight() == [], name

    async def on_staging() -> bool:  # s07's candidate deployed, its deploy lock let go
        status = await by_name["s07"].store.status(["staging"])
        deployed = status.versions.get("staging", {}).get("tag") == release.tag
        return deployed and await by_name["s07"].locks.holder("staging") is None

    await eventually(on_staging)
    # A lock typed in one service's channel locks that service's environment only.
    ack = bot.slack.text_of(
        await bot.command('lock staging --reason "db migration"', channel="#s12-releases")
    )
    assert "locked" in ack.lower()
    locked = [name for name, each in by_name.items() if await each.locks.holder("staging")]
    assert locked == ["s12"]
    # The status of all shows both, each on its own service's line only.
    status = bot.slack.text_of(await bot.command("status"))
    assert "20 services" in status
    lines = {line.split("*")[1]: line for line in status.splitlines() if line.startswith("*s")}
    assert sorted(lines) == sorted(by_name)
    assert [name for name, line in lines.items() if release.tag in line] == ["s07"]
    assert [name for name, line in lines.items() if "🔒" in line] == ["s12"]
    assert sum("in flight: nothing" in line for line in lines.values()) == 19


async def test_a_one_service_bot_upgraded_to_two_keeps_its_state_with_legacy_keys(
    start_bot, git_remote: GitRemote, tmp_path: Path
):
    """A bot of one service makes a candidate; then the same config runs as one of two
    services with `legacy_keys = true`: it reads the state it had, the new one starts empty."""
    web, api = two_services(tmp_path, git_remote)
    alone = await start_bot(web, name="alone")
    await alone.command("rc")
    await gates_done(alone, "#web-releases")
    assert alone.services.store.keys.prefix == (prefix := alone.services.settings.redis_prefix)
    await alone.bot.stop()  # the upgrade: the old bot stops, the new one starts

    both = await start_bot([dataclasses.replace(web, legacy_keys=True), api], name="both")
    web_services, api_services = both.bot.fleet.services
    assert web_services.store.keys.prefix == prefix  # the one-service bot's keys
    assert api_services.store.keys.prefix != prefix
    assert web_services.clone_path != api_services.clone_path
    status = both.slack.text_of(await both.command("status web"))
    assert "v0.15.0-rc.1" in status
    release = await web_services.store.get_release("0.15.0-rc.1")
    assert release is not None and release.phase == "active"
    assert await api_services.store.releases_in_flight() == []
    assert await api_services.store.get_release("0.15.0-rc.1") is None
    status = both.slack.text_of(await both.command("status api"))
    assert "v0.15.0-rc.1" not in status
    everything = both.slack.text_of(await both.command("status"))
    lines = [line for line in everything.splitlines() if line.startswith("*")]
    assert [line.split("*")[1] for line in lines] == ["web", "api"]
    assert "v0.15.0-rc.1" in lines[0] and "in flight: nothing" in lines[1]


@pytest.fixture
async def start_fleet_with_max_age(
    prefix: str, slack: SlackStandIn, tmp_path: Path
) -> AsyncIterator[Callable[[list[Config], float], Awaitable[RunningBot]]]:
    """A web bot of several services whose status snapshots are good for `max_age`."""
    bots: list[Bot] = []
    http = aiohttp.ClientSession()

    async def start(configs: list[Config], max_age: float) -> RunningBot:
        settings = dataclasses.replace(
            make_settings(prefix, slack, tmp_path / "state"), status_max_age=max_age
        )
        fleet = Fleet.create(settings, configs)
        bot = Bot(fleet, "web")
        await bot.start(port=0, host="127.0.0.1")
        bots.append(bot)
        return RunningBot(bot=bot, services=fleet.first, slack=slack, http=http)

    yield start
    for bot in bots:
        await bot.stop()
    await http.close()


async def test_the_status_of_all_is_read_once_and_shows_what_was_just_done(
    start_fleet_with_max_age, git_remote: GitRemote, tmp_path: Path
):
    """The status of all services is served from one shared read (a change made elsewhere
    stays unseen while it is good), but a change made through the bot drops it at once."""
    web, api = two_services(tmp_path, git_remote)
    bot = await start_fleet_with_max_age([web, api], 60.0)
    _, api_services = bot.bot.fleet.services

    async def lines() -> list[str]:
        text = bot.slack.text_of(await bot.command("status"))
        return [line for line in text.splitlines() if line.startswith("*")]

    assert all("staging `—`" in line for line in await lines())
    # Another process (a worker) records a deploy: the shared read does not know yet.
    await api_services.store.set_environment_version("staging", "0.14.1", "v0.14.1", "abc")
    assert all("staging `—`" in line for line in await lines())
    # A lock through this bot, in web's channel: the next status of all reads anew.
    await bot.command('lock production --reason "freeze"', channel="#web-releases")
    web_line, api_line = await lines()
    assert "🔒 production" in web_line and "🔒" not in api_line
    assert "staging `v0.14.1`" in api_line
