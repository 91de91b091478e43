"""Log lines that can be neither forged nor flooded.

Every record's message is one line: control characters (a raw newline in a request body or a
command's text could start a line that reads "CRITICAL … approved by …"), line separators and
bidi controls are escaped, and the message is bounded. Tracebacks stay as they are: they are
ours, not user text.

An outage of Redis is one line when it starts and one when it ends, with the count of errors
in between, instead of a traceback for every attempt of every loop that uses Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp.http_exceptions import HttpProcessingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.adapters import metrics

MAX_MESSAGE = 2000
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(context_text)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
# Libraries whose INFO lines are chatter to an operator (APScheduler alone wrote 36 lines a
# minute on an idle bot, one per job run): WARNING and up, unless LOG_LEVEL=DEBUG.
CHATTY = ("apscheduler", "saq", "slack_bolt", "slack_sdk", "aiohttp.access", "asyncio")

# What the running code is about (release, environment, job): on every line it logs.
_CONTEXT: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "log_context", default=()
)


@contextlib.contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Lines logged inside the block (in this task and the tasks it starts) carry `fields`
    (empty ones left out) beside what outer blocks set."""
    merged = {**dict(_CONTEXT.get()), **{k: v for k, v in fields.items() if v}}
    token = _CONTEXT.set(tuple(merged.items()))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class WithContext(logging.Filter):
    """Puts the current log context on each record (`context`, and `context_text` for the
    text format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = dict(_CONTEXT.get())
        record.context = context
        record.context_text = (
            " [" + " ".join(f"{k}={loggable(v, 200)}" for k, v in context.items()) + "]"
            if context
            else ""
        )
        return True


_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char == "\n":
        return "\\n"
    if char == "\r":
        return "\\r"
    if char == "\t":
        return "\\t"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def loggable(text: object, limit: int = MAX_MESSAGE) -> str:
    """`text` fit for one log line: unsafe characters escaped, at most `limit` characters."""
    safe = _UNSAFE.sub(_escape, str(text))
    return safe if len(safe) <= limit else f"{safe[:limit]}… ({len(safe)} characters)"


class OneLineFormatter(logging.Formatter):
    """Each record's message on one bounded line (its traceback, if any, follows as usual)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = loggable(record.message)
        if not hasattr(record, "context_text"):
            record.context_text = ""
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context's fields, and the
    traceback as one string. JSON escapes what could break a line; the message is bounded."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        event: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message if len(message) <= MAX_MESSAGE else loggable(message),
        }
        for key, value in getattr(record, "context", {}).items():
            event.setdefault(key, value)
        if record.exc_info:
            event["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(event).decode()


UNREACHABLE = (RedisConnectionError, RedisTimeoutError, ConnectionRefusedError)


def _is_outage(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    while exc is not None:
        if isinstance(exc, UNREACHABLE):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class RedisOutage(logging.Filter):
    """Turns the errors of a Redis outage into one line when it starts (the rest are counted)
    and one when `watch` sees Redis answer again."""

    def __init__(self) -> None:
        super().__init__()
        self.since: float | None = None
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not _is_outage(record):
            return True
        metrics.REDIS_ERRORS.inc()
        if self.since is not None:
            self.suppressed += 1
            return False
        self.since = time.monotonic()
        assert record.exc_info is not None
        error = record.exc_info[1]
        record.msg = "Redis unreachable (%s: %s); counting further errors until it answers"
        record.args = (type(error).__name__, error)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.ERROR, "ERROR"
        return True

    def recovered(self) -> None:
        if self.since is None:
            return
        took, count = time.monotonic() - self.since, self.suppressed
        self.since, self.suppressed = None, 0
        logging.getLogger("bot.redis").warning(
            "Redis is reachable again after %.1fs (%d more errors while it was down)", took, count
        )

    async def watch(self, redis: Any, every: float = 1.0) -> None:
        """While an outage is on, ask Redis every `every` seconds; log when it answers."""
        while True:
            await asyncio.sleep(every)
            if self.since is None:
                continue
            with contextlib.suppress(Exception):
                await asyncio.wait_for(redis.ping(), every)
                self.recovered()


OUTAGE = RedisOutage()


class MalformedHttp(logging.Filter):
    """aiohttp's own parser refuses malformed HTTP (control characters in a header, a body
    that does not decompress) before the bot sees it, and logs a traceback at ERROR for each:
    anyone could fill the log. One warning line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        seen: set[int] = set()
        while exc is not None and id(exc) not in seen:
            seen.add(id(exc))
            if isinstance(exc, HttpProcessingError):
                record.msg, record.args = (
                    "refused a malformed HTTP request: %s",
                    (loggable(f"{type(exc).__name__}: {exc.message}", 200),),
                )
                record.exc_info = record.exc_text = None
                record.levelno, record.levelname = logging.WARNING, "WARNING"
                return True
            exc = exc.__cause__ or exc.__context__
        return True


def quiet_malformed_http() -> None:
    """Install MalformedHttp on aiohttp's server logger (once)."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedHttp) for f in server.filters):
        server.addFilter(MalformedHttp())


class LogSettingError(ValueError):
    """LOG_LEVEL or LOG_FORMAT has a value we do not know; the message names it."""


def settings_of(env: Mapping[str, str], terminal: bool) -> tuple[int, str]:
    """The level and format `LOG_LEVEL` and `LOG_FORMAT` ask for: INFO by default, and text
    on a terminal, JSON lines otherwise (what log collectors read)."""
    level = (env.get("LOG_LEVEL") or "INFO").strip().upper()
    if level not in LEVELS:
        raise LogSettingError(f"LOG_LEVEL must be one of {', '.join(LEVELS)}, got {level!r}")
    fmt = (env.get("LOG_FORMAT") or ("text" if terminal else "json")).strip().lower()
    if fmt not in FORMATS:
        raise LogSettingError(f"LOG_FORMAT must be text or json, got {fmt!r}")
    return logging.getLevelName(level), fmt


def configure(level: int | None = None, fmt: str | None = None) -> None:
    """The logging of `releasebot serve`: one line per event, Redis outages condensed, the
    level and format from LOG_LEVEL and LOG_FORMAT unless given."""
    wanted_level, wanted_fmt = settings_of(os.environ, sys.stderr.isatty())
    level = wanted_level if level is None else level
    fmt = wanted_fmt if fmt is None else fmt
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else OneLineFormatter(FORMAT))
    handler.addFilter(WithContext())
    handler.addFilter(OUTAGE)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for name in CHATTY:
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else logging.WARNING)
