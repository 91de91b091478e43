"""Who may start releases (`requesters`) and who may deploy to the last environment
(`deployers`), per service: checked before anything is recorded or queued. Someone not
named, directly or through a user group, is told what they may not do, of which service and
who may; the refusal is on the audit trail. Nobody named: anyone may, as without the keys."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from bot.blocks import release as messages
from bot.domain.actors import Actor
from bot.domain.config import Config
from bot.services.approvers import GroupNotRead, is_named
from bot.services.ports import HasConfig, HasStore, HasUserDirectory

# Before an ack a user group's members may be waited for this long (they are cached for
# minutes once read, bot.adapters.slack.directory): the rest of the ack's budget is Redis's.
# Past it the person is refused and asked to try again; the lookup goes on and is cached.
BEFORE_ACK_SECONDS = 1.0


@dataclass(frozen=True)
class Permission:
    """What only `people` may do (none named: anyone), and the audit action of a refusal."""

    action: str  # "rc.create"
    what: str  # "start releases", "deploy to production"
    people: tuple[str, ...]


def to_start(config: Config, kind: str) -> Permission:
    """Making a candidate (`/release rc`) or a hotfix (`/release hotfix`)."""
    action = "hotfix.create" if kind == "hotfix" else "rc.create"
    return Permission(action, "start releases", config.requesters)


def to_deploy_last(config: Config, action: str) -> Permission:
    """Anything that deploys to the last environment: a promotion, a retried deploy there."""
    return Permission(action, f"deploy to {config.last_environment.name}", config.deployers)


class PermissionNeeds(HasConfig, HasStore, HasUserDirectory, Protocol):
    """The people a permission names (user groups through Slack), and the audit trail."""


async def refusal(
    needs: PermissionNeeds,
    permission: Permission,
    actor: Actor,
    *,
    release: str = "",
    environment: str = "",
    wait: float = BEFORE_ACK_SECONDS,
) -> str | None:
    """None when `actor` may; else the answer for them, the refusal audited. A user group
    Slack does not answer for within `wait` refuses too, saying to try again (never a yes
    that nobody checked)."""
    service = needs.config.service
    try:
        async with asyncio.timeout(wait):
            allowed = await is_named(needs, permission.people, actor.user_id)
    except GroupNotRead as exc:
        reason = f"membership of {exc.group} unknown: {exc.why}"
        answer = (
            f"I could not check whether you are in <!subteam^{exc.group}> ({exc.why}), who may "
            f"{permission.what} of {service}, so nothing was done; try again in a minute."
        )
    except TimeoutError:
        reason = f"membership of {', '.join(permission.people)} not known within {wait:g} s"
        answer = (
            f"Slack did not tell me in time whether you may {permission.what} of {service} "
            "(a user group's members), so nothing was done; try again in a moment."
        )
    else:
        if allowed:
            return None
        reason = f"not among who may {permission.what}: {', '.join(permission.people)}"
        answer = (
            f"Only {messages.mention_all(permission.people)} may {permission.what} of {service}."
        )
    await needs.store.audit(
        actor,
        permission.action,
        release=release,
        environment=environment,
        outcome="refused",
        reason=reason[:500],
    )
    return answer
