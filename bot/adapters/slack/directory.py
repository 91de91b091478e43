"""Slack's user groups (usergroups.users.list): who is in one, cached briefly in Redis, and one
lookup in flight per group in this process, so a burst of clicks asks Slack once."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
from redis.asyncio import Redis
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.redis.keys import Keys
from bot.services.ports import MembershipUnknown

log = logging.getLogger(__name__)

GROUP_CACHE_SECONDS = 300
# Slack's answers that a group does not exist (or no longer): an answer, not a failure.
GROUP_GONE = frozenset({"no_such_subteam", "subteam_not_found"})
# A lookup, Retry-Afters included, ends by then (Slack's client waits 30 s for each try):
# the click waiting for it is answered either way (a late outcome follows its first answer).
LOOKUP_SECONDS = 15.0


class SlackUserDirectory:
    def __init__(
        self,
        client: AsyncWebClient,
        redis: Redis,
        keys: Keys,
        lookup_seconds: float = LOOKUP_SECONDS,
    ) -> None:
        self.client = client
        self.lookup_seconds = lookup_seconds
        self.redis = redis
        self.keys = keys
        # Lookups in flight, shared by everyone who asks for the same group meanwhile.
        self._lookups: dict[str, asyncio.Task[frozenset[str]]] = {}

    async def group_members(self, group: str) -> frozenset[str]:
        """The user IDs in `group`, from a cached answer within GROUP_CACHE_SECONDS or from
        Slack; MembershipUnknown when Slack cannot say (nothing is cached then)."""
        key = self.keys.usergroup(group)
        cached = await self.redis.get(key)
        if cached is not None:
            return frozenset(str(u) for u in json.loads(cached))
        lookup = self._lookups.get(group)
        if lookup is None:
            lookup = asyncio.create_task(self._look_up(group, key))
            self._lookups[group] = lookup
            lookup.add_done_callback(lambda _: self._lookups.pop(group, None))
        # Shielded: one caller giving up (its click's time ran out) must not cancel the others'.
        return await asyncio.shield(lookup)

    async def _look_up(self, group: str, key: str) -> frozenset[str]:
        try:
            async with asyncio.timeout(self.lookup_seconds):
                response = await self.client.usergroups_users_list(usergroup=group)
        except SlackApiError as exc:
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            if data.get("error") in GROUP_GONE:
                # Slack did say: there is no such group, so nobody is in it.
                log.warning("usergroups.users.list %s: %s", group, data["error"])
                return frozenset()
            why = (
                f"Slack answered `{data['error']}`"
                if data.get("error")
                else f"Slack answered HTTP {exc.response.status_code}"
            )
            log.warning("usergroups.users.list %s failed: %s", group, why)
            raise MembershipUnknown(why) from None
        except TimeoutError:
            limit = self.lookup_seconds
            log.warning("usergroups.users.list %s: no answer in %gs", group, limit)
            raise MembershipUnknown(f"Slack did not answer within {limit:g} s") from None
        except aiohttp.ClientError as exc:
            log.warning("usergroups.users.list %s failed: %s", group, type(exc).__name__)
            raise MembershipUnknown(f"Slack could not be reached ({type(exc).__name__})") from None
        members = [str(u) for u in response.get("users") or []]
        await self.redis.set(key, json.dumps(members), ex=GROUP_CACHE_SECONDS)
        return frozenset(members)
