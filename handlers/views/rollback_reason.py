"""The Rollback form: a reason is required; then the rollback is asked for, as by command."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext

from bot import rollback_jobs
from handlers.views.reason_form import answer_privately, sender, take_reason


async def rollback_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any],
                             context: AsyncBoltContext) -> None:
    taken = await take_reason(ack, view, "Say why, so the team knows what to fix.")
    if taken is None or "e" not in taken[1]:
        return
    reason, meta = taken
    actor = sender(body, str(meta.get("c", "")))
    services = context["services"]
    answer = await rollback_jobs.request_rollback(services, actor, str(meta["e"]), None, reason,
                                                  services.store.clock())
    await answer_privately(context, actor, answer)
