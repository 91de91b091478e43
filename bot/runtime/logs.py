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
import logging
import re
import time
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

MAX_MESSAGE = 2000
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
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
        return super().formatMessage(record)


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


def configure(level: int) -> None:
    """The logging of `releasebot serve`: one line per record, Redis outages condensed."""
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter(FORMAT))
    handler.addFilter(OUTAGE)
    logging.basicConfig(level=level, handlers=[handler], force=True)
