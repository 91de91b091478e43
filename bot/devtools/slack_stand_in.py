"""A small local stand-in for Slack's Web API, for the tests and `releasebot shell`.

Slack itself cannot be reached from tests (nor is it needed to try the bot), so
:class:`SlackStandIn` runs an ``aiohttp.web`` server on ``127.0.0.1`` that answers the
handful of Web API methods releasebot uses, the way Slack would: same envelopes
(``{"ok": ...}``), same error names, HTTP 200 for API errors, HTTP 429 + ``Retry-After`` for
rate limits.  Point ``slack_sdk``'s clients at it with
``base_url=slack.base_url``.

Everything that reaches it is recorded in :attr:`SlackStandIn.calls` (also rejected and
throttled calls), posted messages are kept (:meth:`SlackStandIn.messages`), and Block Kit
payloads are validated with ``slack_sdk``'s models; anything Slack would reject is answered with
``invalid_blocks`` and described in :attr:`SlackStandIn.invalid`, so bot tests can end with
``assert slack.invalid == []``.

Socket Mode is served too: ``apps.connections.open`` (called with an ``xapp-`` app-level token)
answers a ``ws://`` URL on the same server; a client that connects gets Slack's ``hello``, and
:meth:`SlackStandIn.send_slash_command` (or :meth:`~SlackStandIn.send_envelope`) delivers an
envelope over it and returns the client's ack.  Acks are recorded as ``"socket_mode.ack"`` calls
and their blocks validated like any message.

Example::

    async with SlackStandIn() as slack:
        client = AsyncWebClient(token=slack.token, base_url=slack.base_url)
        resp = await client.chat_postMessage(channel="#releases", text="hi")
        assert slack.messages()[resp["ts"]].channel == "CRELEASES"
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import re
import time
import uuid
import warnings
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.devtools import payloads

T = TypeVar("T")

TEAM_ID = "T0TEST"
TEAM_NAME = "releasebot-test"
TEAM_URL = "https://releasebot-test.slack.com/"
BOT_USER_ID = "U0BOT"
BOT_USER_NAME = "releasebot"
BOT_ID = "B0BOT"
APP_ID = "A0APP"
WORKSPACE = payloads.Workspace(
    team_id=TEAM_ID, team_domain=TEAM_NAME, app_id=APP_ID, token="verification-token"
)

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_HEADER_TEXT = 150
MAX_SECTION_TEXT = 3000

# Slack tells the user the app did not respond when an envelope is not acked within 3 seconds.
SOCKET_ACK_TIMEOUT = 3.0
# Methods that take an app-level (xapp-) token instead of the bot token.
_APP_TOKEN_METHODS = frozenset({"apps.connections.open"})

# Fields that slack_sdk (or bolt) may send as a JSON string inside a form body.
_JSON_FIELDS = ("blocks", "attachments", "view", "metadata", "user_auth_blocks")
_TEXT_KEYS = ("text", "title", "pretext", "footer")
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9_]+")
_USER_ID = re.compile(r"[UW][A-Z0-9]+")

Handler = Callable[[dict[str, Any]], dict[str, Any] | Awaitable[dict[str, Any]]]


@dataclass
class RecordedCall:
    """One request that reached the stand-in (Web API call or response_url post).

    ``at`` is ``time.monotonic()`` when the request arrived.  ``status`` and ``response`` are
    filled in once it has been answered (``response`` is the JSON body, or ``{"text": ...}`` for
    response_url answers).
    """

    method: str
    params: dict[str, Any]
    at: float
    status: int = 0
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.response.get("ok", False) is True

    @property
    def error(self) -> str | None:
        return self.response.get("error")


@dataclass
class Message:
    """Current state of a posted message (after every chat.update applied)."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None
    updates: int = 0
    attachments: list[dict[str, Any]] = field(default_factory=list)

    def to_slack(self) -> dict[str, Any]:
        """The message as Slack returns it in ``message`` fields."""
        out: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": self.text,
            "ts": self.ts,
        }
        if self.blocks:
            out["blocks"] = self.blocks
        if self.attachments:
            out["attachments"] = self.attachments
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        return out


@dataclass
class _Envelope:
    """A Socket Mode envelope sent to the client; ``ack`` resolves with the client's ack."""

    type: str
    accepts_response_payload: bool
    ack: asyncio.Future[dict[str, Any]]


@dataclass
class _Fault:
    status: int = 200
    retry_after: int = 1
    error: str | None = None
    html: bool = False  # an error page that is not JSON, as a proxy or an outage serves
    delay: float = 0.0  # seconds before answering (a client's timeout)


