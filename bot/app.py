"""The running bot: the Bolt app, its aiohttp server, and the roles of one process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackApiError

import handlers
from bot.services import Services
from bot.slack import web_client

log = logging.getLogger(__name__)

# At least this long for each shutdown step (a monitoring tick, the web server's requests).
STOP_STEP_SECONDS = 90.0

Role = Literal["all", "web", "worker", "scheduler"]
ROLES: tuple[Role, ...] = ("all", "web", "worker", "scheduler")
SOCKET_CONNECT_TIMEOUT = 30.0


class SocketModeError(Exception):
    """Socket Mode could not connect; the message says why."""


def build_bolt_app(services: Services) -> AsyncApp:
    settings = services.settings
    app = AsyncApp(client=web_client(settings.bot_token, settings.slack_api_url),
                   signing_secret=settings.signing_secret)

    @app.middleware
    async def provide_services(context: AsyncBoltContext,
                               next: Callable[[], Awaitable[Any]]) -> Any:
        context["services"] = services
        return await next()

    handlers.register(app)
    return app


def build_web_app(services: Services, bolt: AsyncApp | None) -> web.Application:
    """`POST /slack/events` (when `bolt` is given) and `GET /healthz`."""

    async def slack_events(request: web.Request) -> web.Response:
        assert bolt is not None
        bolt_response = await bolt.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    async def healthz(_: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(services.redis.ping(), 2)
        except Exception as exc:
            return web.json_response({"ok": False, "redis": f"unreachable: {exc}"}, status=503)
        return web.json_response({"ok": True, "redis": "ok"})

    web_app = web.Application()
    if bolt is not None:
        web_app.router.add_post("/slack/events", slack_events)
    web_app.router.add_get("/healthz", healthz)
    return web_app


class Bot:
    """The roles of one process, started and stopped together."""

    def __init__(self, services: Services, role: Role = "all") -> None:
        self.services = services
        self.role = role
        self.port: int | None = None
        self._cleanups: list[Callable[[], Awaitable[Any]]] = []

    async def start(self, port: int = 3000, host: str = "0.0.0.0") -> None:
        services, role = self.services, self.role
        bolt = build_bolt_app(services) if role in ("all", "web") else None
        socket_mode = None
        if bolt is not None and services.settings.app_token:
            from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

            app_token = services.settings.app_token
            # With no web_client given, the handler opens connections through bolt.client, so
            # apps.connections.open goes to SLACK_API_URL like every other call.
            socket_mode = AsyncSocketModeHandler(bolt, app_token)
            self._cleanups.append(socket_mode.close_async)
            # slack_sdk retries a refused connection for ever; ask for the URL once ourselves so
            # a bad SLACK_APP_TOKEN stops start-up with Slack's reason.
            try:
                opened = await bolt.client.apps_connections_open(app_token=app_token)
            except SlackApiError as exc:
                raise SocketModeError(
                    f"Slack refused SLACK_APP_TOKEN ({exc.response.get('error')}): it must be an "
                    "app-level token (xapp-...) with the connections:write scope") from exc
            socket_mode.client.wss_uri = opened["url"]
            try:
                await asyncio.wait_for(socket_mode.connect_async(), SOCKET_CONNECT_TIMEOUT)
            except TimeoutError:
                raise SocketModeError("could not open the Socket Mode WebSocket within "
                                      f"{SOCKET_CONNECT_TIMEOUT:.0f}s") from None
            log.info("connected to Slack in Socket Mode")

        # Every role serves /healthz, so each container can be health-checked.
        runner = web.AppRunner(build_web_app(services, None if socket_mode else bolt))
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._cleanups.append(runner.cleanup)
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("listening on %s:%s (role %s)", host, self.port, role)

        if role in ("all", "worker"):
            from bot.worker import build_worker

            worker = build_worker(services)
            worker_task = asyncio.create_task(worker.start())

            async def stop_worker() -> None:
                await worker.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker_task

            self._cleanups.append(stop_worker)
        if role in ("all", "scheduler"):
            from bot.monitor import Monitor
            from bot.scheduler import build_scheduler

            monitor = Monitor(services) if any(
                e.checks for e in services.config.environments) else None
            scheduler = build_scheduler(services, monitor)
            scheduler.start()

            async def stop_scheduler() -> None:
                scheduler.shutdown(wait=False)
                await services.drain_background()  # a tick in flight finishes first
                if monitor is not None:
                    await monitor.close()

            self._cleanups.append(stop_scheduler)

        # Long-lived startup objects (Bolt, slack_sdk, aiohttp, config) never become garbage:
        # freezing them keeps full collections from pausing every request in flight.
        # Fewer, larger young collections: per-request garbage is mostly freed by refcounting.
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)

    async def stop(self) -> None:
        # Bounded, like Services.close: shutting down must end even if a step hangs (but
        # running deploys get their configured grace period).
        limit = max(STOP_STEP_SECONDS, self.services.config.worker.shutdown_grace_seconds + 30)
        for cleanup in reversed(self._cleanups):
            try:
                await asyncio.wait_for(cleanup(), limit)
            except Exception:
                log.exception("shutdown step failed")
        self._cleanups.clear()
        await self.services.close()


async def serve(services: Services, role: Role, port: int, host: str = "0.0.0.0",
                stop: asyncio.Event | None = None) -> None:
    """Run the given role(s) until `stop` is set."""
    bot = Bot(services, role)
    try:
        await bot.start(port, host)
        await (stop or asyncio.Event()).wait()
    finally:
        await bot.stop()
