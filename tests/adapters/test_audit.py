"""The audit trail read back: batches from the real Redis stream, JSONL/CSV export, `--since`,
the Slack message for `/release audit`, and `releasebot audit export` end to end."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.adapters.redis.audit import export, read_entries
from bot.adapters.redis.keys import Keys
from bot.adapters.redis.store import Store
from bot.blocks.audit import audit_message
from bot.devtools.slack_stand_in import validate_blocks
from bot.domain.actors import BOT, Actor
from bot.domain.audit import FIELDS, parse_since, stream_start, write_csv, write_jsonl
from tests.helpers.redis_server import REDIS_URL

ROOT = Path(__file__).resolve().parents[2]
ALICE = Actor(user_id="U0ALICE", user_name="alice", channel="C0DEV")
BOB = Actor(user_id="U0BOB", user_name="bob", channel="C0DEV")
TRICKY = [
    "plain",
    'has, commas, and "double quotes"',
    "two\nlines\r\nand a CR\rtoo",
    "unicode: café ✅ 🚀 日本語",
    "<!channel> & <@U0EVE> <https://evil.example|click>",
    "",
    ',leading comma and trailing quote"',
]
# 2023-11-14T00:00:00Z and a day later: entries "recorded" long ago, with explicit stream IDs.
OLD = 1_699_920_000.0
OLDER_DAY = "2023-11-15"


async def collect(redis: Redis, key: str, **kwargs: Any) -> list[dict[str, str]]:
    return [entry async for entry in read_entries(redis, key, **kwargs)]


def from_time(seconds: float) -> str:
    """The XRANGE start of `--since` a unix time."""
    return stream_start(f"{seconds:.6f}", time.time())


async def add_old(redis: Redis, key: str, at: float, release: str, reason: str = "") -> str:
    """An entry as Store writes it, but recorded at `at` (its stream ID says so too)."""
    fields = {
        "at": f"{at:.3f}",
        "user_id": "U0OLD",
        "user_name": "old",
        "channel": "C0DEV",
        "release": release,
        "environment": "staging",
        "action": "deploy",
        "outcome": "ok",
        "reason": reason,
    }
    entry_id = await redis.xadd(key, fields, id=f"{int(at * 1000)}-0")
    return entry_id.decode()


async def tricky_trail(redis: Redis, prefix: str) -> Store:
    store = Store(redis, prefix)
    for i, reason in enumerate(TRICKY):
        await store.audit(
            ALICE if i % 2 else BOB,
            "deploy",
            release="1.2.0",
            environment="staging",
            outcome="ok" if i % 3 else "failed",
            reason=reason,
        )
    await store.audit(ALICE, "lock.take", environment="production", reason="db, migration")
    return store


# --- reading -----------------------------------------------------------------------------------


async def test_entries_come_back_in_order_with_every_field(redis: Redis, prefix: str):
    store = await tricky_trail(redis, prefix)
    entries = await collect(redis, store.keys.audit)
    assert entries == await store.audit_entries()
    assert [e["reason"] for e in entries] == [*TRICKY, "db, migration"]
    assert set(entries[0]) == set(FIELDS) - {"time_utc"}


async def test_batches_cover_a_long_trail_without_loss_or_repeats(redis: Redis, prefix: str):
    key = Keys(prefix).audit
    # One pipeline: many entries share a millisecond, so batch edges fall inside one.
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(1234):
            pipe.xadd(key, {"at": f"{time.time():.3f}", "release": f"r{i % 3}", "reason": str(i)})
        written = [entry_id.decode() for entry_id in await pipe.execute()]
    calls: list[int] = []
    real_xrange = redis.xrange

    async def counting_xrange(*args: Any, **kwargs: Any) -> Any:
        rows = await real_xrange(*args, **kwargs)
        calls.append(len(rows))
        return rows

    redis.xrange = counting_xrange  # type: ignore[method-assign]
    try:
        entries = await collect(redis, key, batch=100)
        assert [e["id"] for e in entries] == written
        assert [e["reason"] for e in entries] == [str(i) for i in range(1234)]
        assert calls == [100] * 12 + [34]

        calls.clear()
        assert len(await collect(redis, key)) == 1234  # default batch of 1000
        assert calls == [1000, 234]

        calls.clear()
        only_r1 = await collect(redis, key, release="r1", batch=50)
        assert [e["reason"] for e in only_r1] == [str(i) for i in range(1, 1234, 3)]
        assert max(calls) == 50 and len(calls) == 25
    finally:
        del redis.xrange

    # A trail that is an exact multiple of the batch ends cleanly too.
    assert len(await collect(redis, key, batch=617)) == 1234
    with pytest.raises(ValueError):
        await collect(redis, key, batch=0)


async def test_since_starts_at_the_stream_id_and_release_filters(redis: Redis, prefix: str):
    key = Keys(prefix).audit
    await add_old(redis, key, OLD, "1.0.0", "old one")
    await add_old(redis, key, OLD + 86400, "1.1.0", "a day later")
    await add_old(redis, key, OLD + 86400 + 0.001, "1.0.0", "a millisecond after")
    store = Store(redis, prefix)
    await store.audit(ALICE, "deploy", release="1.0.0", reason="today")
    reasons = [e["reason"] for e in await collect(redis, key, start=from_time(OLD + 86400))]
    assert reasons == ["a day later", "a millisecond after", "today"]
    reasons = [e["reason"] for e in await collect(redis, key, start=from_time(OLD + 86400.0005))]
    assert reasons == ["a millisecond after", "today"]
    later = from_time(OLD + 1)
    reasons = [e["reason"] for e in await collect(redis, key, start=later, release="1.0.0")]
    assert reasons == ["a millisecond after", "today"]
    assert await collect(redis, key, start=from_time(time.time() + 3600)) == []
    assert await collect(redis, key, release="9.9.9") == []
    assert await collect(redis, Keys(prefix).audit + ":nothing") == []


# --- --since -----------------------------------------------------------------------------------

NOW = datetime(2026, 11, 8, 12, 0, tzinfo=UTC).timestamp()
# A local time zone that is not UTC: a naive time must still be read as UTC.
NOT_UTC = "Asia/Kolkata"


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", NOT_UTC)
    time.tzset()
    assert time.timezone != 0
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC).timestamp()),
        ("2026-11-01T12:00:00Z", datetime(2026, 11, 1, 12, tzinfo=UTC).timestamp()),
        ("2026-11-01T12:00:00", datetime(2026, 11, 1, 12, tzinfo=UTC).timestamp()),
        ("2026-11-01 12:00", datetime(2026, 11, 1, 12, tzinfo=UTC).timestamp()),
        ("2026-11-01T12:00:00+02:00", datetime(2026, 11, 1, 10, tzinfo=UTC).timestamp()),
        (
            "2026-11-01T12:00:00.250-05:30",
            datetime(2026, 11, 1, 17, 30, 0, 250000, tzinfo=UTC).timestamp(),
        ),
        ("1793491200", 1793491200.0),
        ("1793491200.5", 1793491200.5),
        ("7d", NOW - 7 * 86400),
        ("12h", NOW - 12 * 3600),
        ("30m", NOW - 1800),
        ("45s", NOW - 45),
        ("2w", NOW - 14 * 86400),
        (" 1.5h ", NOW - 5400),
        ("7D", NOW - 7 * 86400),
    ],
)
def test_parse_since_accepts_dates_timestamps_and_ages(
    text: str, expected: float, far_from_utc: None
):
    assert parse_since(text, NOW) == pytest.approx(expected)


def test_a_stream_id_starts_just_after_that_entry():
    assert stream_start("1793491200000-0", NOW) == "(1793491200000-0"
    assert stream_start(" 1793491200000-17 ", NOW) == "(1793491200000-17"
    assert stream_start("18446744073709551615-18446744073709551615", NOW) == (
        "(18446744073709551615-18446744073709551615"
    )
    # A time starts at its millisecond, inclusive; a plain number is still a unix timestamp.
    assert stream_start("1793491200", NOW) == "1793491200000"
    assert stream_start("1793491200.0005", NOW) == "1793491200001"
    for text in ("18446744073709551616-0", "1-18446744073709551616", "1-", "-1", "1-2-3", "1_0-0"):
        with pytest.raises(ValueError) as caught:
            stream_start(text, NOW)
        assert repr(text) in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "7 days",
        "-7d",
        "7y",
        "2026-13-01",
        "2026-11-01T25:00",
        "1e9",
        "nan",
        "12:00",
        "d7",
        "9" * 400,
        "9" * 400 + "d",
        "\u0667d",
    ],
)
def test_parse_since_names_the_accepted_forms(text: str):
    with pytest.raises(ValueError) as caught:
        parse_since(text, NOW)
    message = str(caught.value)
    assert repr(text) in message
    for form in ("ISO", "2026-11-01T12:00:00Z", "unix timestamp", "7d", "12h", "30m"):
        assert form in message


# --- export ------------------------------------------------------------------------------------


async def test_jsonl_and_csv_round_trip_awkward_text(redis: Redis, prefix: str):
    store = await tricky_trail(redis, prefix)
    entries = await store.audit_entries()

    out = io.StringIO()
    assert write_jsonl(iter(entries), out) == len(entries)
    lines = out.getvalue().split("\n")
    assert lines[-1] == "" and len(lines) == len(entries) + 1  # embedded newlines escaped
    rows = [json.loads(line) for line in lines[:-1]]
    assert [list(row) for row in rows] == [list(FIELDS)] * len(entries)
    assert [{k: v for k, v in row.items() if k != "time_utc"} for row in rows] == entries
    assert "café ✅ 🚀 日本語" in out.getvalue()  # readable, not \u-escaped

    out = io.StringIO(newline="")
    assert write_csv(entries, out) == len(entries)
    parsed = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert parsed[0] == list(FIELDS)
    assert len(parsed) == len(entries) + 1
    for row, entry in zip(parsed[1:], entries, strict=True):
        record = dict(zip(FIELDS, row, strict=True))
        assert {k: v for k, v in record.items() if k != "time_utc"} == entry
        at = datetime.fromisoformat(record["time_utc"])
        assert at.tzinfo is not None and at.utcoffset() is not None
        assert at.timestamp() == pytest.approx(float(entry["at"]), abs=0.001)
        assert record["time_utc"].endswith("Z")

    empty = io.StringIO()
    assert write_csv([], empty) == 0
    assert list(csv.reader(io.StringIO(empty.getvalue()))) == [list(FIELDS)]
    assert write_jsonl([], io.StringIO()) == 0


def test_csv_cells_that_spreadsheets_would_run_are_written_as_text():
    formulas = ['=HYPERLINK("http://evil","x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]
    entries = [
        {"id": f"{i}-0", "at": "1.5", "reason": text, "user_name": text}
        for i, text in enumerate(formulas)
    ]
    out = io.StringIO(newline="")
    write_csv(entries, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert [r["reason"] for r in rows] == [f"'{text}" for text in formulas]
    assert [r["user_name"] for r in rows] == [f"'{text}" for text in formulas]
    assert [r["id"] for r in rows] == [e["id"] for e in entries]  # the rest as it was
    out = io.StringIO()
    write_jsonl(entries, out)  # JSON lines are not run by spreadsheets: unchanged
    assert [json.loads(line)["reason"] for line in out.getvalue().splitlines()] == formulas


def test_export_rows_have_the_fixed_order_and_ignore_extra_fields():
    entry = {"reason": "r", "action": "a", "id": "5-0", "at": "0.5", "surprise": "x"}
    out = io.StringIO()
    write_csv([entry], out)
    header_row, row = list(csv.reader(io.StringIO(out.getvalue())))
    assert header_row == [
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
    ]
    assert row == ["5-0", "0.5", "1970-01-01T00:00:00.500Z", "", "", "", "", "", "a", "", "r"]
    out = io.StringIO()
    write_jsonl([entry], out)
    assert list(json.loads(out.getvalue())) == list(FIELDS)


async def test_export_writes_one_csv_header_across_batches(redis: Redis, prefix: str):
    store = Store(redis, prefix)
    for i in range(23):
        await store.audit(ALICE, "deploy", release=f"1.{i % 2}.0", reason=f'n{i},"q"')
    out = io.StringIO(newline="")
    assert await export(redis, store.keys.audit, out, fmt="csv", batch=5) == 23
    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert [r["reason"] for r in rows] == [f'n{i},"q"' for i in range(23)]
    out = io.StringIO()
    assert await export(redis, store.keys.audit, out, release="1.1.0", batch=4) == 11
    assert {json.loads(line)["release"] for line in out.getvalue().splitlines()} == {"1.1.0"}
    with pytest.raises(ValueError):
        await export(redis, store.keys.audit, io.StringIO(), fmt="xml")


class Discard(io.TextIOBase):
    """A sink that keeps nothing, so that only the export's own memory is measured."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, text: str) -> int:
        self.written += len(text)
        return len(text)


