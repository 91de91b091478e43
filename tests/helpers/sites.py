"""HTTP servers on 127.0.0.1 that stand for what the bot talks to (a site's /health, /flags)."""

from __future__ import annotations

from typing import Self

from aiohttp import web


class LocalSite:
    """An HTTP server on 127.0.0.1 (a free port) for what the bot talks to; subclasses add
    their routes in `routes`."""

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Fleet(LocalSite):
    """One endpoint per check (`/health/{n}`), all down or all up as the test says."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/health/{n}", self._health)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=503 if self.down else 200, text="")
