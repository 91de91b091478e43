"""The running bot: the Bolt app, its aiohttp server, and the roles of one process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError

import handlers
from bot.adapters import metrics
from bot.adapters.slack.notifier import web_client
from bot.blocks import actions
from bot.commands.flag import FLAG_USAGE
from bot.commands.release import USAGE
from bot.domain.config import DEPLOY_CHECK, OUTAGE_CHECK
from bot.runtime.container import Services
from bot.runtime.fleet import Fleet
from bot.runtime.logs import OUTAGE, quiet_malformed_http

if TYPE_CHECKING:  # the scheduler is imported by the roles that run one only
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)

# At least this long for each shutdown step (a monitoring tick, the web server's requests).
STOP_STEP_SECONDS = 90.0

Role = Literal["all", "web", "worker", "scheduler"]
ROLES: tuple[Role, ...] = ("all", "web", "worker", "scheduler")
SOCKET_CONNECT_TIMEOUT = 30.0


class SocketModeError(Exception):
    """Socket Mode could not connect; the message says why."""


class ProvideServices(AsyncMiddleware):
    """Puts the services into each request's context for the listeners. A middleware class
    rather than a function: Bolt builds every keyword argument a function middleware could ask
    for, on every request (costly, and it failed on payloads of an unexpected shape)."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        # The service the request is for (bot.runtime.fleet); None when several could be.
        services = self.fleet.route(req.body)
        req.context["fleet"] = self.fleet
        req.context["services"] = services
        if services is None and "command" not in req.body:
            # A click or form no service claims (its channel is none of theirs): nothing to
            # do, and nothing to say where nobody looks.
            log.warning("a %s from a channel of no service", req.body.get("type") or "request")
            return BoltResponse(status=200, body="")
        if may_change_status(req.body):
            # Here for Socket Mode too, which has no slack_events (below) to do it at the answer.
            for each in self.fleet.services:
                each.status.invalidate()
        return await next()


def may_change_status(body: dict[str, Any]) -> bool:
    """A click, a form or a /flag may change what `/release status` shows: no status snapshot
    from before it is served once it arrives or is answered (bot.runtime.shared_read). A
    /release tells its reads from its writes itself (handlers.commands.release); work done
    after an answer is covered by the snapshot's age limit (Settings.status_max_age)."""
    return body.get("command") != "/release"


def build_bolt_app(fleet: Fleet) -> AsyncApp:
    settings = fleet.first.settings
    app = AsyncApp(
        client=web_client(settings.bot_token, settings.slack_api_url),
        signing_secret=settings.signing_secret,
        # verify_slack_request (below) has checked every request on its raw bytes
        # before Bolt parses anything; Socket Mode needs no signature.
        request_verification_enabled=False,
    )

    app.use(ProvideServices(fleet))
    handlers.register(app)
    return app


# Slack's own limit: a request older (or newer) than five minutes is a replay.
MAX_CLOCK_SKEW = 300
_TIMESTAMP = re.compile(rb"^[0-9]{1,12}$")
_SIGNATURE = re.compile(rb"^v0=[0-9a-f]{64}$")
VERIFIED_BODY = web.RequestKey("releasebot.slack_body", str)


