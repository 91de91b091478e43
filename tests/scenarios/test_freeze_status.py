"""How freezes are shown (issue 19): each service's line in the status of a bot of several
shows its frozen environments, the file's and Slack's; a status snapshot is not served past
the end of a freeze it shows, nor the expiry of a freeze request it lists; and a freeze that
ends by itself is told once in the channel, by one of two scheduler replicas. The real bot
(signed requests to its server), Redis and the Slack stand-in; the bots' clocks are the
test's."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from bot.devtools.slack_stand_in import SlackStandIn
from bot.domain.actors import BOT
from bot.domain.config import Config
from bot.runtime.fleet import Fleet
from bot.runtime.web import Bot
from bot.services.freeze_environments import announce_ended
from tests.helpers.bot import RunningBot, make_settings
from tests.helpers.config import make_config
from tests.helpers.repos import GitRemote, messy_remote

# Christmas Eve 2030, noon in Berlin: inside the api's Year-end freeze below.
NOON = datetime(2030, 12, 24, 11, 0, tzinfo=UTC).timestamp()
# 2030-12-24 18:00 and 2030-12-27 09:00 in Berlin (UTC+1), when the freezes below end.
EVENING = datetime(2030, 12, 24, 17, 0, tzinfo=UTC).timestamp()
YEAR_END = datetime(2030, 12, 27, 8, 0, tzinfo=UTC).timestamp()
BERLIN = """
[freeze]
timezone = "Europe/Berlin"
"""
YEAR_END_FREEZE = """
[[freezes]]
from = "2030-12-20 00:00"
until = "2030-12-27 09:00"
timezone = "Europe/Berlin"
reason = "Year-end"
environments = ["production"]
"""


class Clock:
    """The bots' clock, moved by the test (every replica reads the same one)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def lines_of(bot: RunningBot, answer: dict[str, object]) -> dict[str, str]:
    """The status of all services, by service name."""
    text = bot.slack.text_of(answer)
    return {line.split("*")[1]: line for line in text.splitlines() if line.startswith("*")}


def two_services(tmp_path: Path, git_remote: GitRemote, extra: str = "") -> list[Config]:
    """web (#web-releases) and api (#api-releases, with the Year-end freeze of production),
    each with its own remote, both in Berlin's time."""
    for folder in ("api", "web-log", "api-log"):
        (tmp_path / folder).mkdir()
    api_remote = messy_remote(tmp_path / "api")

    def named(config: Config, name: str, channel: str) -> Config:
        slack = dataclasses.replace(config.slack, channel=channel)
        return dataclasses.replace(config, service=name, slack=slack)

    web = make_config(git_remote, tmp_path / "web-log", extra=BERLIN + extra)
    api = make_config(api_remote, tmp_path / "api-log", extra=BERLIN + YEAR_END_FREEZE + extra)
    return [named(web, "web", "#web-releases"), named(api, "api", "#api-releases")]


@pytest.fixture
async def start_web(
    prefix: str, slack: SlackStandIn, tmp_path: Path
) -> AsyncIterator[Callable[[list[Config], float], Awaitable[RunningBot]]]:
    """The web role alone (no scheduler: nothing is announced, nothing removed) of a bot of
    these services, its status snapshots good for `max_age`."""
    bots: list[Bot] = []
    http = aiohttp.ClientSession()

    async def start(configs: list[Config], max_age: float) -> RunningBot:
        settings = dataclasses.replace(
            make_settings(prefix, slack, tmp_path / "state"), status_max_age=max_age
        )
        bot = Bot(Fleet.create(settings, configs), "web")
        await bot.start(port=0, host="127.0.0.1")
        bots.append(bot)
        return RunningBot(bot=bot, services=bot.fleet.first, slack=slack, http=http)

    yield start
    for bot in bots:
        await bot.stop()
    await http.close()


def set_clock(bot: RunningBot, clock: Clock) -> None:
    for each in bot.bot.fleet.services:
        each.store.clock = clock


