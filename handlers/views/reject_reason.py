"""The Reject form: a reason is required; the rejection is applied and told privately."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext

from bot import decisions
from handlers.views.reason_form import answer_privately, sender, take_reason


async def reject_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any],
                           context: AsyncBoltContext) -> None:
    taken = await take_reason(ack, view, "Say why, so the requester knows what to fix.")
    if taken is None or "v" not in taken[1] or "g" not in taken[1]:
        return
    reason, meta = taken
    actor = sender(body, str(meta.get("c", "")))
    answer = await decisions.reject(context["services"], actor, str(meta["v"]),
                                    str(meta["g"]), reason)
    await answer_privately(context, actor, answer)