class Rejected(Exception):
    """A request that is not Slack's, or not well formed: the status and a fixed reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_signature(
    secret: bytes, body: bytes, timestamp: bytes | None, signature: bytes | None, now: float
) -> None:
    """Raises Rejected(401) unless `signature` is Slack's over exactly these bytes.

    Done here on the raw bytes rather than with slack_sdk's SignatureVerifier, which decodes
    the body first (a non-UTF-8 body raised) and takes the timestamp with int() (a malformed
    header raised): nothing unsigned may get as far as an exception."""
    if not timestamp or not _TIMESTAMP.fullmatch(timestamp):
        raise Rejected(401, "missing or malformed X-Slack-Request-Timestamp")
    if abs(now - int(timestamp)) > MAX_CLOCK_SKEW:
        raise Rejected(401, "stale or future timestamp")
    if not signature or not _SIGNATURE.fullmatch(signature):
        raise Rejected(401, "missing or malformed X-Slack-Signature")
    expected = hmac.new(secret, b"v0:" + timestamp + b":" + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(b"v0=" + expected.encode(), signature):
        raise Rejected(401, "bad signature")


def check_form(body: bytes, content_type: str) -> str:
    """A signed body as the JSON text Bolt is given, if it is a request Slack sends us; else
    Rejected(400).

    Bolt is given JSON, not the form: it takes any form whose text contains the word
    "payload" for an interaction, so `/release rc --description "payload sizes"` was parsed as
    an empty request and dropped."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "body is not UTF-8") from None
    if content_type == "application/json":
        try:
            parsed = json.loads(text)
        except ValueError:
            raise Rejected(400, "body is not JSON") from None
        if not isinstance(parsed, dict):
            raise Rejected(400, "JSON body is not an object")
        return text
    if content_type != "application/x-www-form-urlencoded":
        raise Rejected(400, "unsupported content type")
    form = dict(parse_qsl(text, keep_blank_values=True))
    payload = form.get("payload")
    if payload is None:
        # A slash command: orjson writes the same JSON (UTF-8, not \u escapes) in a tenth of
        # the time; parse_qsl's text has no lone surrogates for it to refuse.
        return orjson.dumps(form).decode()
    if payload is not None:
        try:
            parsed = json.loads(payload)
        except ValueError:
            raise Rejected(400, "payload is not JSON") from None
        if not isinstance(parsed, dict):
            raise Rejected(400, "payload is not a JSON object")
        # Bolt indexes into these without looking (an empty `actions` raised): Slack always
        # sends them, so a payload without them is not Slack's.
        actions = parsed.get("actions")
        if parsed.get("type") == "block_actions" and not (
            isinstance(actions, list) and actions and all(isinstance(a, dict) for a in actions)
        ):
            raise Rejected(400, "block_actions payload without actions")
        if parsed.get("type") in ("view_submission", "view_closed") and not isinstance(
            parsed.get("view"), dict
        ):
            raise Rejected(400, "view payload without a view")
    return json.dumps(parsed)


def _ascii(value: str | None) -> bytes | None:
    """A header as bytes; None for anything a real Slack header cannot be."""
    try:
        return value.encode("ascii") if value is not None else None
    except UnicodeEncodeError:
        return None