async def test_each_service_line_shows_its_freezes_from_the_file_and_from_slack(
    start_web, git_remote: GitRemote, tmp_path: Path
):
    bot = await start_web(two_services(tmp_path, git_remote), 0.0)
    set_clock(bot, Clock(NOON))
    web, api = bot.bot.fleet.services
    await bot.command(
        'freeze staging --until "2030-12-24 18:00" --reason "db migration"',
        channel="#web-releases",
    )
    lines = lines_of(bot, await bot.command("status"))
    assert "🧊 staging frozen until Dec 24 18:00 Europe/Berlin (db migration)" in lines["web"]
    assert "production frozen" not in lines["web"]
    assert "🧊 production frozen until Dec 27 09:00 Europe/Berlin (Year-end)" in lines["api"]
    assert "staging frozen" not in lines["api"]

    # A service's own status reads its freezes through its own records: web's Slack freeze
    # is in web's, and nowhere in the api's.
    assert await web.freeze_records.active("staging", NOON)
    assert await api.freeze_records.active("staging", NOON) == []
    full_web = bot.slack.text_of(await bot.command("status web"))
    assert "🧊 *staging* frozen until 2030-12-24 18:00 Europe/Berlin by <@U0ALICE>" in full_web
    full_api = bot.slack.text_of(await bot.command("status api"))
    assert "🧊 *production* frozen until 2030-12-27 09:00 Europe/Berlin" in full_api
    assert "staging* frozen" not in full_api

    # Past its end, a freeze is no longer shown, though nobody removed it yet.
    set_clock(bot, Clock(EVENING))
    lines = lines_of(bot, await bot.command("status"))
    assert "🧊" not in lines["web"] and "🧊 production" in lines["api"]


async def test_a_status_snapshot_is_not_served_past_the_end_of_a_freeze_it_shows(
    start_web, git_remote: GitRemote, tmp_path: Path
):
    """Snapshots good for a minute: a change made elsewhere stays unseen (so the snapshot
    really answers), but a freeze it shows ending drops it, with nothing else happening."""
    bot = await start_web(two_services(tmp_path, git_remote), 60.0)
    clock = Clock(YEAR_END - 60)
    set_clock(bot, clock)
    _, api = bot.bot.fleet.services
    assert "🧊 production" in lines_of(bot, await bot.command("status"))["api"]
    assert "🧊 *production*" in bot.slack.text_of(await bot.command("status api"))
    # Another process (a worker) records a deploy: neither snapshot knows yet.
    await api.store.set_environment_version("staging", "1.0.0", "v1.0.0", "abc")
    assert "v1.0.0" not in lines_of(bot, await bot.command("status"))["api"]
    assert "v1.0.0" not in bot.slack.text_of(await bot.command("status api"))

    clock.now = YEAR_END  # the Year-end freeze ends
    line = lines_of(bot, await bot.command("status"))["api"]
    assert "🧊" not in line and "staging `v1.0.0`" in line
    full = bot.slack.text_of(await bot.command("status api"))
    assert "🧊" not in full and "v1.0.0" in full


def said(slack: SlackStandIn, channel: str, what: str) -> int:
    """How many times the bot said `what` in `channel` (its messages' blocks: the outbox may
    say several things in one message)."""
    return sum(
        slack.text_of(m.blocks).count(what)
        for m in slack.messages().values()
        if m.channel == slack.channel_id(channel) and m.thread_ts is None
    )


async def test_a_freeze_that_ends_by_itself_is_told_once_with_two_schedulers(
    start_bot, git_remote: GitRemote, tmp_path: Path
):
    """Two replicas run the scheduler (each on a quick tick); the bots' clock passes the end
    of a freeze set from Slack, then of one of the file while Slack's holds on: each end is
    told once, with when it opens, and audited once by the bot."""
    ticks = "\n[monitoring]\ntick_seconds = 0.2\n"
    config = make_config(git_remote, tmp_path, extra=BERLIN + YEAR_END_FREEZE + ticks)
    bot = await start_bot(config)
    second = await start_bot(config, role="scheduler", name="second")
    clock = Clock(NOON)
    bot.services.store.clock = second.services.store.clock = clock
    await bot.command(
        'freeze staging --until "2030-12-24 18:00" --reason "db migration"',
        user="U0ALICE",
        user_name="alice",
    )
    await bot.command(
        'freeze production --until "2030-12-28 09:00" --reason "payments"',
        user="U0BOB",
        user_name="bob",
    )
    await bot.slack.wait_for(lambda: said(bot.slack, "#releases", "froze") == 2)

    def told(what: str) -> int:
        return said(bot.slack, "#releases", what)

    clock.now = EVENING
    staging = "☀️ *staging*'s freeze (db migration) ended; it is open for changes now."
    await bot.slack.wait_for(lambda: told(staging))
    clock.now = YEAR_END
    production = (
        "☀️ *production*'s freeze (Year-end) ended; it opens tomorrow 09:00 Europe/Berlin, in 1 day."
    )
    await bot.slack.wait_for(lambda: told(production))
    # Several more ticks of both replicas: nothing is told again.
    await asyncio.sleep(1.0)
    assert told("freeze (db migration) ended") == 1
    assert told("freeze (Year-end) ended") == 1
    ends = [
        (e["environment"], e["user_id"])
        for e in await bot.services.store.audit_entries()
        if e["action"] == "freeze.end"
    ]
    assert sorted(ends) == [("production", BOT.user_id), ("staging", BOT.user_id)]
    assert await bot.services.freeze_records.ended(["staging", "production"], clock.now) == []


