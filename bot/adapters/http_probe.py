"""HTTP GETs for the health checks: one shared aiohttp session, a bound on checks in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import aiohttp
from yarl import URL

from bot.domain.config import CheckConfig
from bot.domain.health.checks import Observation

MAX_BODY = 256 * 1024  # enough for /health, /build-info and /flags; a bigger page is cut


class Prober:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None
        self._targets: dict[str, tuple[URL, aiohttp.ClientTimeout]] = {}

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
        """Every check, at most `concurrency` at a time: that many workers take the next
        check as they finish one. (A task per check made 5,000 tasks in one go, and woke them
        all as connections freed: the event loop was held up to 150 ms at a time.)"""
        session = self._open()
        seen: list[Observation | None] = [None] * len(checks)
        todo = iter(range(len(checks)))

        async def worker() -> None:
            for i in todo:  # shared: each index is taken by one worker
                seen[i] = await observe(session, checks[i], self._target(checks[i]))

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(checks)))))
        return [s for s in seen if s is not None]

    def _target(self, check: CheckConfig) -> tuple[URL, aiohttp.ClientTimeout]:
        # Parsed once per check, not on every tick.
        target = self._targets.get(check.url)
        if target is None or target[1].total != check.timeout_seconds:
            target = (URL(check.url), aiohttp.ClientTimeout(total=check.timeout_seconds))
            self._targets[check.url] = target
        return target

    async def close(self) -> None:
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
