"""Reading the audit trail from Redis: streamed in batches, and exported (the format is
bot.domain.audit; what Slack shows of it, bot.blocks.audit).

The trail is the append-only stream written by `Store.audit` (bot.adapters.redis.store; never
trimmed, so it can be large): it is read with XRANGE in batches, never all at once. `since` is
matched against the stream IDs, which Redis assigns in milliseconds when an entry is recorded."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, TextIO

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.adapters.redis.keys import Keys
from bot.domain.audit import FORMATS, SINCE_FORMS, parse_since, write_csv, write_jsonl

# --- reading -----------------------------------------------------------------------------------


async def read_entries(
    redis: Redis,
    keys_audit: str,
    *,
    since: float | None = None,
    release: str | None = None,
    batch: int = 1000,
) -> AsyncIterator[dict[str, str]]:
    """Yield audit entries oldest first, `batch` at a time from Redis.

    `since` (unix seconds) starts at the first entry recorded at or after it; `release` keeps
    only that release's entries. Each entry is its fields plus `id`, the stream ID.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    start = "-" if since is None else str(max(0, math.ceil(round(since * 1000, 3))))
    while True:
        rows = await redis.xrange(keys_audit, min=start, max="+", count=batch) or []
        for entry_id, data in rows:
            entry = {"id": _s(entry_id), **{_s(k): _s(v) for k, v in (data or {}).items()}}
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


# --- export ------------------------------------------------------------------------------------


async def export(
    redis: Redis,
    keys_audit: str,
    out: TextIO,
    *,
    fmt: str = "jsonl",
    since: float | None = None,
    release: str | None = None,
    batch: int = 1000,
) -> int:
    """Write the trail (or its part since `since`) to `out`, a batch at a time."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    if fmt == "csv":
        write_csv([], out)
    count = 0
    pending: list[dict[str, str]] = []
    async for entry in read_entries(redis, keys_audit, since=since, release=release, batch=batch):
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
) -> int:
    """`releasebot audit export`: exit status 0, or 2 with a message on stderr."""
    redis_url = environ.get("REDIS_URL")
    if not redis_url:
        return _fail(
            "set REDIS_URL in the environment to the Redis the bot uses "
            "(the audit trail is read from there)"
        )
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


async def _export_to(
    redis_url: str, key: str, fmt: str, since: float | None, output: str | None
) -> int:
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


async def _export_file(redis: Redis, key: str, output: str, fmt: str, since: float | None) -> int:
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
