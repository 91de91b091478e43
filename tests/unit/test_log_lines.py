"""Log lines an operator's collector reads: JSON or text, with their context, levels chosen by
LOG_LEVEL and LOG_FORMAT, third-party chatter quiet."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from bot.runtime import logs


@pytest.fixture
def captured():
    """The root logger as `configure` leaves it, writing into a buffer; restored after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    levels = {name: logging.getLogger(name).level for name in logs.CHATTY}
    buffer = io.StringIO()

    def configure(fmt: str, level: int = logging.INFO) -> io.StringIO:
        logs.configure(level, fmt)
        root.handlers[0].setStream(buffer)  # type: ignore[attr-defined]
        return buffer

    yield configure
    root.handlers[:], root.level = saved
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_json_lines_carry_logger_level_message_and_context(captured):
    buffer = captured("json")
    log = logging.getLogger("bot.services.deploy_release")
    with logs.log_context(release="1.2.0-rc.1", environment="staging", job="j1"):
        log.warning("deploy of %s took %ds", "v1.2.0-rc.1", 3)
        with logs.log_context(environment="production"):
            try:
                raise RuntimeError("boom\nCRITICAL forged line")
            except RuntimeError:
                log.exception("failed")
    log.info("after\nwards")
    events = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert len(events) == 3  # a message with a newline or a traceback is still one line
    first, second, third = events
    assert first["level"] == "WARNING" and first["logger"] == "bot.services.deploy_release"
    assert first["message"] == "deploy of v1.2.0-rc.1 took 3s"
    assert (first["release"], first["environment"], first["job"]) == ("1.2.0-rc.1", "staging", "j1")
    assert second["environment"] == "production" and second["release"] == "1.2.0-rc.1"
    assert "RuntimeError: boom" in second["traceback"] and "T" in second["time"]
    assert third["message"] == "after\nwards" and "release" not in third


async def test_the_context_follows_tasks_started_inside_it(captured):
    buffer = captured("text")
    log = logging.getLogger("bot.runtime.jobs")

    async def step() -> None:
        log.info("inside")

    with logs.log_context(job="j9"):
        await asyncio.create_task(step())
    log.info("outside")
    inside, outside = buffer.getvalue().splitlines()
    assert inside.endswith("bot.runtime.jobs: inside [job=j9]")
    assert outside.endswith("bot.runtime.jobs: outside")


def test_third_party_info_is_quiet_unless_debugging(captured):
    buffer = captured("text")
    logging.getLogger("apscheduler.executors.default").info('Running job "monitor"')
    logging.getLogger("apscheduler.scheduler").warning("skipped: maximum number of instances")
    assert buffer.getvalue().count("\n") == 1 and "skipped" in buffer.getvalue()
    buffer = captured("text", logging.DEBUG)
    logging.getLogger("apscheduler.executors.default").info('Running job "monitor"')
    assert "Running job" in buffer.getvalue()


def test_log_level_and_format_come_from_the_environment():
    assert logs.settings_of({}, terminal=True) == (logging.INFO, "text")
    assert logs.settings_of({}, terminal=False) == (logging.INFO, "json")
    assert logs.settings_of({"LOG_LEVEL": "debug", "LOG_FORMAT": "TEXT"}, False) == (
        logging.DEBUG,
        "text",
    )
    with pytest.raises(logs.LogSettingError, match="LOG_LEVEL must be one of DEBUG"):
        logs.settings_of({"LOG_LEVEL": "verbose"}, True)
    with pytest.raises(logs.LogSettingError, match="LOG_FORMAT must be text or json"):
        logs.settings_of({"LOG_FORMAT": "xml"}, True)
