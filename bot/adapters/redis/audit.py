"""Reading the audit trail from Redis: streamed in batches, and exported (the format is
bot.domain.audit; what Slack shows of it, bot.blocks.audit).

The trail is the append-only stream written by `Store.audit` (bot.adapters.redis.store; never
trimmed, so it can be large): it is read with XRANGE in batches, never all at once. An export
`--since` becomes the XRANGE start (bot.domain.audit.stream_start): the stream IDs are the
milliseconds Redis recorded each entry at, so no entry before it is read."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, TextIO

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.adapters.redis.connect import RedisSettingError, RedisTarget, connect, target_from_env
from bot.adapters.redis.keys import Keys
from bot.domain.audit import FORMATS, stream_start, write_csv, write_jsonl

# --- reading -----------------------------------------------------------------------------------


def releases_of(entry: Mapping[str, str]) -> list[str]:
    """The releases an entry is about: its `release` field holds one version, or several
    separated by spaces (a rollback is about the release it leaves and the one it goes to)."""
    return entry.get("release", "").split()


async def read_entries(
    redis: Redis,
    keys_audit: str,
    *,
    start: str = "-",
    release: str | None = None,
    batch: int = 1000,
) -> AsyncIterator[dict[str, str]]:
    """Yield audit entries oldest first, `batch` at a time from Redis.

    `start` is an XRANGE start (`-`, a stream ID, `(ID` for after it); `release` keeps only
    that release's entries. Each entry is its fields plus `id`, the stream ID.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    async for entry in _range(redis, keys_audit, start, "+", batch):
        if release is None or release in releases_of(entry):
            yield entry


def _order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


async def release_entries(
    redis: Redis, keys: Keys, release: str, batch: int = 500
) -> AsyncIterator[dict[str, str]]:
    """One release's entries oldest first, through its index: the cost is that of its own
    entries, however long the stream. While the backfill has not yet indexed what was recorded
    before entries were indexed as written, that part of the stream is scanned as well, so the
    trail is complete from the first moment after an upgrade."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrange(keys.audit_of_release(release), 0, -1)
        pipe.get(keys.audit_indexed_from)
        pipe.get(keys.audit_backfilled)
        indexed, indexed_from, backfilled = await pipe.execute()
    ids = {_s(i) for i in indexed}
    unindexed = _unindexed_range(indexed_from, backfilled)
    found: dict[str, dict[str, str]] = {}
    if unindexed is not None:
        start, end = unindexed
        async for entry in _range(redis, keys.audit, start, end, batch):
            if release in releases_of(entry):
                found[entry["id"]] = entry
    wanted = sorted(ids - found.keys(), key=_order)
    for i in range(0, len(wanted), batch):
        async with redis.pipeline(transaction=False) as pipe:
            for entry_id in wanted[i : i + batch]:
                pipe.xrange(keys.audit, min=entry_id, max=entry_id, count=1)
            for rows in await pipe.execute():
                for entry_id, data in rows or []:
                    entry = _entry(entry_id, data)
                    found[entry["id"]] = entry
    for entry_id in sorted(found, key=_order):
        yield found[entry_id]


def _unindexed_range(indexed_from: Any, backfilled: Any) -> tuple[str, str] | None:
    """The part of the stream (XRANGE bounds) that no index covers yet, or None."""
    done = _s(backfilled) if backfilled is not None else None
    if done == "done":
        return None
    start = "-" if done is None else _after(done)
    return start, "+" if indexed_from is None else _s(indexed_from)


async def _range(
    redis: Redis, key: str, start: str, end: str, batch: int
) -> AsyncIterator[dict[str, str]]:
    while True:
        rows = await redis.xrange(key, min=start, max=end, count=batch) or []
        for entry_id, data in rows:
            yield _entry(entry_id, data)
        if len(rows) < batch:
            return
        start = _after(_s(rows[-1][0]))


def _entry(entry_id: Any, data: Any) -> dict[str, str]:
    return {"id": _s(entry_id), **{_s(k): _s(v) for k, v in (data or {}).items()}}


async def latest_entries(redis: Redis, key: str, count: int) -> tuple[list[dict[str, str]], int]:
    """The newest `count` entries (oldest of them first) and the length of the stream: two
    commands, whatever that length."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xrevrange(key, max="+", min="-", count=count)
        pipe.xlen(key)
        rows, total = await pipe.execute()
    return [_entry(i, d) for i, d in reversed(rows or [])], int(total)


