"""Is this Slack user one of a policy's approvers? User IDs directly, user groups through the
Web API (usergroups.users.list), cached briefly in Redis, and one lookup in flight per group in
this process: a burst of clicks asks Slack once."""

from __future__ import annotations

import asyncio
import json
import logging

from slack_sdk.errors import SlackApiError

from bot.domain.config import ApprovalPolicy
from bot.runtime.container import Services

log = logging.getLogger(__name__)

GROUP_CACHE_SECONDS = 300


async def group_members(services: Services, group: str) -> set[str]:
    key = services.store.keys.usergroup(group)
    cached = await services.redis.get(key)
    if cached is not None:
        return set(json.loads(cached))
    lookup = services.group_lookups.get(group)
    if lookup is None:
        lookup = asyncio.create_task(_look_up(services, group, key))
        services.group_lookups[group] = lookup
        lookup.add_done_callback(lambda _: services.group_lookups.pop(group, None))
    # Shielded: one caller giving up (its click's time ran out) must not cancel the others'.
    return set(await asyncio.shield(lookup))


async def _look_up(services: Services, group: str, key: str) -> frozenset[str]:
    try:
        response = await services.notifier.client.usergroups_users_list(usergroup=group)
    except SlackApiError as exc:
        # Fail closed: an unknown or unreadable group approves nobody.
        log.warning("usergroups.users.list %s failed: %s", group, exc.response.get("error"))
        return frozenset()
    members = [str(u) for u in response.get("users") or []]
    await services.redis.set(key, json.dumps(members), ex=GROUP_CACHE_SECONDS)
    return frozenset(members)


async def is_approver(services: Services, policy: ApprovalPolicy, user_id: str) -> bool:
    if not policy.approvers or user_id in policy.users:
        return True
    for group in policy.groups:
        if user_id in await group_members(services, group):
            return True
    return False
