"""Clicks and forms that cannot be acted on, and forms bound to the click that opened them.

Every click and every form gets an answer and an audit entry, also a damaged button, an unknown
button, a form the bot never opened, or a click on a message that is not the one the bot
recorded for what the button claims to act on: approvals are bound to the message they were
made on.
"""

from __future__ import annotations

from typing import Protocol

from bot.domain.actors import Actor
from bot.services.ports import HasAuditLog, HasFormTickets

FORM_SECONDS = 1800  # a form may stay open this long (Slack's trigger is long gone by then)

Where = tuple[str, str]  # (channel, message ts) of a message


def same_message(where: Where, channel: str | None, ts: str | None) -> bool:
    """Whether the click was made on the message recorded as (channel, ts). A channel recorded
    by name (`#releases`, as messages posted before IDs were kept) is matched by its ts."""
    if not channel or not ts:
        return False
    if channel.startswith("#"):
        return where[1] == ts
    return where == (channel, ts)


async def refused(
    services: HasAuditLog, actor: Actor, action: str, reason: str, answer: str
) -> str:
    """Audit a click or form that was not acted on; returns the answer for the person."""
    await services.audit_log.audit(actor, action, outcome="refused", reason=reason[:500])
    return answer


class OpensForms(HasFormTickets, HasAuditLog, Protocol):
    """A form's ticket, and the audit entry of the click that opened it."""


async def open_form(
    services: OpensForms,
    actor: Actor,
    kind: str,
    what: dict[str, str],
    *,
    release: str = "",
    environment: str = "",
) -> str:
    """Record that a form of `kind` about `what` was opened for `actor` (audited: the click
    that opened a Reject form is on the release's trail, even if the form is never sent);
    returns the ticket its submission must carry."""
    ticket = await services.form_tickets.open(actor.user_id, kind, what, FORM_SECONDS)
    await services.audit_log.audit(
        actor, f"{kind}.form", release=release, environment=environment, outcome="opened"
    )
    return ticket


async def take_form(
    services: HasFormTickets, ticket: str, user_id: str, kind: str
) -> dict[str, str] | None:
    """What the form with `ticket` is about, once: None if the bot never opened it for this
    person, or it was sent already, or it expired."""
    if not ticket:
        return None
    return await services.form_tickets.take(ticket, user_id, kind)
