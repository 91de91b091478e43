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


def approver_without_asking(policy: ApprovalPolicy, user_id: str) -> bool | None:
    """Whether `user_id` approves under `policy`, if that is known without asking Slack (named,
    or no group could make them one); None when only a user group lookup can tell. Before an
    ack nothing may wait for Slack's Web API, which may be throttling."""
    if not policy.approvers or user_id in policy.users:
        return True
    return False if not policy.groups else None