async def test_export_memory_does_not_grow_with_the_trail(redis: Redis, prefix: str):
    """Ten times the trail, the same peak: the export holds one batch, never the stream."""

    async def fill(key: str, count: int) -> None:
        for first in range(0, count, 1000):
            async with redis.pipeline(transaction=False) as pipe:
                for i in range(first, min(count, first + 1000)):
                    pipe.xadd(key, {**entry(i), "reason": f"{TRICKY[i % len(TRICKY)]} {i}"})
                await pipe.execute()

    async def peak(key: str, count: int) -> tuple[int, int]:
        sink = Discard()
        tracemalloc.start()
        try:
            exported = await export(redis, key, sink, fmt="csv", batch=500)
            _, top = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert exported == count and sink.written > count * 100
        return top, sink.written

    small, large = Keys(prefix).audit + ":small", Keys(prefix).audit + ":large"
    await fill(small, 2_000)
    await fill(large, 20_000)
    await peak(small, 2_000)  # first use: imports and caches are not the export's
    small_peak, small_written = await peak(small, 2_000)
    large_peak, large_written = await peak(large, 20_000)
    assert large_written > 9 * small_written
    # Holding the trail would peak ten times higher (the output alone is 2.6 MB here).
    assert large_peak < small_peak * 1.3 + 64 * 1024, (small_peak, large_peak)


