"""Talking to Slack's Web API after the ack: thread replies, answers, coalesced message updates.

Thread replies and incident news go through the channel's outbox (bot.adapters.slack.
outbox_sender): paced to one message per second per channel, coalesced, never lost with a
replica. What needs its message's ts at once (a release message, an approval request) is
posted here, in the channel's pace too.

Clients retry on HTTP 429 after Retry-After (slack_sdk's handler), except the release
message's own updates: a retry there must send the newest state, not the payload that was
refused, or an older checklist lands after a newer one. Those are sent by one task per message
in this process, re-rendered from Redis before every attempt, and a Retry-After holds every
update of this process for its time. None of this runs before an ack: handlers ack first and
hand the rest to a worker or a background task.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.adapters.metrics import CountingRetryHandler
from bot.adapters.redis.locks import drop_if_held
from bot.adapters.redis.outbox import RedisOutbox
from bot.adapters.redis.store import Store
from bot.adapters.slack.outbox_sender import OutboxSender, Places, retry_after_of
from bot.blocks.release import Block, release_fallback_text, release_message
from bot.domain import rollbacks
from bot.domain.config import Config
from bot.domain.outbox import Entry, Reply, encode
from bot.domain.releases import Release

log = logging.getLogger(__name__)

RETRY_HANDLERS = [
    CountingRetryHandler(),  # first: it sees every attempt (bot.adapters.metrics)
    AsyncRateLimitErrorRetryHandler(max_retry_count=5),
    AsyncConnectionErrorRetryHandler(max_retry_count=2),
    AsyncServerErrorRetryHandler(max_retry_count=2),
]


def web_client(token: str, base_url: str) -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=base_url, retry_handlers=list(RETRY_HANDLERS))


# How often a release message's update is tried again after a 429 before it is left to the
# next change (each try waits the Retry-After Slack gave).
RENDER_ATTEMPTS = 8


RENDER_LEASE_SECONDS = 10.0  # longer than a chat.update takes; a dead sender's lapses in this
RENDER_LEASE_WAIT = 20.0  # for another replica's sender (it may wait out a Retry-After)


_RAISE_RENDERED = """
local shown = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > shown then redis.call('SET', KEYS[1], ARGV[1], 'EX', 86400) end
"""


class RetryAfter:
    """Slack's Retry-After per Web API method, shared by every task of this process: a 429
    to one task holds the others' calls of that method too, instead of each finding out."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def hold(self, method: str, seconds: float) -> None:
        until = time.monotonic() + seconds
        self._until[method] = max(self._until.get(method, 0.0), until)

    def left(self, method: str) -> float:
        return max(0.0, self._until.get(method, 0.0) - time.monotonic())

    async def wait(self, method: str) -> None:
        while (left := self.left(method)) > 0:
            await asyncio.sleep(left)


