"""A click on a button that names one thing in its value (a request's id under "r", a
release's version under "v"): the use case gets who clicked, that id and the message clicked
(every approval is bound to the message it was made on); a damaged value is answered and
audited as refused, never an exception."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.domain.actors import Actor
from bot.runtime.container import Services
from bot.services import clicks
from bot.services.clicks import Where
from handlers.payloads import button_value, click_actor, clicked_message

DAMAGED = "This button is damaged."

UseCase = Callable[[Services, Actor, str, Where], Awaitable[str]]


async def on_one(
    services: Services,
    body: dict[str, Any],
    action: str,
    use_case: UseCase,
    *,
    field: str = "r",
    damaged: str = DAMAGED,
) -> str:
    """`use_case` of the click in `body` (audited as `action`); its private answer."""
    actor, value = click_actor(body), button_value(body)
    if value is None or field not in value:
        return await clicks.refused(services, actor, action, "damaged button", damaged)
    return await use_case(services, actor, value[field], clicked_message(body))
