"""A command that no service of several claims (no service named, a channel of none of them):
`/release status` of them all, one line each, and `/release help`; anything else is answered
with the services there are and how to name one. Nothing is changed, so nothing is audited
under a service."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_bolt.async_app import AsyncAck

from bot.blocks import release as messages
from bot.runtime.container import STORE_UNREACHABLE, Services
from bot.runtime.fleet import Fleet
from bot.services.show_status import all_services_blocks, service_line
from handlers.answers import STORE_DOWN

log = logging.getLogger(__name__)

# A fleet-wide status reads every service: within the ack's time, or said to be partial.
STATUS_SECONDS = 2.0


async def answer_unclaimed(ack: AsyncAck, fleet: Fleet, command: dict[str, Any]) -> None:
    name = str(command.get("command") or "/release")
    words = str(command.get("text") or "").split()
    sub = words[0].lower() if words else "help"
    if name == "/release" and sub == "status":
        await ack(response_type="ephemeral", text="Release status", blocks=await _status(fleet))
        return
    if name == "/release" and sub == "help":
        await ack(response_type="ephemeral", text="releasebot help", blocks=messages.help_message())
        return
    listed = ", ".join(f"`{n}`" for n in fleet.names)
    example = f"{name} {sub} {fleet.names[0]}{' ' + ' '.join(words[1:]) if words[1:] else ''}"
    named = (
        f"`{words[1]}` is not one of them; "
        if len(words) > 1 and not words[1].startswith("-")
        else ""
    )
    text = (
        f"This bot serves several services: {listed}. {named}Say which, after the command's "
        f"first word (`{example}`), or use the service's own channel. `/release status` shows "
        "them all."
    )
    await ack(response_type="ephemeral", text=text, blocks=messages.problem(text))


async def _status(fleet: Fleet) -> list[messages.Block]:
    """One line per service, all read at once and that read shared (bot.runtime.
    status_of_all), as fresh as each service's own `/release status`."""
    try:
        return await asyncio.wait_for(_blocks(fleet), STATUS_SECONDS)
    except TimeoutError:
        text = "The services' status took too long to read; try again in a moment."
        return [messages.context(f"{len(fleet.services)} services"), *messages.note(text)]


async def _blocks(fleet: Fleet) -> list[messages.Block]:
    status_of_all = fleet.clients.status_of_all if fleet.clients is not None else None
    if status_of_all is not None:
        try:
            return await status_of_all()
        except STORE_UNREACHABLE:
            return all_services_blocks(
                [f"*{each.config.service}*: {STORE_DOWN}" for each in fleet.services]
            )

    async def line(each: Services) -> str:  # services with clients of their own
        try:
            return await service_line(each)
        except STORE_UNREACHABLE:
            return f"*{each.config.service}*: {STORE_DOWN}"

    return all_services_blocks(list(await asyncio.gather(*(line(e) for e in fleet.services))))
