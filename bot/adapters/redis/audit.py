"""Reading the audit trail: streamed from Redis, exported as JSON lines or CSV, shown in Slack.

The trail is the append-only stream written by `Store.audit` (bot.adapters.redis.store; never
trimmed, so it can be large): it is read with XRANGE in batches, never all at once. `since` is
matched against the stream IDs, which Redis assigns in milliseconds when an entry is recorded."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.adapters.redis.store import Keys
from bot.blocks.release import Block, context, escape, header, mention, section, slack_time

FIELDS = ("id", "at", "time_utc", "user_id", "user_name", "channel", "release", "environment",
          "action", "outcome", "reason")
FORMATS = ("jsonl", "csv")
SINCE_FORMS = ("an ISO date or time (2026-11-01, 2026-11-01T12:00:00Z, "
               "2026-11-01T12:00:00+02:00; no offset means UTC), a unix timestamp "
               "(1793491200) or an age (30m, 12h, 7d)")

# ASCII digits only (\d admits any script's), and not so many that a float overflows.
_AGE = re.compile(r"^([0-9]{1,9}(?:\.[0-9]{1,6})?)\s*([smhdw])$", re.IGNORECASE)
_NUMBER = re.compile(r"^[0-9]{1,12}(?:\.[0-9]{1,6})?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

# Slack: at most 50 blocks, section text at most 3000 characters.
MAX_BLOCKS = 50
SECTION_LIMIT = 3000
REASON_LIMIT = 200


# --- reading -----------------------------------------------------------------------------------

async def read_entries(redis: Redis, keys_audit: str, *, since: float | None = None,
                       release: str | None = None,
                       batch: int = 1000) -> AsyncIterator[dict[str, str]]:
    """Yield audit entries oldest first, `batch` at a time from Redis.

    `since` (unix seconds) starts at the first entry recorded at or after it; `release` keeps
    only that release's entries. Each entry is its fields plus `id`, the stream ID.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    start = "-" if since is None else str(max(0, math.ceil(round(since * 1000, 3))))
    while True:
        rows = await redis.xrange(keys_audit, min=start, max="+", count=batch)
        for entry_id, data in rows:
            entry = {"id": _s(entry_id), **{_s(k): _s(v) for k, v in data.items()}}
            if release is None or entry.get("release") == release:
                yield entry
        if len(rows) < batch:
            return
        start = _after(_s(rows[-1][0]))