def verify_slack_request(signing_secret: str, clock: Callable[[], float] = time.time) -> Any:
    """aiohttp middleware in front of Bolt on POST /slack/events: the signature and the
    timestamp are checked on the raw bytes; anything unsigned is answered 401 and never parsed,
    anything signed but malformed 400. Each rejection is one bounded log line."""
    secret = signing_secret.encode()

    @web.middleware
    async def middleware(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if request.path != "/slack/events":
            return await handler(request)
        try:
            if request.headers.get("Content-Encoding", "identity") != "identity":
                # Slack compresses nothing: such a body is not Slack's, whatever it claims.
                raise Rejected(401, "compressed body")
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise Rejected(413, "body too large") from None
            except Exception:  # a broken chunked body, a connection reset mid-body
                raise Rejected(400, "unreadable body") from None
            headers = request.headers
            check_signature(
                secret,
                body,
                _ascii(headers.get("X-Slack-Request-Timestamp")),
                _ascii(headers.get("X-Slack-Signature")),
                clock(),
            )
            request[VERIFIED_BODY] = check_form(body, request.content_type)
        except Rejected as exc:
            # Fixed reasons only: nothing the sender chose reaches the log.
            log.warning(
                "rejected %s %s (%d bytes): %s",
                request.method,
                request.path,
                request.content_length or 0,
                exc.reason,
            )
            return web.Response(status=exc.status, text=f"{exc.reason}\n")
        return await handler(request)

    return middleware


def build_web_app(fleet: Fleet, bolt: AsyncApp | None) -> web.Application:
    """`POST /slack/events` (when `bolt` is given), `GET /healthz` and `GET /metrics`."""
    services = fleet.first

    async def slack_events(request: web.Request) -> web.Response:
        assert bolt is not None
        bolt_request = AsyncBoltRequest(
            body=request[VERIFIED_BODY],
            query=request.query_string,
            headers={name: request.headers.getall(name) for name in request.headers},
        )
        took = metrics.Timer()
        bolt_response = await bolt.async_dispatch(bolt_request)
        if may_change_status(bolt_request.body):
            # What it did before its answer is seen by every status from now on.
            for each in fleet.services:
                each.status.invalidate()
        answer = await to_aiohttp_response(bolt_response)
        kind, name = request_label(bolt_request.body)
        outcome = "ok" if answer.status < 400 else str(answer.status)
        metrics.REQUESTS.labels(kind, name, outcome).inc()
        metrics.ACK_SECONDS.labels(kind, name).observe(took.seconds)
        return answer

    async def healthz(_: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(services.redis.ping(), 2)
        except Exception:
            # Never the address or the error text: /healthz answers anyone who asks.
            return web.json_response({"ok": False, "redis": "Redis unreachable"}, status=503)
        return web.json_response({"ok": True, "redis": "ok"})

    figures = {each.config.service: DeliveryFigures() for each in fleet.services}

    async def metrics_page(_: web.Request) -> web.Response:
        for each in fleet.services:  # each service's gauges, labelled with its name
            await refresh_gauges(each, figures[each.config.service])
        return web.Response(
            body=generate_latest(metrics.REGISTRY),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    quiet_malformed_http()
    middlewares = [verify_slack_request(services.settings.signing_secret)] if bolt else []
    web_app = web.Application(middlewares=middlewares)
    if bolt is not None:
        web_app.router.add_post("/slack/events", slack_events)
    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_get("/metrics", metrics_page)
    return web_app


# What a request is, as a label: the command and its first word, the button or the form;
# anything else a client sends is "other" (a label value is a series kept for ever).
SUBCOMMANDS = {
    command: set(re.findall(rf"`{command} ([a-z]+)", usage))
    for command, usage in (("/release", USAGE), ("/flag", FLAG_USAGE))
}
ACTION_IDS = {
    value for name, value in vars(actions).items() if name.isupper() and isinstance(value, str)
}


def request_label(body: dict[str, Any]) -> tuple[str, str]:
    """(kind, name) of a Slack request: ("command", "/release rc"), ("action", "gate_approve"),
    ("view", "gate_reject_reason"), ("event", "other")."""
    if "command" in body:
        command = str(body.get("command", ""))
        words = str(body.get("text") or "").split(maxsplit=1)
        word = words[0].lower() if words else "help"
        if command not in SUBCOMMANDS:
            return "command", "other"
        return "command", f"{command} {metrics.bounded(word, SUBCOMMANDS[command])}"
    kind = str(body.get("type", ""))
    if kind == "block_actions":
        found = body.get("actions") or [{}]
        return "action", metrics.bounded(str(found[0].get("action_id", "")), ACTION_IDS)
    if kind == "view_submission":
        view = body.get("view") or {}
        return "view", metrics.bounded(str(view.get("callback_id", "")), ACTION_IDS)
    return "event", "other"


DELIVERY_EVERY = 600.0  # seconds between two workings-out of the delivery figures
DELIVERY_DAYS = 30


class DeliveryFigures:
    """The delivery figures of /metrics, worked out in the background at most every
    DELIVERY_EVERY seconds: a scrape never waits on the trail and git."""

    def __init__(self) -> None:
        self.at = -DELIVERY_EVERY
        self.task: asyncio.Task[None] | None = None

    def refresh(self, services: Services) -> None:
        now = time.monotonic()
        if now - self.at < DELIVERY_EVERY or (self.task is not None and not self.task.done()):
            return
        self.at = now
        self.task = asyncio.create_task(self._work_out(services))
        services.track(self.task)

    async def _work_out(self, services: Services) -> None:
        from bot.services.delivery_report import delivery_report

        try:
            now = services.clock()
            report = await delivery_report(services, now - DELIVERY_DAYS * 86400, now)
        except Exception:
            log.warning("working out the delivery figures failed", exc_info=True)
            return
        metrics.delivery(
            services.config.service,
            {e.name: report.per_day(e.name) for e in services.config.environments},
            report.lead_time_median,
            report.lead_time_p90,
            report.change_failure_rate,
            report.restore_median,
        )


async def refresh_gauges(services: Services, figures: DeliveryFigures | None = None) -> None:
    """What /metrics reads from Redis when it is scraped: the incidents open now (and the
    delivery figures, when they are due to be worked out again)."""
    if figures is not None:
        figures.refresh(services)
    environments = [e.name for e in services.config.environments]
    pairs = [(e, check) for e in environments for check in (OUTAGE_CHECK, DEPLOY_CHECK)]
    try:
        states = await services.monitor_state.check_states(pairs)
    except Exception:
        metrics.REDIS_ERRORS.inc()
        return
    counts = {(e, s): 0 for e in environments for s in ("warning", "critical")}
    for state in states:
        if state.incident is not None:
            key = (state.incident.environment, state.incident.severity)
            if key in counts:
                counts[key] += 1
    for (environment, severity), count in counts.items():
        metrics.OPEN_INCIDENTS.labels(services.config.service, environment, severity).set(count)


def settle_gc() -> None:
    """The collector's settings of a running bot (bench/monitor_fanout.py measures the monitor
    under them too). Long-lived startup objects (Bolt, slack_sdk, aiohttp, config) never
    become garbage: freezing them keeps full collections from pausing every request in flight.
    Fewer, larger young collections: per-request garbage is mostly freed by refcounting, and
    a tick's thousands of probes in flight no longer trigger a full collection each time the
    young ones survive a little."""
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


class Bot:
    """The roles of one process, started and stopped together."""

    def __init__(
        self,
        services: Services | Fleet,
        role: Role = "all",
        workers_for: set[str] | None = None,
    ) -> None:
        self.fleet = services if isinstance(services, Fleet) else Fleet.of(services)
        # The services whose jobs this process's worker runs (None: all of them).
        self.workers_for = workers_for
        self.schedulers: list[AsyncIOScheduler] = []  # once started (scheduler role)
        # The first (with one service, the only) service's container.
        self.services = self.fleet.first
        self.role = role
        self.port: int | None = None
        self._cleanups: list[Callable[[], Awaitable[Any]]] = []

    async def start(self, port: int = 3000, host: str = "0.0.0.0") -> None:
        services, role, fleet = self.services, self.role, self.fleet
        bolt = build_bolt_app(fleet) if role in ("all", "web") else None
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
                    "app-level token (xapp-...) with the connections:write scope"
                ) from exc
            socket_mode.client.wss_uri = opened["url"]
            try:
                await asyncio.wait_for(socket_mode.connect_async(), SOCKET_CONNECT_TIMEOUT)
            except TimeoutError:
                raise SocketModeError(
                    f"could not open the Socket Mode WebSocket within {SOCKET_CONNECT_TIMEOUT:.0f}s"
                ) from None
            log.info("connected to Slack in Socket Mode")

        watcher = asyncio.create_task(OUTAGE.watch(services.redis))

        async def stop_watching() -> None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

        self._cleanups.append(stop_watching)
        # Every role serves /healthz, so each container can be health-checked.
        runner = web.AppRunner(build_web_app(fleet, None if socket_mode else bolt))
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._cleanups.append(runner.cleanup)
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("listening on %s:%s (role %s)", host, self.port, role)

        if role in ("all", "worker"):
            for each in fleet.services:
                if self.workers_for is None or each.config.service in self.workers_for:
                    self._start_worker(each)
        if role in ("all", "scheduler"):
            self._start_schedulers()

        settle_gc()

    def _start_worker(self, services: Services) -> None:
        """A worker of the service's own queue: a long deploy of one service never holds up
        another's (each has its own queue and its own concurrency)."""
        from bot.runtime.worker import build_worker

        worker = build_worker(services)
        worker_task = asyncio.create_task(worker.start())

        async def stop_worker() -> None:
            # saq's stop waits the whole grace period for every task it has, its upkeep
            # loops and its idle pops included: an idle worker took 20 s to stop, past
            # docker stop's 10 s, and was killed. Only running jobs get the grace period:
            # the rest has nothing to finish and is cancelled now.
            worker.event.set()  # no new job is taken
            if not worker.job_task_contexts:
                for task in list(worker.tasks):
                    task.cancel()
            else:
                for task in list(worker.tasks):
                    if task.get_name() != "process":
                        task.cancel()
            await worker.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await worker_task

        self._cleanups.append(stop_worker)

    def _start_schedulers(self) -> None:
        """Each service's scheduled jobs, and one monitoring tick for every service's checks
        (each service's share of them, each its own state): a slow endpoint of one service
        is probed in the same fan-out as the others, not in a tick of its own."""
        from bot.runtime.scheduler import build_scheduler
        from bot.services.monitor_health import Monitor

        fleet = self.fleet
        monitors = [
            Monitor(each)
            for each in fleet.services
            if any(e.checks for e in each.config.environments)
        ]
        # The first service's scheduler ticks every service's monitor.
        schedulers = [
            build_scheduler(each, monitors if i == 0 else ())
            for i, each in enumerate(fleet.services)
        ]
        for scheduler in schedulers:
            scheduler.start()
        self.schedulers = schedulers

        async def stop_schedulers() -> None:
            for scheduler in schedulers:
                scheduler.shutdown(wait=False)
            for each in fleet.services:
                await each.drain_background()  # a tick in flight finishes first
            for monitor in monitors:
                await monitor.close()

        self._cleanups.append(stop_schedulers)

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
        await self.fleet.close()


async def serve(
    services: Services | Fleet,
    role: Role,
    port: int,
    host: str = "0.0.0.0",
    stop: asyncio.Event | None = None,
    workers_for: set[str] | None = None,
) -> None:
    """Run the given role(s) until `stop` is set."""
    bot = Bot(services, role, workers_for)
    try:
        await bot.start(port, host)
        await (stop or asyncio.Event()).wait()
    finally:
        await bot.stop()
