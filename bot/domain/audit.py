"""The audit trail's export format: which fields, in which order, as JSON lines or CSV, and
the times `--since` understands. Pure: the reading from Redis is bot.adapters.redis.audit."""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TextIO

FIELDS = (
    "id",
    "at",
    "time_utc",
    "user_id",
    "user_name",
    "channel",
    "release",
    "environment",
    "action",
    "outcome",
    "reason",
)


FORMATS = ("jsonl", "csv")


SINCE_FORMS = (
    "an ISO date or time (2026-11-01, 2026-11-01T12:00:00Z, "
    "2026-11-01T12:00:00+02:00; no offset means UTC), a unix timestamp "
    "(1793491200), an age (30m, 12h, 7d) or an entry's stream ID "
    "(1793491200000-0, to go on after it)"
)


# ASCII digits only (\d admits any script's), and not so many that a float overflows.
_AGE = re.compile(r"^([0-9]{1,9}(?:\.[0-9]{1,6})?)\s*([smhdw])$", re.IGNORECASE)


_NUMBER = re.compile(r"^[0-9]{1,12}(?:\.[0-9]{1,6})?$")


# A stream ID as Redis writes it: milliseconds and a sequence number (both 64-bit).
_STREAM_ID = re.compile(r"^([0-9]{1,20})-([0-9]{1,20})$")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


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


def stream_start(text: str, now: float) -> str:
    """Where an export `--since text` starts reading the stream (an XRANGE start).

    A time starts at the first entry recorded at or after it (stream IDs are the milliseconds
    Redis recorded them at). A stream ID, the `id` of the last entry a previous export wrote,
    starts just after it: an export run again from its last line neither repeats nor skips an
    entry, even among entries of the same millisecond."""
    value = text.strip()
    stream_id = _STREAM_ID.match(value)
    if stream_id:
        ms, seq = (int(part) for part in stream_id.groups())
        if ms < 2**64 and seq < 2**64:
            return f"({ms}-{seq}"
        raise ValueError(
            f"{text!r} is not a stream ID: both its numbers must fit in 64 bits; use {SINCE_FORMS}"
        )
    seconds = parse_since(value, now)
    return str(max(0, math.ceil(round(seconds * 1000, 3))))


def time_utc(at: str) -> str:
    """ISO 8601 UTC time (milliseconds, "Z") of an entry's `at`; "" when it is not a time."""
    try:
        seconds = float(at)
        return (
            datetime.fromtimestamp(seconds, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
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


def write_csv(entries: Iterable[Mapping[str, str]], out: TextIO, *, header_row: bool = True) -> int:
    """CSV (RFC 4180 quoting) with a header row unless told not to; returns the entry count.
    Cells that a spreadsheet would run as a formula are written as text (`spreadsheet_safe`).

    Open files for it with newline="" so quoted newlines inside fields survive.
    """
    writer = csv.DictWriter(out, fieldnames=FIELDS, extrasaction="ignore")
    if header_row:
        writer.writeheader()
    count = 0
    for entry in entries:
        writer.writerow(
            {name: spreadsheet_safe(value) for name, value in export_row(entry).items()}
        )
        count += 1
    return count


# Spreadsheets run a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str) -> str:
    """A CSV cell that a spreadsheet shows as text: a leading ' before a formula character
    (the OWASP advice); JSON lines keep the text as it was."""
    return f"'{value}" if value.startswith(_FORMULA_START) else value
