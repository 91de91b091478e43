"""Is this Slack user one of a policy's approvers? User IDs directly, user groups through the
user directory (bot.adapters.slack.directory: Slack's user groups, cached)."""

from __future__ import annotations

from bot.domain.config import ApprovalPolicy
from bot.services.ports import HasUserDirectory


async def is_approver(needs: HasUserDirectory, policy: ApprovalPolicy, user_id: str) -> bool:
    if not policy.approvers or user_id in policy.users:
        return True
    for group in policy.groups:
        if user_id in await needs.user_directory.group_members(group):
            return True
    return False