# --- /release audit ----------------------------------------------------------------------------


def entry(i: int, **overrides: str) -> dict[str, str]:
    return {
        "id": f"{1_790_000_000_000 + i}-0",
        "at": f"{1_790_000_000 + i * 60:.3f}",
        "user_id": "U0ALICE",
        "user_name": "alice",
        "channel": "C0DEV",
        "release": "1.2.0",
        "environment": "staging",
        "action": "deploy",
        "outcome": "ok",
        "reason": f"entry-{i:05d}",
        **overrides,
    }


def section_texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


def test_audit_message_lists_entries_compactly_and_safely():
    entries = [
        entry(0),
        entry(
            1,
            user_id="releasebot",
            user_name="releasebot",
            environment="",
            outcome="refused",
            reason="<!channel> & <@U0EVE>\nsecond line",
        ),
        entry(2, user_id="", user_name="shell-user", reason=""),
    ]
    blocks = audit_message("1.2.0", entries)
    assert validate_blocks(blocks) == []
    assert blocks[0]["text"]["text"] == "Audit trail · v1.2.0"
    assert len(blocks) == 2  # header + one section: no "older entries" line
    lines = section_texts(blocks)[0].split("\n")
    assert len(lines) == 3
    assert lines[0].startswith("<!date^1790000000^")
    assert "<@U0ALICE>" in lines[0] and "*deploy*" in lines[0] and "entry-00000" in lines[0]
    assert " · staging · " in lines[0]
    # A user mention reads as Slack shows one (the bot writes them into reasons); a broadcast
    # or a link never comes through.
    assert "<!channel>" not in lines[1]
    assert "&lt;!channel&gt; &amp; <@U0EVE> second line" in lines[1]
    assert " · releasebot · " in lines[1] and "refused" in lines[1] and "· ·" not in lines[1]
    assert "shell-user" in lines[2] and not lines[2].endswith(" · ")

    latest = audit_message(None, [entry(0), entry(1, release="1.3.0")])
    assert latest[0]["text"]["text"] == "Audit trail · latest"
    assert "deploy 1.3.0" in section_texts(latest)[0]  # across releases: each line says which
    assert audit_message("v2.0.0", [entry(0)])[0]["text"]["text"] == "Audit trail · v2.0.0"