def _after(stream_id: str) -> str:
    """The smallest stream ID after `stream_id` (XRANGE's "(" needs Redis 6.2)."""
    ms, _, seq = stream_id.partition("-")
    if int(seq or 0) >= 2**64 - 1:
        return f"{int(ms) + 1}-0"
    return f"{ms}-{int(seq or 0) + 1}"


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_since(text: str, now: float) -> float:
    """Unix seconds for an ISO date/time, a unix timestamp or an age before `now`."""
    value = text.strip()
    age = _AGE.match(value)
    if age:
        return now - float(age.group(1)) * _UNITS[age.group(2).lower()]
    if _NUMBER.match(value):
        return float(value)
    try:
        when = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        raise ValueError(f"cannot read {text!r} as a time: use {SINCE_FORMS}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


# --- export ------------------------------------------------------------------------------------

def time_utc(at: str) -> str:
    """ISO 8601 UTC time (milliseconds, "Z") of an entry's `at`; "" when it is not a time."""
    try:
        seconds = float(at)
        return datetime.fromtimestamp(seconds, UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        return ""


def export_row(entry: Mapping[str, str]) -> dict[str, str]:
    """The entry in the export's field order, with `time_utc` added; missing fields are ""."""
    row = {name: entry.get(name, "") for name in FIELDS}
    row["time_utc"] = time_utc(entry.get("at", ""))
    return row


def write_jsonl(entries: Iterable[Mapping[str, str]], out: TextIO) -> int:
    """One JSON object per line, fields in export order; returns how many were written."""
    count = 0
    for entry in entries:
        out.write(json.dumps(export_row(entry), ensure_ascii=False) + "\n")
        count += 1
    return count


def write_csv(entries: Iterable[Mapping[str, str]], out: TextIO, *,
              header_row: bool = True) -> int:
    """CSV (RFC 4180 quoting) with a header row unless told not to; returns the entry count.
    Cells that a spreadsheet would run as a formula are written as text (`spreadsheet_safe`).

    Open files for it with newline="" so quoted newlines inside fields survive.
    """
    writer = csv.DictWriter(out, fieldnames=FIELDS, extrasaction="ignore")
    if header_row:
        writer.writeheader()
    count = 0
    for entry in entries:
        writer.writerow({name: spreadsheet_safe(value)
                         for name, value in export_row(entry).items()})
        count += 1
    return count


# Spreadsheets run a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str) -> str:
    """A CSV cell that a spreadsheet shows as text: a leading ' before a formula character
    (the OWASP advice); JSON lines keep the text as it was."""
    return f"'{value}" if value.startswith(_FORMULA_START) else value


async def export(redis: Redis, keys_audit: str, out: TextIO, *, fmt: str = "jsonl",
                 since: float | None = None, release: str | None = None,
                 batch: int = 1000) -> int:
    """Write the trail (or its part since `since`) to `out`, a batch at a time."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    if fmt == "csv":
        write_csv([], out)
    count = 0
    pending: list[dict[str, str]] = []
    async for entry in read_entries(redis, keys_audit, since=since, release=release,
                                    batch=batch):
        pending.append(entry)
        if len(pending) >= batch:
            count += _write(pending, out, fmt)
            pending = []
    return count + _write(pending, out, fmt)


def _write(entries: list[dict[str, str]], out: TextIO, fmt: str) -> int:
    if fmt == "csv":
        return write_csv(entries, out, header_row=False)
    return write_jsonl(entries, out)


def run_export(*, since: str | None, fmt: str, output: str | None,
               environ: Mapping[str, str], now: float | None = None) -> int:
    """`releasebot audit export`: exit status 0, or 2 with a message on stderr."""
    redis_url = environ.get("REDIS_URL")
    if not redis_url:
        return _fail("set REDIS_URL in the environment to the Redis the bot uses "
                     "(the audit trail is read from there)")
    prefix = environ.get("RELEASEBOT_REDIS_PREFIX") or "releasebot:"
    start = None
    if since is not None:
        try:
            start = parse_since(since, time.time() if now is None else now)
        except ValueError:
            return _fail(f"--since {since!r} is not a time: use {SINCE_FORMS}")
    try:
        return asyncio.run(_export_to(redis_url, Keys(prefix).audit, fmt, start, output))
    except BrokenPipeError:  # e.g. `| head`: the reader has all it wanted
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


async def _export_to(redis_url: str, key: str, fmt: str, since: float | None,
                     output: str | None) -> int:
    try:
        redis = Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=30)
    except ValueError as exc:
        return _fail(f"REDIS_URL is not a Redis URL: {exc}")
    try:
        try:
            await redis.ping()
        except (RedisError, OSError) as exc:
            return _fail(f"cannot reach Redis at REDIS_URL: {exc}")
        if output is None:
            count = await export(redis, key, sys.stdout, fmt=fmt, since=since)
            sys.stdout.flush()
        else:
            try:
                count = await _export_file(redis, key, output, fmt, since)
            except OSError as exc:
                return _fail(f"cannot write --output {output}: {exc.strerror or exc}")
    except (RedisError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        return _fail(f"reading the audit trail from Redis failed: {exc}")
    finally:
        await redis.aclose()
    print(f"releasebot: exported {count} audit entries", file=sys.stderr)
    return 0


async def _export_file(redis: Redis, key: str, output: str, fmt: str,
                       since: float | None) -> int:
    """Write to a temporary file next to `output` and move it into place when complete."""
    directory = os.path.dirname(os.path.abspath(output))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".audit-", suffix=".tmp")
    try:
        with open(fd, "w", encoding="utf-8", newline="") as out:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(out.fileno(), 0o666 & ~umask)  # as if opened directly, not 0600
            count = await export(redis, key, out, fmt=fmt, since=since)
        os.replace(tmp, output)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return count


def _fail(message: str) -> int:
    print(f"releasebot: {message}", file=sys.stderr)
    return 2


# --- Slack -------------------------------------------------------------------------------------

def audit_message(version: str | None, entries: list[dict[str, str]], *,
                  max_entries: int = 100) -> list[Block]:
    """`/release audit [VERSION]`: the newest entries (oldest of them first), one per line.

    At most `max_entries` lines, 50 blocks and 3000 characters a section; what does not fit is
    counted in a context line pointing at `releasebot audit export`.
    """
    title = "latest" if not version else (version if version.startswith("v") else f"v{version}")
    blocks: list[Block] = [header(f"Audit trail · {title}")]
    if not entries:
        where = f"release {escape(version)}" if version else "any release"
        return [*blocks, section(f"There is no audit entry for {where} yet.")]
    budget = MAX_BLOCKS - 2  # the header and the "older entries" context line
    chunks: list[list[str]] = []  # newest first, each newest line first
    size = 0
    shown = 0
    for entry in reversed(entries[-max_entries:] if max_entries > 0 else []):
        line = audit_line(entry, with_release=not version)
        if chunks and size + 1 + len(line) <= SECTION_LIMIT:
            chunks[-1].append(line)
            size += 1 + len(line)
        elif len(chunks) < budget:
            chunks.append([line])
            size = len(line)
        else:
            break
        shown += 1
    hidden = len(entries) - shown
    if hidden:
        noun = "entry" if hidden == 1 else "entries"
        blocks.append(context(f"{hidden} older {noun} not shown: `releasebot audit export` "
                              "has them all."))
    blocks.extend(section("\n".join(reversed(chunk))) for chunk in reversed(chunks))
    return blocks


def audit_line(entry: Mapping[str, str], *, with_release: bool = False) -> str:
    """time · who · action · outcome · environment · reason (empty parts left out)."""
    try:
        when = slack_time(float(entry.get("at", "")))
    except (ValueError, OverflowError, OSError):
        when = "?"

    def part(name: str, limit: int) -> str:
        return escape(_one_line(entry.get(name, ""), limit))

    user_id = entry.get("user_id", "")
    who = mention(user_id) if user_id else ""
    if not who.startswith("<@"):
        who = part("user_name", 60) or part("user_id", 60) or "?"
    action = part("action", 60)
    if with_release and entry.get("release"):
        action = f"{action} {part('release', 60)}".strip()
    parts = [when, who, f"*{action}*" if action else "", part("outcome", 40),
             part("environment", 60), part("reason", REASON_LIMIT)]
    return " · ".join(p for p in parts if p)


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