async def test_replicas_racing_over_the_same_ends_tell_each_once(
    start_bot, git_remote: GitRemote, tmp_path: Path
):
    """Without the scheduler's one-winner ticks: two replicas' services run the announcement
    at once, again and again, over a freeze from Slack and one of the file that ended."""
    config = make_config(git_remote, tmp_path, extra=BERLIN + YEAR_END_FREEZE)
    first = await start_bot(config, role="web")
    second = await start_bot(config, role="web", name="second")
    clock = Clock(NOON)
    first.services.store.clock = second.services.store.clock = clock
    await first.command('freeze staging --until "2030-12-24 18:00" --reason "db migration"')
    clock.now = YEAR_END + 1
    told = await asyncio.gather(*(announce_ended(each.services) for each in [first, second] * 4))
    assert sum(told) == 2
    ends = [
        e["environment"]
        for e in await first.services.store.audit_entries()
        if e["action"] == "freeze.end"
    ]
    assert sorted(ends) == ["production", "staging"]
    await first.slack.wait_for(lambda: said(first.slack, "#releases", "ended; it is open") == 2)
    await asyncio.sleep(0.3)  # the outbox's pace: anything more would be said by now
    assert said(first.slack, "#releases", "freeze (db migration) ended") == 1
    assert said(first.slack, "#releases", "freeze (Year-end) ended") == 1


# Christmas Eve 2030 in Berlin: deploys to production closed 16:00-18:00 (15:00-17:00 UTC).
AFTERNOON_DENY = """
[[windows]]
kind = "deny"
cron = "0 16 * * *"
duration = "2h"
timezone = "Europe/Berlin"
environments = ["production"]
"""


async def test_status_shows_an_environment_a_window_closes_until_it_opens(
    start_web, git_remote: GitRemote, tmp_path: Path
):
    """Snapshots good for a minute, as above: the window's end, with nothing else happening,
    drops the ones that show it closed (the service's own status, and its line among all)."""
    bot = await start_web(two_services(tmp_path, git_remote, AFTERNOON_DENY), 60.0)
    clock = Clock(EVENING - 1800)  # 17:30 in Berlin
    set_clock(bot, clock)
    shown = bot.slack.text_of(await bot.command("status web"))
    assert (
        "⏸ *production* closed for changes: inside the deny window daily 16:00\u201318:00 "
        "Europe/Berlin; it opens today 18:00 Europe/Berlin, in 30 min" in shown
    ), shown
    assert "*staging* closed" not in shown
    line = lines_of(bot, await bot.command("status"))["web"]
    assert "⏸ production closed, opens today 18:00 Europe/Berlin, in 30 min" in line, line

    clock.now = EVENING  # 18:00: the window closes, production opens
    assert "Deploy windows" not in bot.slack.text_of(await bot.command("status web"))
    assert "⏸" not in lines_of(bot, await bot.command("status"))["web"]


async def test_a_status_snapshot_is_not_served_past_the_expiry_of_a_request_it_shows(
    start_web, git_remote: GitRemote, tmp_path: Path
):
    """Snapshots good for a minute, as above: a freeze request that waits for approvals is
    shown until it expires unapproved, and then no longer, with nothing else happening."""
    waiting = BERLIN + 'required = 1\napprovers = ["U0BOB"]\nrequest_hours = 1\n'
    bot = await start_web([make_config(git_remote, tmp_path, extra=waiting)], 60.0)
    clock = Clock(NOON)
    set_clock(bot, clock)
    await bot.command('freeze production --until "2030-12-24 18:00" --reason "db migration"')
    shown = bot.slack.text_of(await bot.command("status"))
    assert "⏳ *production* freeze until" in shown and "db migration" in shown, shown

    clock.now = NOON + 3600  # an hour later: the request expires unapproved
    assert "⏳" not in bot.slack.text_of(await bot.command("status"))