async def backfill_indexes(redis: Redis, keys: Keys, batch: int = 2000) -> bool:
    """One bounded step of indexing what an earlier version recorded without indexes: the
    audit entries before the first one indexed as written (each added to its release's
    index), and the final versions of the releases (`releases:final`). Idempotent (sorted
    sets and hashes), so two replicas doing it at once do no harm; True when done."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(keys.audit_indexed_from)
        pipe.get(keys.audit_backfilled)
        pipe.get(keys.final_versions_backfilled)
        indexed_from, backfilled, finals_at = await pipe.execute()
    audit_done = await _backfill_audit(redis, keys, indexed_from, backfilled, batch)
    finals_done = await _backfill_finals(redis, keys, finals_at, batch)
    return audit_done and finals_done


async def _backfill_audit(
    redis: Redis, keys: Keys, indexed_from: Any, backfilled: Any, batch: int
) -> bool:
    unindexed = _unindexed_range(indexed_from, backfilled)
    if unindexed is None:
        return True
    start, end = unindexed
    rows = await redis.xrange(keys.audit, min=start, max=end, count=batch) or []
    async with redis.pipeline(transaction=False) as pipe:
        for entry_id, data in rows:
            entry = _entry(entry_id, data)
            for release in releases_of(entry):
                pipe.zadd(keys.audit_of_release(release), {entry["id"]: _order(entry["id"])[0]})
        finished = len(rows) < batch and indexed_from is not None
        if finished:
            pipe.set(keys.audit_backfilled, "done")
        elif rows:
            pipe.set(keys.audit_backfilled, _s(rows[-1][0]))
        await pipe.execute()
    # Without a first indexed entry yet, entries may still come from before the upgrade:
    # the next step looks again.
    return finished


async def _backfill_finals(redis: Redis, keys: Keys, position: Any, batch: int) -> bool:
    at = 0 if position is None else int(position)
    if at < 0:
        return True
    versions = [_s(v) for v in await redis.zrange(keys.releases, at, at + batch - 1)]
    raws = await redis.mget([keys.release(v) for v in versions]) if versions else []
    async with redis.pipeline(transaction=False) as pipe:
        for version, raw in zip(versions, raws, strict=True):
            final = json.loads(raw).get("final_version") if raw else None
            if final:
                pipe.hsetnx(keys.final_versions, final, version)
        done = len(versions) < batch
        pipe.set(keys.final_versions_backfilled, -1 if done else at + len(versions))
        await pipe.execute()
    return done


def _after(stream_id: str) -> str:
    """The smallest stream ID after `stream_id` (XRANGE's "(" needs Redis 6.2)."""
    ms, _, seq = stream_id.partition("-")
    if int(seq or 0) >= 2**64 - 1:
        return f"{int(ms) + 1}-0"
    return f"{ms}-{int(seq or 0) + 1}"


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- export ------------------------------------------------------------------------------------


async def export(
    redis: Redis,
    keys_audit: str,
    out: TextIO,
    *,
    fmt: str = "jsonl",
    start: str = "-",
    release: str | None = None,
    batch: int = 1000,
) -> int:
    """Write the trail (or its part from the XRANGE `start` on) to `out`, a batch at a time:
    memory holds one batch, whatever the trail's length."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    if fmt == "csv":
        write_csv([], out)
    count = 0
    pending: list[dict[str, str]] = []
    async for entry in read_entries(redis, keys_audit, start=start, release=release, batch=batch):
        pending.append(entry)
        if len(pending) >= batch:
            count += _write(pending, out, fmt)
            pending = []
    return count + _write(pending, out, fmt)


def _write(entries: list[dict[str, str]], out: TextIO, fmt: str) -> int:
    if fmt == "csv":
        return write_csv(entries, out, header_row=False)
    return write_jsonl(entries, out)


def run_export(
    *,
    since: str | None,
    fmt: str,
    output: str | None,
    environ: Mapping[str, str],
    now: float | None = None,
    service_prefix: str = "",
) -> int:
    """`releasebot audit export`: exit status 0, or 2 with a message on stderr. With
    several services, `service_prefix` is the one service's part of the keys (svc:NAME:)."""
    try:
        target = target_from_env(environ)
    except RedisSettingError as exc:
        return _fail(str(exc))
    if target is None:
        return _fail(
            "set REDIS_URL (or REDIS_SENTINELS) in the environment to the Redis the bot uses "
            "(the audit trail is read from there)"
        )
    prefix = (environ.get("RELEASEBOT_REDIS_PREFIX") or "releasebot:") + service_prefix
    start = "-"
    if since is not None:
        try:
            start = stream_start(since, time.time() if now is None else now)
        except ValueError as exc:
            return _fail(f"--since: {exc}")  # names the text and the forms it may take
    try:
        return asyncio.run(_export_to(target, Keys(prefix).audit, fmt, start, output))
    except BrokenPipeError:  # e.g. `| head`: the reader has all it wanted
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


async def _export_to(
    target: RedisTarget, key: str, fmt: str, start: str, output: str | None
) -> int:
    try:
        redis = connect(target, socket_connect_timeout=5, socket_timeout=30)
    except ValueError as exc:
        return _fail(f"REDIS_URL is not a Redis URL: {exc}")
    try:
        try:
            await redis.ping()
        except (RedisError, OSError) as exc:
            named = "REDIS_SENTINELS" if target.sentinels else "REDIS_URL"
            return _fail(f"cannot reach Redis at {named}: {exc}")
        if output is None:
            count = await export(redis, key, sys.stdout, fmt=fmt, start=start)
            sys.stdout.flush()
        else:
            try:
                count = await _export_file(redis, key, output, fmt, start)
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


async def _export_file(redis: Redis, key: str, output: str, fmt: str, start: str) -> int:
    """Write to a temporary file next to `output` and move it into place when complete."""
    directory = os.path.dirname(os.path.abspath(output))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".audit-", suffix=".tmp")
    try:
        with open(fd, "w", encoding="utf-8", newline="") as out:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(out.fileno(), 0o666 & ~umask)  # as if opened directly, not 0600
            count = await export(redis, key, out, fmt=fmt, start=start)
        os.replace(tmp, output)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return count


def _fail(message: str) -> int:
    print(f"releasebot: {message}", file=sys.stderr)
    return 2