def test_audit_message_without_entries_says_so():
    for version, expected in (("1.2.0", "release 1.2.0"), (None, "any release")):
        blocks = audit_message(version, [])
        assert validate_blocks(blocks) == []
        assert len(blocks) == 2
        assert "no audit entry" in blocks[1]["text"]["text"]
        assert expected in blocks[1]["text"]["text"]


@pytest.mark.parametrize(
    ("count", "reason_length", "max_entries"),
    [(101, 10, 100), (5000, 10, 5000), (3000, 400, 3000), (400, 2990, 400)],
)
def test_long_trails_show_the_newest_entries_within_slack_limits(
    count: int, reason_length: int, max_entries: int
):
    entries = [
        entry(i, reason=f"entry-{i:05d} " + "x&<" * (reason_length // 3)) for i in range(count)
    ]
    blocks = audit_message("1.2.0", entries, max_entries=max_entries)
    assert validate_blocks(blocks) == []
    assert len(blocks) <= 50
    assert all(len(text) <= 3000 for text in section_texts(blocks))
    lines = "\n".join(section_texts(blocks)).split("\n")
    shown = [int(line.split("entry-")[1][:5]) for line in lines]
    # The newest ones, oldest of them first, none repeated.
    assert shown == list(range(count - len(shown), count))
    assert 0 < len(shown) < count
    notes = [b for b in blocks if b["type"] == "context"]
    assert len(notes) == 1
    hidden = count - len(shown)
    noun = "entry" if hidden == 1 else "entries"
    assert notes[0]["elements"][0]["text"] == (
        f"{hidden} older {noun} not shown: `releasebot audit export` has them all."
    )


async def test_audit_message_from_a_real_trail(redis: Redis, prefix: str):
    store = await tricky_trail(redis, prefix)
    blocks = audit_message("1.2.0", await store.audit_entries(release="1.2.0"))
    assert validate_blocks(blocks) == []
    assert len(section_texts(blocks)[0].split("\n")) == len(TRICKY)


# --- releasebot audit export -------------------------------------------------------------------


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RELEASEBOT_REDIS_PREFIX")
    }
    return subprocess.run(
        [sys.executable, "-m", "bot.runtime.cli", "audit", "export", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


async def test_cli_exports_jsonl_and_csv(redis: Redis, prefix: str, tmp_path: Path):
    store = await tricky_trail(redis, prefix)
    entries = await store.audit_entries()
    env = {"REDIS_URL": REDIS_URL, "RELEASEBOT_REDIS_PREFIX": prefix}

    out = cli(env=env)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [{k: v for k, v in r.items() if k != "time_utc"} for r in rows] == entries
    assert f"exported {len(entries)} audit entries" in out.stderr

    target = tmp_path / "audit.csv"
    out = cli("--format", "csv", "--output", str(target), env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    with target.open(newline="", encoding="utf-8") as f:
        parsed = list(csv.DictReader(f))
    assert [r["reason"] for r in parsed] == [e["reason"] for e in entries]
    assert [r["id"] for r in parsed] == [e["id"] for e in entries]
    assert list(parsed[0]) == list(FIELDS)
    assert [p.name for p in tmp_path.iterdir()] == ["audit.csv"]  # no temporary file left

    # Another prefix is another trail.
    out = cli(env={**env, "RELEASEBOT_REDIS_PREFIX": prefix + "other:"})
    assert out.returncode == 0 and out.stdout == ""


async def test_cli_since_relative_and_absolute(redis: Redis, prefix: str, tmp_path: Path):
    key = Keys(prefix).audit
    await add_old(redis, key, OLD, "1.0.0", "old")
    await add_old(redis, key, OLD + 86400 + 60, "1.0.0", "next day")
    await Store(redis, prefix).audit(ALICE, "deploy", release="1.1.0", reason="now, really")
    env = {"REDIS_URL": REDIS_URL, "RELEASEBOT_REDIS_PREFIX": prefix, "TZ": NOT_UTC}

    def reasons(*args: str) -> list[str]:
        out = cli(*args, env=env)
        assert out.returncode == 0, out.stderr
        return [json.loads(line)["reason"] for line in out.stdout.splitlines()]

    assert reasons() == ["old", "next day", "now, really"]
    assert reasons("--since", "1h") == ["now, really"]
    assert reasons("--since", "30m") == ["now, really"]
    assert reasons("--since", OLDER_DAY) == ["next day", "now, really"]
    assert reasons("--since", f"{OLDER_DAY}T00:01:00Z") == ["next day", "now, really"]
    assert reasons("--since", f"{OLDER_DAY}T00:01:00.001Z") == ["now, really"]
    assert reasons("--since", f"{OLDER_DAY}T02:01:00+02:00") == ["next day", "now, really"]
    assert reasons("--since", f"{OLDER_DAY} 00:01:01") == ["now, really"]  # naive is UTC
    assert reasons("--since", str(int(OLD))) == ["old", "next day", "now, really"]
    assert reasons("--since", str(int(OLD) + 1)) == ["next day", "now, really"]
    assert reasons("--since", "2100-01-01") == []

    out = cli("--since", "1h", "--format", "csv", env=env)
    assert out.returncode == 0, out.stderr
    assert [r["reason"] for r in csv.DictReader(io.StringIO(out.stdout))] == ["now, really"]


async def test_cli_since_a_stream_id_goes_on_after_the_last_entry_exported(
    redis: Redis, prefix: str
):
    key = Keys(prefix).audit
    await add_old(redis, key, OLD, "1.0.0", "old")
    store = Store(redis, prefix)
    await store.audit(ALICE, "deploy", release="1.1.0", reason="first run")
    env = {"REDIS_URL": REDIS_URL, "RELEASEBOT_REDIS_PREFIX": prefix}

    def lines(*args: str) -> list[dict[str, str]]:
        out = cli(*args, env=env)
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines()]

    first = lines()
    assert [row["reason"] for row in first] == ["old", "first run"]
    # Three entries in one millisecond, then one more: a time cannot part them, an ID can.
    ms = int(time.time() * 1000) + 5
    for seq, reason in enumerate(("same ms 0", "same ms 1", "same ms 2")):
        await redis.xadd(key, {"at": f"{ms / 1000:.3f}", "reason": reason}, id=f"{ms}-{seq}")
    await store.audit(BOB, "approve", release="1.1.0", reason="later")

    second = lines("--since", first[-1]["id"])
    assert [row["reason"] for row in second] == ["same ms 0", "same ms 1", "same ms 2", "later"]
    assert [row["reason"] for row in lines("--since", f"{ms}-0")] == [
        "same ms 1",
        "same ms 2",
        "later",
    ]
    assert lines("--since", second[-1]["id"]) == []  # nothing new: nothing again
    # Run after run from each last line, the trail comes out whole, each entry once.
    assert [row["id"] for row in first + second] == [row["id"] for row in lines()]

    out = cli("--since", "99999999999999999999-0", env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "64 bits" in out.stderr and "stream ID" in out.stderr and out.stdout == ""


def test_cli_errors_exit_2_with_a_clear_message(tmp_path: Path):
    env = {"REDIS_URL": REDIS_URL, "RELEASEBOT_REDIS_PREFIX": "rbtest:unused:"}

    out = cli(env={})
    assert out.returncode == 2
    assert "REDIS_URL" in out.stderr and "Traceback" not in out.stderr

    out = cli("--since", "last tuesday", env=env)
    assert out.returncode == 2
    assert "--since" in out.stderr and "last tuesday" in out.stderr
    assert "7d" in out.stderr and "2026-11-01" in out.stderr and "unix timestamp" in out.stderr
    assert out.stdout == "" and "Traceback" not in out.stderr

    target = tmp_path / "never.jsonl"
    out = cli("--output", str(target), env={**env, "REDIS_URL": "redis://127.0.0.1:1/0"})
    assert out.returncode == 2
    assert "cannot reach Redis" in out.stderr and "Traceback" not in out.stderr
    assert not target.exists() and list(tmp_path.iterdir()) == []

    out = cli(env={**env, "REDIS_URL": "http://127.0.0.1:6379"})
    assert out.returncode == 2
    assert "REDIS_URL" in out.stderr and "Traceback" not in out.stderr

    out = cli("--output", str(tmp_path / "missing" / "audit.jsonl"), env=env)
    assert out.returncode == 2
    assert "--output" in out.stderr and "Traceback" not in out.stderr

    out = cli("--format", "xml", env=env)
    assert out.returncode == 2 and "--format" in out.stderr


async def test_cli_exports_the_trail_of_the_service_named(
    redis: Redis, prefix: str, tmp_path: Path
):
    """With several services each keeps its own trail (under svc:NAME:); --service picks."""
    web = Store(redis, f"{prefix}svc:web:")
    api = Store(redis, f"{prefix}svc:api:")
    await web.audit(BOT, "lock.take", environment="staging", reason="web's migration")
    await api.audit(BOT, "lock.take", environment="staging", reason="api's migration")
    shared = '[[environments]]\nname = "staging"\ndeploy_command = "true"\n'
    config = tmp_path / "releasebot.toml"
    config.write_text(
        shared
        + '[services.web]\nrepository = { url = "/srv/web" }\nslack = { channel = "#web" }\n'
        + '[services.api]\nrepository = { url = "/srv/api" }\nslack = { channel = "#api" }\n'
    )
    env = {"REDIS_URL": REDIS_URL, "RELEASEBOT_REDIS_PREFIX": prefix}
    out = cli("--config", str(config), "--service", "api", env=env)
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["reason"] for line in out.stdout.splitlines()] == ["api's migration"]
    out = cli("--config", str(config), env=env)
    assert out.returncode == 1 and "name one with --service" in out.stderr
    out = cli("--config", str(config), "--service", "shop", env=env)
    assert out.returncode == 1 and "no service 'shop' (services: web, api)" in out.stderr
