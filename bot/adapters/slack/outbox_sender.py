"""Says what waits in the channels' outboxes (bot.domain.outbox), paced: one message per
`interval` per channel across every replica, the oldest first, a Retry-After honoured by every
send of this process. An entry leaves the outbox only once Slack took the message saying it.

Any process that puts something in an outbox wakes a sender for that channel; the sender takes
the channel's lease and sends until the outbox is empty. If another sender holds the lease,
the woken one looks again when it would lapse: a sender that died with its replica (SIGKILL)
holds its channel for one short lease, not until somebody notices. The scheduler also sweeps
every few seconds for outboxes that nobody woke a sender for.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable
from functools import partial
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.redis.outbox import RedisOutbox
from bot.blocks import health as texts
from bot.domain.config import Config
from bot.domain.outbox import (
    Entry,
    Group,
    IncidentGroup,
    IncidentNews,
    OneIncident,
    Place,
    Replies,
    Send,
    consumed,
    decode,
    next_send,
    summarize,
)

log = logging.getLogger(__name__)

LEASE_SECONDS = 6.0  # a sender that died frees its channel within this (renewed while alive)
PEEK = 1000  # entries looked at for one message (a group stands for at most GROUP_MAX)
SEND_ATTEMPTS = 5  # tries of one message that fail without a Retry-After, before it is dropped
OPEN_NEWS = ("open", "escalate", "remind")  # changes after which an incident is still open


class Places(Protocol):
    """Where incident messages are (bot.adapters.redis.monitor_state)."""

    async def place_incident(self, incident_id: str, place: Place) -> None: ...

    async def incident_place(self, incident_id: str) -> Place | None: ...

    async def save_group(self, group_id: str, group: Group, opened: list[str]) -> None: ...


class Throttled(Exception):
    def __init__(self, method: str, seconds: float) -> None:
        super().__init__(f"{method}: Retry-After {seconds}")
        self.method, self.seconds = method, seconds


class Refused(Exception):
    """Slack answered `ok: false` for a reason that trying again does not change."""


class RetryAfterGate(Protocol):
    def hold(self, method: str, seconds: float) -> None: ...

    def left(self, method: str) -> float: ...


def retry_after_of(exc: SlackApiError) -> float | None:
    """The Retry-After of a 429 answer; None for any other error."""
    if exc.response.status_code != 429:
        return None
    headers = {k.lower(): v for k, v in (exc.response.headers or {}).items()}
    raw = headers.get("retry-after")
    value = raw[0] if isinstance(raw, list) and raw else raw
    try:
        return max(1.0, float(str(value)))
    except (TypeError, ValueError):
        return 1.0


class OutboxSender:
    def __init__(
        self,
        client: AsyncWebClient,
        outbox: RedisOutbox,
        places: Places,
        config: Config,
        retry_after: RetryAfterGate,
        interval: float,
    ) -> None:
        self.client = client  # without a rate-limit retry handler: a 429 comes back here
        self.outbox = outbox
        self.places = places
        self.config = config
        self.retry_after = retry_after
        self.interval = interval
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()  # channels put to while their sender was finishing

    # --- waking ---------------------------------------------------------------------------

    def wake(self, channels: Iterable[str]) -> None:
        for channel in channels:
            running = self._senders.get(channel)
            if running is not None and not running.done():
                self._again.add(channel)  # it may be letting go: it looks once more
                continue
            task = asyncio.create_task(self._run(channel))
            self._senders[channel] = task
            task.add_done_callback(partial(self._ended, channel))

    def _ended(self, channel: str, task: asyncio.Task[None]) -> None:
        if self._senders.get(channel) is task:
            del self._senders[channel]

    async def sweep(self) -> None:
        """Wake a sender for every outbox that holds something (its own may have died)."""
        channels = await self.outbox.channels()
        self.wake(channels)

    @property
    def idle(self) -> bool:
        return not self._senders

    async def settled(self, timeout: float = 30.0) -> None:
        """Until every outbox is empty and this process sends nothing (tests, shutdown)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            if self._senders:
                await asyncio.wait(list(self._senders.values()), timeout=end - loop.time())
                continue
            channels = await self.outbox.channels()
            if not channels or not await self.outbox.waiting(channels):
                return
            self.wake(channels)
            await asyncio.sleep(0.02)
        raise TimeoutError("outboxes still hold messages")

    async def stop(self, grace: float) -> None:
        """Let senders finish for `grace` seconds, then stop them (what is left stays in
        Redis for the next sender)."""
        if self._senders:
            await asyncio.wait(list(self._senders.values()), timeout=grace)
        for task in list(self._senders.values()):
            task.cancel()
        if self._senders:
            await asyncio.gather(*self._senders.values(), return_exceptions=True)

    # --- one channel ------------------------------------------------------------------------

    async def _run(self, channel: str) -> None:
        try:
            while True:
                self._again.discard(channel)
                token = secrets.token_hex(8)
                if not await self.outbox.lease(channel, token, LEASE_SECONDS):
                    # Another sender has it. If it is alive it sends what we put (it looks
                    # again before it lets go); if it died, its lease lapses soon.
                    lapse = await self.outbox.lease_left(channel)
                    if not await self.outbox.waiting([channel]):
                        return
                    await asyncio.sleep(min(max(lapse, 0.05), LEASE_SECONDS))
                    continue
                keeper = asyncio.create_task(self._keep(channel, token))
                try:
                    await self._send_all(channel, token)
                finally:
                    keeper.cancel()
                    left = await asyncio.shield(self.outbox.let_go(channel, token))
                if not left and channel not in self._again:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sending the outbox of %s failed; the next sweep tries again", channel)

    async def _keep(self, channel: str, token: str) -> None:
        """Renew the lease while this sender is alive (a slow send or a long Retry-After must
        not hand the channel to a second sender, which would say the same message twice)."""
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            try:
                if not await self.outbox.renew(channel, token, LEASE_SECONDS):
                    return
            except Exception:
                log.warning("renewing the outbox lease of %s failed", channel)

    async def _send_all(self, channel: str, token: str) -> None:
        failures = 0
        while raws := await self.outbox.peek(channel, PEEK):
            entries: list[Entry] = []
            for n, raw in enumerate(raws):
                try:
                    entries.append(decode(raw))
                except ValueError:
                    if n == 0:  # damaged at the head: nothing can ever say it
                        log.warning("dropping a damaged outbox entry of %s", channel)
                        await self.outbox.sent(channel, token, 1)
                    break
            if not entries:
                continue
            send = next_send(entries)
            await self._wait(await self.outbox.reserve(channel, self.interval))
            try:
                await self._send(channel, send)
            except Throttled as exc:
                self.retry_after.hold(exc.method, exc.seconds)
                await self._wait(self.retry_after.left(exc.method))
                continue  # the same entries, once Slack takes them again
            except Refused as exc:
                log.warning("Slack refused a message for %s: %s; it is dropped", channel, exc)
            except Exception as exc:  # an error page, a reset, a timeout: try it again
                failures += 1
                if failures < SEND_ATTEMPTS:
                    log.warning("sending to %s failed (%s); trying again", channel, exc)
                    await self._wait(min(30.0, 2.0**failures))
                    continue
                log.error(
                    "sending to %s failed %d times; the message is dropped", channel, failures
                )
            failures = 0
            if not await self.outbox.sent(channel, token, consumed(send)):
                return  # our lease lapsed: its new holder sends from here

    async def _wait(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    # --- saying one message ------------------------------------------------------------------

    async def _send(self, channel: str, send: Send) -> None:
        if isinstance(send, Replies):
            await self._call(
                "chat.postMessage",
                channel=channel,
                blocks=send.blocks,
                text=send.text,
                thread_ts=send.thread_ts or None,
            )
        elif isinstance(send, OneIncident):
            await self._incident(channel, send.news)
        else:
            await self._group(channel, send)

    async def _incident(self, channel: str, news: IncidentNews) -> None:
        incident, oncall = news.incident, self.config.monitoring.oncall
        blocks = texts.incident_message(incident, oncall, news.deployed_version, news.at)
        text = texts.incident_text(incident)
        if news.what == "open":
            posted = await self._call(
                "chat.postMessage",
                channel=channel,
                blocks=blocks,
                text=text,
                thread_ts=incident.thread_ts or None,
            )
            # The channel's ID as Slack answered (the config may name it): clicks carry it.
            answered = str(posted.get("channel") or channel)
            await self.places.place_incident(incident.id, Place(answered, str(posted["ts"])))
            return
        place = await self.places.incident_place(incident.id)
        if place is None and incident.ts:  # opened by a version that kept it in the state
            place = Place(incident.channel, incident.ts)
        if place is not None and not place.group:
            await self._call(
                "chat.update", channel=place.channel, ts=place.ts, blocks=blocks, text=text
            )
        if news.what == "change":
            return  # checks joined or recovered: the redraw says it, nobody is paged again
        thread = incident.thread_ts or (place.ts if place is not None else "")
        if news.what == "resolve":
            reply = texts.resolved_reply(incident, news.at)
        elif news.what == "acknowledged":
            reply = texts.acknowledged_reply(incident, news.by)
        else:
            reply = texts.reminder(incident, oncall, news.at, escalated=news.what == "escalate")
        await self._call(
            "chat.postMessage",
            channel=place.channel if place is not None else channel,
            blocks=reply,
            text=text,
            thread_ts=thread or None,
        )

    async def _group(self, channel: str, group: IncidentGroup) -> None:
        group_id = secrets.token_hex(6)
        members = tuple(
            (n.incident.environment, n.incident.check, n.incident.id)
            for n in group.news
            if n.what in OPEN_NEWS and not n.incident.acknowledged_by
        )
        distinct = tuple(dict.fromkeys(members))
        lines = summarize(group)
        posted = await self._call(
            "chat.postMessage",
            channel=channel,
            blocks=texts.incident_summary(
                lines, self.config.monitoring.oncall, group_id, len(distinct)
            ),
            text=texts.group_text(lines),
            thread_ts=group.thread_ts or None,
        )
        answered = str(posted.get("channel") or channel)
        opened = [n.incident.id for n in group.news if n.what == "open"]
        await self.places.save_group(group_id, Group(answered, str(posted["ts"]), distinct), opened)

    async def _call(self, method: str, **params: Any) -> dict[str, Any]:
        try:
            response = await self.client.api_call(method, json=_without_none(params))
        except SlackApiError as exc:
            wait = retry_after_of(exc)
            if wait is not None:
                raise Throttled(method, wait) from None
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            if error in ("ratelimited",):
                raise Throttled(method, 1.0) from None
            if error is None or exc.response.status_code >= 500:
                raise  # an error page or an outage: worth trying again
            raise Refused(f"{method}: {error}") from None
        return response.data if isinstance(response.data, dict) else {}


def _without_none(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}
