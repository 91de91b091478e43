"""Slack's user groups (usergroups.users.list): who is in one, cached briefly in Redis, and one
lookup in flight per group in this process, so a burst of clicks asks Slack once."""

from __future__ import annotations

import asyncio
import json
import logging

from redis.asyncio import Redis
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.redis.keys import Keys

log = logging.getLogger(__name__)

GROUP_CACHE_SECONDS = 300


class SlackUserDirectory:
    def __init__(self, client: AsyncWebClient, redis: Redis, keys: Keys) -> None:
        self.client = client
        self.redis = redis
        self.keys = keys
        # Lookups in flight, shared by everyone who asks for the same group meanwhile.
        self._lookups: dict[str, asyncio.Task[frozenset[str]]] = {}

    async def group_members(self, group: str) -> frozenset[str]:
        """The user IDs in `group`; none if Slack does not know it or will not say (an
        approver list fails closed)."""
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
            response = await self.client.usergroups_users_list(usergroup=group)
        except SlackApiError as exc:
            log.warning("usergroups.users.list %s failed: %s", group, exc.response.get("error"))
            return frozenset()
        members = [str(u) for u in response.get("users") or []]
        await self.redis.set(key, json.dumps(members), ex=GROUP_CACHE_SECONDS)
        return frozenset(members)
