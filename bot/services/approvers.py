"""Is this Slack user one of a policy's approvers? User IDs directly, user groups through the
user directory (bot.adapters.slack.directory: Slack's user groups, cached)."""

from __future__ import annotations

from bot.domain.approvals import Refusal
from bot.domain.config import ApprovalPolicy
from bot.services.ports import HasUserDirectory, MembershipUnknown


class MembershipNotChecked(Refusal):
    """Slack could not say whether the user is in an approver group: nothing they clicked
    counts, and they are told to try again (a refusal, so it is answered and audited)."""


async def is_approver(needs: HasUserDirectory, policy: ApprovalPolicy, user_id: str) -> bool:
    """Raises MembershipNotChecked when only a group Slack could not read could make
    `user_id` an approver."""
    if not policy.approvers or user_id in policy.users:
        return True
    unknown: list[tuple[str, str]] = []
    for group in policy.groups:
        try:
            if user_id in await needs.user_directory.group_members(group):
                return True
        except MembershipUnknown as exc:
            unknown.append((group, str(exc)))
    if unknown:
        group, why = unknown[0]
        raise MembershipNotChecked(
            f"I could not check whether you are in the approver group `{group}` ({why}), so "
            "nothing was approved; try again in a minute"
        )
    return False


def approver_without_asking(policy: ApprovalPolicy, user_id: str) -> bool | None:
    """Whether `user_id` approves under `policy`, if that is known without asking Slack (named,
    or no group could make them one); None when only a user group lookup can tell. Before an
    ack nothing may wait for Slack's Web API, which may be throttling."""
    if not policy.approvers or user_id in policy.users:
        return True
    return False if not policy.groups else None