class _SlackError(Exception):
    """Raised by a method handler to answer ``{"ok": false, "error": ...}``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


# --------------------------------------------------------------------------------------------
# Block Kit validation
# --------------------------------------------------------------------------------------------


def _text_value(obj: Any) -> str | None:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        return str(obj["text"])
    return None


def _empty_text_objects(node: Any, path: str) -> list[str]:
    """Slack rejects plain_text / mrkdwn objects whose text is empty."""
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("type") in ("plain_text", "mrkdwn") and not node.get("text"):
            found.append(f"{path}: {node.get('type')} text must be more than 0 characters")
        for key, value in node.items():
            found.extend(_empty_text_objects(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_empty_text_objects(value, f"{path}[{i}]"))
    return found


def validate_blocks(
    blocks: Any, *, where: str = "blocks", limit: int = MAX_MESSAGE_BLOCKS
) -> list[str]:
    """Describe everything Slack would reject in ``blocks`` (an empty list when valid)."""
    if not isinstance(blocks, list):
        return [f"{where}: must be a JSON array of blocks, got {type(blocks).__name__}"]
    errors: list[str] = []
    if len(blocks) > limit:
        errors.append(f"{where}: {len(blocks)} blocks, no more than {limit} allowed")
    seen_ids: set[str] = set()
    for i, raw in enumerate(blocks):
        label = f"{where}[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            errors.append(f"{label}: a block must be an object with a 'type'")
            continue
        btype = raw["type"]
        label = f"{label} ({btype})"
        block_id = raw.get("block_id")
        if block_id is not None:
            if block_id in seen_ids:
                errors.append(f"{label}: duplicate block_id {block_id!r}")
            seen_ids.add(block_id)
        text = _text_value(raw.get("text"))
        if btype == "header" and text is not None and len(text) > MAX_HEADER_TEXT:
            errors.append(f"{label}: header text is {len(text)} chars, max {MAX_HEADER_TEXT}")
        if btype == "section" and text is not None and len(text) > MAX_SECTION_TEXT:
            errors.append(f"{label}: section text is {len(text)} chars, max {MAX_SECTION_TEXT}")
        errors.extend(_empty_text_objects(raw, label))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                block = Block.parse(raw)
                if block is None:
                    errors.append(f"{label}: unknown block type {btype!r}")
                    continue
                block.validate_json()
                dumped = block.to_dict()  # validates nested elements/text objects too
        except Exception as exc:  # slack_sdk raises SlackObjectFormationError, TypeError, ...
            errors.append(f"{label}: {type(exc).__name__}: {exc}")
            continue
        errors.extend(_dropped_elements(raw, dumped, label))
    return errors


def _dropped_elements(raw: dict[str, Any], dumped: dict[str, Any], label: str) -> list[str]:
    """slack_sdk silently drops elements of unknown type; Slack rejects them."""
    errors: list[str] = []
    for key in ("accessory", "element", "elements", "fields"):
        raw_value = raw.get(key)
        if not raw_value:
            continue
        got = dumped.get(key)
        if isinstance(raw_value, list):
            got_items = got if isinstance(got, list) else []
            for j, item in enumerate(raw_value):
                if j >= len(got_items) or got_items[j] is None:
                    kind = item.get("type") if isinstance(item, dict) else item
                    errors.append(f"{label}.{key}[{j}]: unknown element type {kind!r}")
        elif got is None:
            kind = raw_value.get("type") if isinstance(raw_value, dict) else raw_value
            errors.append(f"{label}.{key}: unknown element type {kind!r}")
    return errors


def validate_view(view: Any, *, where: str = "view") -> list[str]:
    """Describe everything Slack would reject in a modal / home ``view``."""
    if not isinstance(view, dict):
        return [f"{where}: must be a JSON object, got {type(view).__name__}"]
    errors = validate_blocks(view.get("blocks", []), where=f"{where}.blocks", limit=MAX_VIEW_BLOCKS)
    for key in ("title", "submit", "close"):
        errors.extend(_empty_text_objects(view.get(key), f"{where}.{key}"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = View(**view)
            model.validate_json()
    except Exception as exc:
        errors.append(f"{where}: {type(exc).__name__}: {exc}")
    return errors


def _content_errors(params: dict[str, Any], where: str) -> list[str]:
    errors: list[str] = []
    if "blocks" in params:
        errors.extend(validate_blocks(params["blocks"], where=f"{where}.blocks"))
    attachments = params.get("attachments")
    if attachments is not None:
        if not isinstance(attachments, list):
            errors.append(f"{where}.attachments: must be a JSON array")
        else:
            for i, att in enumerate(attachments):
                if isinstance(att, dict) and "blocks" in att:
                    errors.extend(
                        validate_blocks(att["blocks"], where=f"{where}.attachments[{i}].blocks")
                    )
    return errors


# --------------------------------------------------------------------------------------------
# Text flattening
# --------------------------------------------------------------------------------------------


def _collect_text(node: Any, out: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _collect_text(item, out)
        return
    if not isinstance(node, dict):
        return
    ntype = node.get("type")
    if ntype == "user" and "user_id" in node:
        out.append(f"<@{node['user_id']}>")
    elif ntype == "channel" and "channel_id" in node:
        out.append(f"<#{node['channel_id']}>")
    elif ntype == "usergroup" and "usergroup_id" in node:
        out.append(f"<!subteam^{node['usergroup_id']}>")
    elif ntype == "emoji" and "name" in node:
        out.append(f":{node['name']}:")
    elif ntype == "link" and "text" not in node and "url" in node:
        out.append(str(node["url"]))
    for key, value in node.items():
        if isinstance(value, str) and key in _TEXT_KEYS:
            out.append(value)
        elif isinstance(value, dict | list):
            _collect_text(value, out)


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class SlackStandIn:
    """Local stand-in for Slack's Web API (see the module docstring).

    ``token`` is the only bot token accepted.  ``app_token`` is the only app-level token accepted
    by ``apps.connections.open``; by default any ``xapp-`` token is.
    """

    def __init__(self, token: str = "xoxb-test", app_token: str | None = None) -> None:
        self.token = token
        self.app_token = app_token
        self.calls: list[RecordedCall] = []
        self.invalid: list[str] = []
        # Settable directory data.
        self.users: dict[str, dict[str, Any]] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        # State.
        self.views: dict[str, dict[str, Any]] = {}
        self._messages: dict[str, Message] = {}
        self._channel_names: dict[str, str] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._custom: dict[str, Handler] = {}
        self._response_urls: dict[str, dict[str, Any]] = {}
        self._ts_counter = itertools.count(1)
        # Socket Mode: issued connection ids, open connections (oldest first), unacked envelopes.
        self._socket_ids: set[str] = set()
        self._sockets: list[tuple[str, web.WebSocketResponse]] = []
        self._envelopes: dict[str, _Envelope] = {}
        self._id_counter = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._started_at = time.monotonic()
        self._builtin: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "api.test": self._api_test,
            "apps.connections.open": self._apps_connections_open,
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "conversations.info": self._conversations_info,
            "views.open": self._views_open,
            "views.push": lambda params: self._views_open(params, "views.push"),
            "views.update": self._views_update,
            "views.publish": self._views_publish,
        }

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_route("*", "/response/{rid}", self._handle_response_url)
        app.router.add_get("/socket/{sid}", self._handle_socket)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._started_at = time.monotonic()

    async def stop(self) -> None:
        for _, ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"stand-in stopping")
        for envelope in self._envelopes.values():
            envelope.ack.cancel()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("SlackStandIn is not started; call `await start()` first")
        return self._port

    @property
    def base_url(self) -> str:
        """Web API base URL for slack_sdk clients (it appends the method name)."""
        return f"http://127.0.0.1:{self.port}/api/"

    # ---- configuration ---------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int = 1,
        times: int = 1,
        html: bool = False,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with HTTP ``status``.

        429 answers carry ``Retry-After: retry_after`` and ``{"ok": false, "error":
        "ratelimited"}``; other statuses answer ``{"ok": false, "error": "fatal_error"}``, or,
        with ``html``, an HTML error page (not JSON). ``method`` may also be
        ``"response_url"``.
        """
        queue = self._faults.setdefault(method, deque())
        for _ in range(times):
            queue.append(_Fault(status=status, retry_after=retry_after, html=html))

    def delay_next(self, method: str, seconds: float, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` only after ``seconds`` (normally)."""
        queue = self._faults.setdefault(method, deque())
        for _ in range(times):
            queue.append(_Fault(delay=seconds))

    def error_next(self, method: str, error: str, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with HTTP 200 ``{"ok": false, error}``."""
        queue = self._faults.setdefault(method, deque())
        for _ in range(times):
            queue.append(_Fault(error=error))

    def on(self, method: str, handler: Handler) -> None:
        """Answer ``method`` with ``handler(params)`` (sync or async; ``ok: true`` is added
        unless the handler sets ``ok``).  Overrides built-in methods; auth checks, recording
        and fault injection still apply."""
        self._custom[method] = handler

    def response_url(
        self, name: str = "", *, channel: str | None = None, message_ts: str | None = None
    ) -> str:
        """A fresh response_url; posts to it are recorded with method ``"response_url"``.

        If ``channel``/``message_ts`` name a posted message, ``replace_original`` /
        ``delete_original`` posts are applied to that message in :meth:`messages`.
        """
        safe = re.sub(r"[^A-Za-z0-9_-]", "-", name)
        rid = f"{safe}-{next(self._id_counter)}" if safe else str(next(self._id_counter))
        self._response_urls[rid] = {
            "name": name,
            "channel": self._channel_id(channel) if channel else None,
            "message_ts": message_ts,
        }
        return f"http://127.0.0.1:{self.port}/response/{rid}"

    # ---- query helpers ---------------------------------------------------------------------

    def calls_to(self, method: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.method == method]

    def messages(self) -> dict[str, Message]:
        """Current state of every posted (and not deleted) message, keyed by ts."""
        return dict(self._messages)

    def thread(self, ts: str) -> list[Message]:
        """Replies posted with ``thread_ts == ts``, oldest first."""
        replies = [m for m in self._messages.values() if m.thread_ts == ts and m.ts != ts]
        return sorted(replies, key=lambda m: float(m.ts))

    def channel_messages(self, channel: str) -> list[Message]:
        """Top-level messages of a channel (id or name), oldest first."""
        cid = self._channel_id(channel)
        found = [m for m in self._messages.values() if m.channel == cid and m.thread_ts is None]
        return sorted(found, key=lambda m: float(m.ts))

    @staticmethod
    def text_of(message: Message | RecordedCall | dict[str, Any] | list[Any]) -> str:
        """All human-readable text of a message, newline-joined: its ``text`` then every text in
        its blocks (section text/fields, context, header, buttons, rich text, ...) and
        attachments.  Also accepts a RecordedCall (its params), a payload dict or a block list."""
        parts: list[str] = []
        if isinstance(message, Message):
            if message.text:
                parts.append(message.text)
            _collect_text(message.blocks, parts)
            _collect_text(message.attachments, parts)
        else:
            payload: Any = message.params if isinstance(message, RecordedCall) else message
            if isinstance(payload, dict):
                if isinstance(payload.get("text"), str) and payload["text"]:
                    parts.append(payload["text"])
                for key in ("blocks", "attachments", "view"):
                    _collect_text(payload.get(key), parts)
            else:
                _collect_text(payload, parts)
        return "\n".join(parts)

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Poll ``predicate`` every 0.02 s until it returns something truthy, and return that.

        Exceptions raised by the predicate count as "not yet".  On timeout raises
        AssertionError with the last exception and a dump of recent calls."""
        deadline = time.monotonic() + timeout
        last_exc: BaseException | None = None
        while True:
            try:
                result = predicate()
                last_exc = None
                if result:
                    return result
            except Exception as exc:
                last_exc = exc
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.02)
        detail = f"; last error: {type(last_exc).__name__}: {last_exc}" if last_exc else ""
        raise AssertionError(
            f"wait_for: condition not met within {timeout:.2f}s{detail}\n{self.dump()}"
        )

    def dump(self, last: int = 20) -> str:
        """Readable summary of the most recent calls (and validation failures)."""
        lines = [f"recent Slack calls ({min(last, len(self.calls))} of {len(self.calls)}):"]
        for call in self.calls[-last:]:
            outcome = "ok" if call.ok else (call.error or f"HTTP {call.status}")
            params = json.dumps(call.params, default=str)
            if len(params) > 300:
                params = params[:297] + "..."
            lines.append(
                f"  +{call.at - self._started_at:7.3f}s {call.method} -> {outcome} {params}"
            )
        if self.invalid:
            lines.append("invalid payloads:")
            lines.extend(f"  {desc}" for desc in self.invalid)
        return "\n".join(lines)

    # ---- Socket Mode -----------------------------------------------------------------------

    @property
    def socket_connections(self) -> list[str]:
        """Ids of the open Socket Mode connections, oldest first (each has been sent hello)."""
        return [sid for sid, ws in self._sockets if not ws.closed]

    async def socket_connected(self, timeout: float = 10.0) -> str:
        """Wait until a Socket Mode client is connected and has been sent ``hello``; return the
        newest connection's id.  Raises AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not (open_ids := self.socket_connections):
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"no Socket Mode client connected within {timeout:.2f}s\n{self.dump()}"
                )
            await asyncio.sleep(0.02)
        return open_ids[-1]

    async def send_envelope(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool = False,
        timeout: float = SOCKET_ACK_TIMEOUT,
        **extra: Any,
    ) -> dict[str, Any]:
        """Send ``{"envelope_id", "type", "accepts_response_payload", "payload", **extra}`` to
        the newest Socket Mode connection and return the client's ack as it arrived
        (``{"envelope_id": ..., "payload": {...}}``, ``payload`` being optional).

        Waits up to ``timeout`` for a connection, then up to ``timeout`` for the ack (Slack gives
        up after 3 s), raising AssertionError without one.  The ack is recorded as a
        ``"socket_mode.ack"`` call whose params are its payload plus ``_envelope_id`` and
        ``_envelope_type``; invalid blocks in it are reported like those of any message."""
        sid = await self.socket_connected(timeout)
        ws = next(ws for open_sid, ws in reversed(self._sockets) if open_sid == sid)
        envelope_id = str(uuid.uuid4())
        envelope = _Envelope(
            type=envelope_type,
            accepts_response_payload=accepts_response_payload,
            ack=asyncio.get_running_loop().create_future(),
        )
        self._envelopes[envelope_id] = envelope
        await ws.send_str(
            json.dumps(
                {
                    "envelope_id": envelope_id,
                    "type": envelope_type,
                    "accepts_response_payload": accepts_response_payload,
                    "payload": payload,
                    **extra,
                }
            )
        )
        try:
            return await asyncio.wait_for(envelope.ack, timeout)
        except TimeoutError:
            raise AssertionError(
                f"{envelope_type} envelope {envelope_id} was not acked within {timeout:.2f}s\n"
                f"{self.dump()}"
            ) from None

    async def send_slash_command(
        self, payload: dict[str, Any], *, timeout: float = SOCKET_ACK_TIMEOUT
    ) -> dict[str, Any]:
        """Deliver a slash command over Socket Mode and return the ack (see
        :meth:`send_envelope`); :meth:`slash_command_payload` builds a realistic ``payload``."""
        return await self.send_envelope(
            "slash_commands", payload, accepts_response_payload=True, timeout=timeout
        )

    async def send_interactive(
        self, payload: dict[str, Any], *, timeout: float = SOCKET_ACK_TIMEOUT
    ) -> dict[str, Any]:
        """Deliver an interactivity payload (block_actions, view_submission, ...) over Socket
        Mode and return the ack.  Like Slack, only view_submission and block_suggestion
        envelopes accept a response payload."""
        accepts = payload.get("type") in ("view_submission", "block_suggestion")
        return await self.send_envelope(
            "interactive", payload, accepts_response_payload=accepts, timeout=timeout
        )

    async def send_event(
        self, event: dict[str, Any], *, timeout: float = SOCKET_ACK_TIMEOUT
    ) -> dict[str, Any]:
        """Deliver an Events API ``event`` (wrapped in its event_callback) and return the ack."""
        payload = {
            "token": "verification-token",
            "team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": self._new_id("Ev"),
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
        }
        return await self.send_envelope(
            "events_api", payload, timeout=timeout, retry_attempt=0, retry_reason=""
        )

    def slash_command_payload(
        self,
        text: str = "",
        *,
        command: str = "/release",
        user_id: str = "U0ALICE",
        user_name: str = "alice",
        channel_id: str = "C0DEV",
        channel_name: str = "dev",
    ) -> dict[str, Any]:
        """A slash command payload as Slack sends it, with a fresh response_url (named after
        the user) and trigger_id."""
        return payloads.slash_command(
            WORKSPACE,
            payloads.Person(user_id, user_name),
            command=command,
            text=text,
            channel_id=channel_id,
            channel_name=channel_name,
            response_url=self.response_url(user_id),
            trigger=f"{next(self._id_counter)}.{time.time_ns()}.{uuid.uuid4().hex}",
        )

    async def disconnect_sockets(self, reason: str = "refresh_requested") -> None:
        """Send Slack's ``disconnect`` message to every open connection (a well-behaved client
        then opens a new connection and closes the old one)."""
        message = json.dumps(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-stand-in"}}
        )
        for _, ws in list(self._sockets):
            if not ws.closed:
                await ws.send_str(message)

    # ---- HTTP plumbing ---------------------------------------------------------------------

    @staticmethod
    async def _read_params(request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    body = {"_invalid_json": await request.text()}
                if isinstance(body, dict):
                    params.update(body)
                else:
                    params["_invalid_json"] = body
            elif request.content_type in (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ):
                form = await request.post()
                for key in form:
                    value = form.getone(key)
                    params[key] = value if isinstance(value, str) else str(value)
            else:
                text = await request.text()
                if text:
                    try:
                        body = json.loads(text)
                    except ValueError:
                        body = {"_raw_body": text}
                    params.update(body if isinstance(body, dict) else {"_raw_body": body})
        for key in _JSON_FIELDS:
            field = params.get(key)
            if isinstance(field, str) and field.strip()[:1] in ("[", "{"):
                # Not JSON: left as a string, which the validation reports.
                with contextlib.suppress(ValueError):
                    params[key] = json.loads(field)
        return params

    def _take_fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method)
        if queue:
            return queue.popleft()
        return None

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._read_params(request)
        form_token = params.pop("token", None)
        call = RecordedCall(method=method, params=params, at=time.monotonic())
        self.calls.append(call)

        status = 200
        headers: dict[str, str] = {}
        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else form_token
        if not token:
            body: dict[str, Any] = {"ok": False, "error": "not_authed"}
        elif (token_error := self._token_error(method, token)) is not None:
            body = {"ok": False, "error": token_error}
        elif (fault := self._take_fault(method)) is not None and fault.delay:
            await asyncio.sleep(fault.delay)
            body = await self._dispatch(method, params)
        elif fault is not None:
            if fault.html:
                call.status = fault.status
                call.response = {"html": True}
                page = f"<html><body><h1>{fault.status}</h1>Not Found</body></html>"
                return web.Response(text=page, status=fault.status, content_type="text/html")
            if fault.error is not None:
                body = {"ok": False, "error": fault.error}
            else:
                status = fault.status
                body = {"ok": False, "error": "ratelimited" if status == 429 else "fatal_error"}
                if status == 429:
                    headers["Retry-After"] = str(fault.retry_after)
        else:
            body = await self._dispatch(method, params)

        call.status = status
        call.response = body
        return web.json_response(body, status=status, headers=headers)

    def _token_error(self, method: str, token: str) -> str | None:
        """Slack's answer to a call of ``method`` made with ``token``, if it refuses it."""
        app_level = token.startswith("xapp-")
        if method in _APP_TOKEN_METHODS:
            if not app_level:
                return "not_allowed_token_type"
            if self.app_token is not None and token != self.app_token:
                return "invalid_auth"
            return None
        if app_level:
            return "not_allowed_token_type"
        return None if token == self.token else "invalid_auth"

    async def _dispatch(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            if method in self._custom:
                result = self._custom[method](params)
                if inspect.isawaitable(result):
                    result = await result
                return {"ok": True, **result}
            handler = self._builtin.get(method)
            if handler is None:
                return {"ok": False, "error": "unknown_method", "req_method": method}
            return {"ok": True, **handler(params)}
        except _SlackError as err:
            return {"ok": False, "error": err.error, **err.extra}

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        params = await self._read_params(request)
        call = RecordedCall(
            method="response_url", params={**params, "_id": rid}, at=time.monotonic()
        )
        self.calls.append(call)

        def answer(status: int, text: str, **extra: Any) -> web.Response:
            call.status = status
            call.response = {"ok": status == 200, "text": text}
            if status != 200:
                call.response["error"] = text
            return web.Response(status=status, text=text, headers=extra)

        link = self._response_urls.get(rid)
        if link is None:
            return answer(404, "no_service")
        fault = self._take_fault("response_url")
        if fault is not None:
            if fault.error is not None:
                return answer(400, fault.error)
            extra = {"Retry-After": str(fault.retry_after)} if fault.status == 429 else {}
            error = "rate_limited" if fault.status == 429 else "fatal_error"
            return answer(fault.status, error, **extra)
        deleting = _truthy(params.get("delete_original"))
        errors = _content_errors(params, f"response_url[{rid}]")
        if not errors and not deleting and not _has_content(params):
            errors.append(f"response_url[{rid}]: needs text, blocks or attachments")
            self.invalid.extend(errors)
            return answer(400, "no_text")
        if errors:
            self.invalid.extend(errors)
            return answer(400, "invalid_blocks")
        original = self._messages.get(link["message_ts"] or "")
        if original is not None and original.channel == link["channel"]:
            if deleting:
                del self._messages[original.ts]
            elif _truthy(params.get("replace_original")):
                self._apply_update(original, params)
        return answer(200, "ok")

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["sid"]
        call = RecordedCall(method="socket_mode.connect", params={"_id": sid}, at=time.monotonic())
        self.calls.append(call)
        if sid not in self._socket_ids:
            call.status = 404
            call.response = {"ok": False, "error": "invalid_url"}
            return web.Response(status=404, text="invalid_url")
        ws = web.WebSocketResponse()  # answers the client's pings itself
        await ws.prepare(request)
        call.status = 200
        call.response = {"ok": True}
        hello = {
            "type": "hello",
            "num_connections": len(self.socket_connections) + 1,
            "debug_info": {
                "host": "applink-stand-in",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": APP_ID},
        }
        await ws.send_str(json.dumps(hello))
        entry = (sid, ws)
        self._sockets.append(entry)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._receive_socket_message(sid, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self.invalid.append(f"socket_mode[{sid}]: a binary frame; Slack expects JSON")
        finally:
            self._sockets.remove(entry)
        return ws

    def _receive_socket_message(self, sid: str, text: str) -> None:
        """An ack from the client: record it, validate it, and resolve its envelope."""
        try:
            data = json.loads(text)
        except ValueError:
            self.invalid.append(f"socket_mode[{sid}]: not JSON: {text[:200]!r}")
            return
        envelope_id = data.get("envelope_id") if isinstance(data, dict) else None
        if not isinstance(envelope_id, str):
            self.invalid.append(
                f"socket_mode[{sid}]: a message without envelope_id: {text[:200]!r}"
            )
            return
        envelope = self._envelopes.get(envelope_id)
        payload = data.get("payload")
        params: dict[str, Any] = dict(payload) if isinstance(payload, dict) else {}
        if payload is not None and not isinstance(payload, dict):
            params["_payload"] = payload
        params["_envelope_id"] = envelope_id
        params["_envelope_type"] = envelope.type if envelope else None
        call = RecordedCall(method="socket_mode.ack", params=params, at=time.monotonic())
        self.calls.append(call)

        where = f"socket_mode.ack[{envelope_id}]"
        error: str | None = None
        errors: list[str] = []
        if envelope is None:
            error = "unknown_envelope"
        elif envelope.ack.cancelled():
            error = "expired_envelope"  # acked after send_envelope gave up
        elif envelope.ack.done():
            error = "duplicate_ack"
        elif payload is not None and not isinstance(payload, dict):
            error = "invalid_payload"
            errors.append(f"{where}.payload: must be a JSON object")
        elif payload and not envelope.accepts_response_payload:
            error = "invalid_payload"
            errors.append(f"{where}: a {envelope.type} envelope takes no response payload")
        elif payload:
            errors.extend(_content_errors(payload, where))
            if "view" in payload:
                errors.extend(validate_view(payload["view"], where=f"{where}.view"))
            if errors:
                error = "invalid_blocks"
        self.invalid.extend(errors)
        call.status = 200 if error is None else 400
        call.response = {"ok": True} if error is None else {"ok": False, "error": error}
        if errors:
            call.response["errors"] = errors
        if envelope is not None and not envelope.ack.done():
            envelope.ack.set_result(data)

    # ---- helpers for method handlers ------------------------------------------------------

    def channel_id(self, channel: str) -> str:
        """The id the stand-in gives a channel ("#web-releases" -> "CWEB_RELEASES")."""
        return self._channel_id(channel)

    def channel_name(self, channel_id: str) -> str:
        """The name of a channel the stand-in knows by its id ("" if none)."""
        return str(self._channel_names.get(channel_id, ""))

    def _channel_id(self, channel: Any) -> str:
        """Map "#name" / "name" to a stable id ("CNAME"); ids pass through, user ids → DM."""
        value = str(channel or "").strip()
        if not value:
            raise _SlackError("channel_not_found")
        if _CHANNEL_ID.fullmatch(value):
            return value
        if _USER_ID.fullmatch(value):
            cid = "D" + value[1:]
            self._channel_names.setdefault(cid, value)
            return cid
        name = value.lstrip("#")
        cid = "C" + re.sub(r"[^A-Z0-9]", "_", name.upper())
        self._channel_names.setdefault(cid, name)
        return cid

    def _next_ts(self) -> str:
        micros = next(self._ts_counter) * 100
        return f"{1_700_000_000 + micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._id_counter):07d}"

    def _check_content(self, method: str, params: dict[str, Any], *, require: bool) -> None:
        errors = _content_errors(params, method)
        if errors:
            self.invalid.extend(errors)
            raise _SlackError("invalid_blocks", errors=errors)
        if require and not _has_content(params):
            self.invalid.append(f"{method}: needs text, blocks or attachments")
            raise _SlackError("no_text")

    def _find_message(self, channel: Any, ts: Any) -> Message:
        message = self._messages.get(str(ts or ""))
        if message is None or message.channel != self._channel_id(channel):
            raise _SlackError("message_not_found")
        return message

    @staticmethod
    def _apply_update(message: Message, params: dict[str, Any]) -> None:
        if "text" in params:
            message.text = str(params["text"] or "")
        if "blocks" in params:
            message.blocks = list(params["blocks"] or [])
        if "attachments" in params:
            message.attachments = list(params["attachments"] or [])
        message.updates += 1

    # ---- method handlers -------------------------------------------------------------------

    def _api_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"args": params}

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        sid = uuid.uuid4().hex
        self._socket_ids.add(sid)
        return {"url": f"ws://127.0.0.1:{self.port}/socket/{sid}"}

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": TEAM_URL,
            "team": TEAM_NAME,
            "user": BOT_USER_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_id(params.get("channel"))
        self._check_content("chat.postMessage", params, require=True)
        thread_ts = params.get("thread_ts") or None
        message = Message(
            channel=channel,
            ts=self._next_ts(),
            text=str(params.get("text") or ""),
            blocks=list(params.get("blocks") or []),
            thread_ts=str(thread_ts) if thread_ts else None,
            attachments=list(params.get("attachments") or []),
        )
        self._messages[message.ts] = message
        return {"channel": channel, "ts": message.ts, "message": message.to_slack()}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._find_message(params.get("channel"), params.get("ts"))
        self._check_content("chat.update", params, require=True)
        self._apply_update(message, params)
        return {
            "channel": message.channel,
            "ts": message.ts,
            "text": message.text,
            "message": message.to_slack(),
        }

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._find_message(params.get("channel"), params.get("ts"))
        del self._messages[message.ts]
        return {"channel": message.channel, "ts": message.ts}

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        self._channel_id(params.get("channel"))
        if not params.get("user"):
            raise _SlackError("user_not_in_channel")
        self._check_content("chat.postEphemeral", params, require=True)
        return {"message_ts": self._next_ts()}

    def _chat_get_permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._find_message(params.get("channel"), params.get("message_ts"))
        link = f"{TEAM_URL}archives/{message.channel}/p{message.ts.replace('.', '')}"
        if message.thread_ts and message.thread_ts != message.ts:
            link += f"?thread_ts={message.thread_ts}&cid={message.channel}"
        return {"channel": message.channel, "permalink": link}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        uid = str(params.get("user") or "")
        if not uid:
            raise _SlackError("user_not_found")
        return {"user": self.user(uid)}

    def user(self, uid: str) -> dict[str, Any]:
        """The users.info ``user`` object for ``uid`` (defaults merged with ``self.users``)."""
        override = dict(self.users.get(uid, {}))
        default_name = BOT_USER_NAME if uid == BOT_USER_ID else uid.lower()
        name = str(override.get("name", default_name))
        real_name = str(override.get("real_name", name))
        profile_override = dict(override.pop("profile", {}) or {})
        if "display_name" in override:
            profile_override.setdefault("display_name", override.pop("display_name"))
        profile = {
            "display_name": name,
            "real_name": real_name,
            "real_name_normalized": real_name,
            **profile_override,
        }
        user: dict[str, Any] = {
            "id": uid,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": real_name,
            "deleted": False,
            "is_bot": uid == BOT_USER_ID,
            "tz": "UTC",
            "tz_offset": 0,
            **override,
            "profile": profile,
        }
        user["id"] = uid
        return user

    def _usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        group = str(params.get("usergroup") or "")
        if group not in self.usergroups:
            raise _SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        cid = self._channel_id(params.get("channel"))
        name = self._channel_names.get(cid, cid.lower())
        channel: dict[str, Any] = {
            "id": cid,
            "name": name,
            "is_channel": cid.startswith("C"),
            "is_group": cid.startswith("G"),
            "is_im": cid.startswith("D"),
            "is_private": cid.startswith("G"),
            "is_archived": False,
            "is_member": True,
            **self.channels.get(cid, {}),
        }
        return {"channel": channel}

    def _store_view(self, method: str, view: Any, view_id: str) -> dict[str, Any]:
        errors = validate_view(view, where=f"{method}.view")
        if errors:
            self.invalid.extend(errors)
            raise _SlackError("invalid_blocks", errors=errors)
        previous = self.views.get(view_id, {})
        stored: dict[str, Any] = {
            **view,
            "id": view_id,
            "team_id": TEAM_ID,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "state": {"values": {}},
            "hash": f"{next(self._id_counter)}.stand-in",
            "root_view_id": previous.get("root_view_id", view_id),
            "previous_view_id": None,
        }
        self.views[view_id] = stored
        return {"view": stored}

    def _views_open(self, params: dict[str, Any], method: str = "views.open") -> dict[str, Any]:
        if not params.get("trigger_id"):
            raise _SlackError("invalid_arguments")
        if "view" not in params:
            raise _SlackError("invalid_arguments")
        return self._store_view(method, params["view"], self._new_id("V"))

    def _views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        view_id = params.get("view_id")
        if not view_id and params.get("external_id"):
            view_id = next(
                (
                    vid
                    for vid, v in self.views.items()
                    if v.get("external_id") == params["external_id"]
                ),
                None,
            )
            if view_id is None:
                raise _SlackError("not_found")
        if not view_id or "view" not in params:
            raise _SlackError("invalid_arguments")
        return self._store_view("views.update", params["view"], str(view_id))

    def _views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = str(params.get("user_id") or "")
        if not user_id or "view" not in params:
            raise _SlackError("invalid_arguments")
        return self._store_view("views.publish", params["view"], f"VHOME{user_id}")


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    return bool(value)


def _has_content(params: dict[str, Any]) -> bool:
    return bool(params.get("text") or params.get("blocks") or params.get("attachments"))