class Notifier:
    """Posts for the release logic: thread replies, private answers, the release message."""

    def __init__(
        self,
        client: AsyncWebClient,
        store: Store,
        config: Config,
        places: Places,
        update_delay: float = 1.0,
        post_interval: float = 1.0,
    ) -> None:
        self.client = client
        self.store = store
        self.config = config
        self.update_delay = update_delay
        self._pending: set[asyncio.Task[None]] = set()
        self.retry_after = RetryAfter()
        # The release message's updates retry by themselves (see the module's docstring).
        handlers = [
            h for h in client.retry_handlers if not isinstance(h, AsyncRateLimitErrorRetryHandler)
        ]
        self._updates = AsyncWebClient(
            token=client.token, base_url=client.base_url, retry_handlers=handlers
        )
        # The sender of each release message being updated, and how many wait for it.
        self._senders: dict[str, tuple[asyncio.Lock, int]] = {}
        self.outbox = RedisOutbox(store.redis, store.keys)
        self.post_interval = post_interval
        self.sender = OutboxSender(
            self._updates, self.outbox, places, config, self.retry_after, post_interval
        )

    async def post(
        self, channel: str, blocks: list[Block], text: str, thread_ts: str | None = None
    ) -> dict[str, Any] | None:
        """Post a message, in the channel's pace; a failure is logged and None returned,
        never raised: what the bot says is a report of what happened, which must not undo or
        stop it."""
        try:
            await asyncio.sleep(await self.outbox.reserve(channel, self.post_interval))
        except Exception:  # Redis is down: the message matters more than the pace
            log.warning("posting to %s without its pace: Redis cannot be reached", channel)
        try:
            response = await self.client.chat_postMessage(
                channel=channel, blocks=blocks, text=text, thread_ts=thread_ts
            )
        except SlackApiError as exc:
            log.warning("chat.postMessage to %s failed: %s", channel, exc.response.get("error"))
            return None
        except Exception as exc:  # an error page, a connection reset, a timeout…
            log.warning("chat.postMessage to %s failed: %s", channel, type(exc).__name__)
            return None
        return response.data if isinstance(response.data, dict) else None

    async def thread(self, version: str, blocks: list[Block], text: str) -> None:
        try:
            release = await self.store.get_release(version)
        except Exception:
            log.warning("no thread reply for %s: its release could not be read", version)
            return
        if release is None or release.channel is None or release.message_ts is None:
            return
        await self.reply(release.channel, release.message_ts, blocks, text)

    async def reply(self, channel: str, thread_ts: str, blocks: list[Block], text: str) -> None:
        """A reply in a thread ("" for the channel itself), through the channel's outbox."""
        await self.say(channel, [Reply(thread_ts, tuple(blocks), text)])

    async def say(self, channel: str, entries: list[Entry]) -> None:
        """Put entries in the channel's outbox and wake its sender. If Redis cannot take
        them, replies are posted at once instead (unpaced beats unsaid)."""
        try:
            await self.outbox.put(channel, [encode(e) for e in entries])
        except Exception:
            log.warning("the outbox of %s cannot be reached; posting at once", channel)
            for entry in entries:
                if isinstance(entry, Reply):
                    await self.post(
                        channel, list(entry.blocks), entry.text, entry.thread_ts or None
                    )
            return
        self.wake([channel])

    def wake(self, channels: list[str]) -> None:
        """Something was put in these channels' outboxes (by this process, in a transaction)."""
        self.sender.wake(channels)

    async def answer(self, response_url: str | None, blocks: list[Block], text: str) -> None:
        """A private answer to the person who typed the command (through its response_url)."""
        if not response_url:
            return
        hook = AsyncWebhookClient(response_url, retry_handlers=list(RETRY_HANDLERS))
        try:
            await hook.send(
                text=text, blocks=blocks, response_type="ephemeral", replace_original=False
            )
        except Exception:  # the answer is a courtesy; the outcome is already in the thread
            log.warning("response_url answer failed", exc_info=True)

    async def update(self, channel: str, ts: str, blocks: list[Block], text: str) -> None:
        """Redraw a message the bot posted (an incident's, as it goes on). Like `post`, a
        failure is logged, never raised: a reply in its thread still tells, and a redraw that
        failed must not stop what asked for it."""
        try:
            await self.client.chat_update(channel=channel, ts=ts, blocks=blocks, text=text)
        except SlackApiError as exc:
            log.warning(
                "chat.update of %s in %s failed: %s", ts, channel, exc.response.get("error")
            )
        except Exception as exc:  # an error page, a connection reset, a timeout…
            log.warning("chat.update of %s in %s failed: %s", ts, channel, type(exc).__name__)

    def show_progress(self, version: str) -> None:
        """Redraw the release message though its record did not change (a running deploy's
        elapsed time and latest line); its caller paces it (every PROGRESS_SECONDS)."""
        task = asyncio.create_task(self.render_now(version, force=True))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def refresh(self, version: str) -> None:
        """Schedule an update of the release message; a burst of calls is one chat.update."""
        task = asyncio.create_task(self._refresh(version))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _refresh(self, version: str, follow_up: bool = True) -> None:
        key = self.store.keys.render(version)
        # Whoever sets the flag renders after the delay; later changes in that window ride
        # along, because the render reads the newest state. The flag expires soon after, so
        # if its owner dies before rendering, the follow-up below renders instead.
        ttl = self.update_delay * 2 + 1.0
        try:
            if await self.store.redis.set(key, "1", nx=True, px=int(ttl * 1000)):
                await asyncio.sleep(self.update_delay)
                await self.store.redis.delete(key)
                await self.render_now(version)
            elif follow_up:
                await asyncio.sleep(ttl + 0.1)
                release = await self.store.get_release(version)
                rendered = await self.store.redis.get(self.store.keys.rendered(version))
                if release is not None and int(rendered or 0) < release.rev:
                    await self._refresh(version, follow_up=False)
        except Exception:
            log.exception("updating the message of %s failed", version)

    async def render_now(self, version: str, force: bool = False) -> None:
        """Show the newest state of the release on its message. One sender per message in
        this process; every attempt re-reads the release, so what lands last is the newest.
        `force`: even if the message shows this revision already (a deploy's progress)."""
        lock, users = self._senders.get(version, (asyncio.Lock(), 0))
        self._senders[version] = (lock, users + 1)
        try:
            async with lock:
                await self._send_newest(version, force)
        finally:
            lock, users = self._senders[version]
            if users == 1:
                del self._senders[version]  # no one else waits: one lock per live message only
            else:
                self._senders[version] = (lock, users - 1)

    async def _progress(self, release: Release) -> dict[str, str]:
        """The latest output line of each running deploy (read only while one runs)."""
        if not any(d.status == "running" for d in release.deploys.values()):
            return {}
        return await self.store.progress_of(release.version)

    async def _can_roll_back(self, release: Release) -> bool:
        """Whether a Roll back button on a live release could lead anywhere (read only for a
        promoted release: a candidate has no such button)."""
        if not release.final_tag or release.rolled_back_to:
            return True
        environment = self.config.last_environment.name
        history = await self.store.environment_history(environment)
        return rollbacks.has_target(history, environment, self.config.repository.tag_prefix)

    async def _send_newest(self, version: str, force: bool = False) -> None:
        rendered_key = self.store.keys.rendered(version)
        for _ in range(RENDER_ATTEMPTS):
            await self.retry_after.wait("chat.update")
            async with self._render_lease(version) as held:
                if not held:
                    log.warning("chat.update of %s: another replica kept it too long", version)
                    return
                release = await self.store.get_release(version)
                if release is None or release.channel is None or release.message_ts is None:
                    return
                shown = await self.store.redis.get(rendered_key)
                if shown is not None and int(shown) >= release.rev and not force:
                    return  # the message already shows this state (another sender put it there)
                try:
                    await self._updates.chat_update(
                        channel=release.channel,
                        ts=release.message_ts,
                        blocks=release_message(
                            release,
                            self.config,
                            time.time(),
                            can_roll_back=await self._can_roll_back(release),
                            progress=await self._progress(release),
                        ),
                        text=release_fallback_text(release),
                    )
                except SlackApiError as exc:
                    wait = retry_after_of(exc)
                    if wait is None:
                        log.warning(
                            "chat.update of %s failed: %s", version, exc.response.get("error")
                        )
                        return
                    self.retry_after.hold("chat.update", wait)
                    continue  # after the wait (lease given up), from the state as it is then
                # Never lowered: a sender that held the lease before may have shown a newer
                # state than this one read.
                await self.store.redis.eval(_RAISE_RENDERED, 1, rendered_key, release.rev)
                return
        log.warning("chat.update of %s: still throttled after %d tries", version, RENDER_ATTEMPTS)

    @asynccontextmanager
    async def _render_lease(self, version: str) -> AsyncIterator[bool]:
        """One sender of a release message across replicas, from reading its state until
        Slack answered: two replicas' updates cannot cross (an older state read first but
        landing last). Waits up to RENDER_LEASE_WAIT for another replica's sender; a dead one
        frees it within RENDER_LEASE_SECONDS."""
        key, token = self.store.keys.render_lease(version), secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        end = loop.time() + RENDER_LEASE_WAIT
        redis = self.store.redis
        while not await redis.set(key, token, nx=True, px=int(RENDER_LEASE_SECONDS * 1000)):
            if loop.time() > end:
                yield False
                return
            await asyncio.sleep(0.05)
        try:
            yield True
        finally:
            await drop_if_held(redis, key, token)

    @property
    def idle(self) -> bool:
        """No message update is waiting to be rendered, and no outbox is being sent."""
        return not self._pending and self.sender.idle

    async def drain(self, grace: float = 5.0) -> None:
        """Wait for scheduled updates (at shutdown, so the last state is shown), and for the
        outboxes' senders for `grace` seconds (what they leave waits in Redis)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        await self.sender.stop(grace)
