"""HTTP GETs for the health checks: one shared aiohttp session, a bound on checks in flight."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence

import aiohttp
from yarl import URL

from bot.domain.config import CheckConfig
from bot.domain.health.checks import Observation

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024  # enough for /health, /build-info and /flags; a bigger page is cut


class Prober:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None
        self._targets: dict[str, tuple[URL, aiohttp.ClientTimeout]] = {}
        # The checks asked for and not yet taken, from every caller, and the workers taking
        # them (at most `concurrency`).
        self._pending: deque[
            tuple[CheckConfig, list[Observation | None], int, Callable[[], None]]
        ] = deque()
        self._workers = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # One connector for every check, bounding the checks in flight. No cookies: each
            # check is a fresh visitor.
            connector = aiohttp.TCPConnector(limit=self.concurrency, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": "releasebot-monitor"},
            )
        return self._session

    async def observe_all(self, checks: Sequence[CheckConfig]) -> list[Observation]:
        """Every check, at most `concurrency` at a time across every caller: that many
        workers at most take the next check as they finish one, whoever's it is. (A task per
        check made 5,000 tasks in one go, and woke them all as connections freed: the event
        loop was held up to 150 ms at a time. The services of one bot share this probe in one
        tick: each of their calls starting its own workers made twenty services twenty times
        as many, waiting on the same connections.)"""
        if not checks:
            return []
        session = self._open()
        seen: list[Observation | None] = [None] * len(checks)
        done = asyncio.get_running_loop().create_future()
        left = [len(checks)]

        def finished() -> None:
            left[0] -= 1
            if left[0] == 0 and not done.done():
                done.set_result(None)

        for i, check in enumerate(checks):
            self._pending.append((check, seen, i, finished))
        while self._workers < min(self.concurrency, len(self._pending)):
            self._workers += 1
            task = asyncio.create_task(self._work(session))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await done
        return [s for s in seen if s is not None]

    async def _work(self, session: aiohttp.ClientSession) -> None:
        try:
            while self._pending:
                check, seen, i, finished = self._pending.popleft()
                try:
                    seen[i] = await observe(session, check, self._target(check))
                except Exception:  # never the others' wait: this check has no result
                    log.exception("probing %s failed", check.name)
                finally:
                    finished()
        finally:
            self._workers -= 1

    def _target(self, check: CheckConfig) -> tuple[URL, aiohttp.ClientTimeout]:
        # Parsed once per check, not on every tick.
        target = self._targets.get(check.url)
        if target is None or target[1].total != check.timeout_seconds:
            target = (URL(check.url), aiohttp.ClientTimeout(total=check.timeout_seconds))
            self._targets[check.url] = target
        return target

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None


async def observe(
    session: aiohttp.ClientSession, check: CheckConfig, target: tuple[URL, aiohttp.ClientTimeout]
) -> Observation:
    started = time.perf_counter()

    def elapsed() -> float:
        return (time.perf_counter() - started) * 1000

    try:
        async with session.get(target[0], timeout=target[1]) as resp:
            body = await resp.content.read(MAX_BODY)
            return Observation(
                elapsed_ms=elapsed(),
                status=resp.status,
                body=body.decode("utf-8", errors="replace"),
            )
    except TimeoutError:
        return Observation(
            elapsed_ms=elapsed(), error=f"no answer within {check.timeout_seconds:g} s"
        )
    except aiohttp.ClientConnectorError as exc:
        return Observation(elapsed_ms=elapsed(), error=f"cannot connect ({exc.os_error})")
    except aiohttp.ClientError as exc:
        return Observation(elapsed_ms=elapsed(), error=f"{type(exc).__name__}: {exc}"[:300])
