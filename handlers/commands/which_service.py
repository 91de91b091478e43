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
from bot.runtime.container import STORE_UNREACHABLE
from bot.runtime.fleet import Fleet
from bot.services.show_status import service_line
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
    async def line(each: Any) -> str:
        try:
            return await service_line(each.store, each.config, each.monitor_state)
        except STORE_UNREACHABLE:
            return f"*{each.config.service}*: {STORE_DOWN}"

    try:
        lines = await asyncio.wait_for(
            asyncio.gather(*(line(each) for each in fleet.services)), STATUS_SECONDS
        )
    except TimeoutError:
        lines = ["The services' status took too long to read; try again in a moment."]
    header = f"{len(fleet.services)} services · `/release status NAME` for one in full"
    return [messages.context(header), *messages.sections(list(lines))]
