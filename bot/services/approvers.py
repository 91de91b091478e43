"""Is this Slack user one of a policy's approvers, or one of the people a permission names
(`requesters`, `deployers`)? User IDs directly, user groups through the user directory
(bot.adapters.slack.directory: Slack's user groups, cached)."""

from __future__ import annotations

from bot.domain.approvals import Refusal
from bot.domain.config import ApprovalPolicy
from bot.services.ports import HasUserDirectory, MembershipUnknown


class MembershipNotChecked(Refusal):
    """Slack could not say whether the user is in an approver group: nothing they clicked
    counts, and they are told to try again (a refusal, so it is answered and audited)."""


class GroupNotRead(Exception):
    """Only a user group Slack could not read could say whether someone is named."""

    def __init__(self, group: str, why: str) -> None:
        super().__init__(f"{group}: {why}")
        self.group = group
        self.why = why


async def is_named(needs: HasUserDirectory, people: tuple[str, ...], user_id: str) -> bool:
    """Whether `people` (user IDs and user-group IDs; none: anyone) takes in `user_id`,
    directly or through a group. Raises GroupNotRead when only a group Slack could not read
    could."""
    if not people or user_id in people:
        return True
    unknown: list[GroupNotRead] = []
    for group in (p for p in people if p.startswith("S")):
        try:
            if user_id in await needs.user_directory.group_members(group):
                return True
        except MembershipUnknown as exc:
            unknown.append(GroupNotRead(group, str(exc)))
    if unknown:
        raise unknown[0]
    return False


async def is_approver(needs: HasUserDirectory, policy: ApprovalPolicy, user_id: str) -> bool:
    """Raises MembershipNotChecked when only a group Slack could not read could make
    `user_id` an approver."""
    try:
        return await is_named(needs, policy.approvers, user_id)
    except GroupNotRead as exc:
        raise MembershipNotChecked(
            f"I could not check whether you are in the approver group `{exc.group}` "
            f"({exc.why}), so nothing was approved; try again in a minute"
        ) from None


def approver_without_asking(policy: ApprovalPolicy, user_id: str) -> bool | None:
    """Whether `user_id` approves under `policy`, if that is known without asking Slack (named,
    or no group could make them one); None when only a user group lookup can tell. Before an
    ack nothing may wait for Slack's Web API, which may be throttling."""
    if not policy.approvers or user_id in policy.users:
        return True
    return False if not policy.groups else None
