"""`/flag`: parse, ack within Slack's 3 seconds, and hand the change to the flag jobs."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncAck, AsyncBoltContext

from bot import flag_jobs, flag_messages
from bot.commands import CommandError
from bot.flag_commands import (
    FLAG_USAGE,
    ChangeFlag,
    FlagHelp,
    ListFlags,
    RampFlag,
    parse_flag_command,
)
from bot.flags import FlagsError
from bot.gitrepo import GitError
from bot.services import Services
from handlers.commands.release import BEFORE_ACK_BUDGET, actor_of, audit_command, request_id


async def flag_command(ack: AsyncAck, command: dict[str, Any],
                       context: AsyncBoltContext) -> None:
    services: Services = context["services"]
    await audit_command(services, command, await handle(ack, services, command))


async def handle(ack: AsyncAck, services: Services, command: dict[str, Any]) -> str:
    try:
        parsed = parse_flag_command(command.get("text") or "")
    except CommandError as exc:
        await ack(response_type="ephemeral", text=str(exc),
                  blocks=flag_messages.problem(str(exc)))
        return "invalid"
    if isinstance(parsed, FlagHelp):
        await ack(response_type="ephemeral", text="/flag help",
                  blocks=flag_messages.note(FLAG_USAGE))
        return "ok"
    actor, response_url = actor_of(command), command.get("response_url")
    if isinstance(parsed, ListFlags):
        await ack(response_type="ephemeral", text="Reading the flags…")
        services.spawn(answer_list(services, response_url))
        return "ok"
    try:
        if isinstance(parsed, RampFlag) and parsed.stop:
            text = await asyncio.wait_for(flag_jobs.stop_ramp(services, actor, parsed.name),
                                          BEFORE_ACK_BUDGET)
            await ack(response_type="ephemeral", text=text, blocks=flag_messages.note(text))
            return "ok"
        if not await services.store.first_time(f"command:{request_id(command)}"):
            await ack()
            return "duplicate"
        now = services.store.clock()
        if isinstance(parsed, RampFlag):
            request = flag_jobs.new_request(actor, "ramp", parsed.name, now,
                                            steps=list(parsed.steps),
                                            every_seconds=parsed.every_seconds,
                                            response_url=response_url)
        else:
            assert isinstance(parsed, ChangeFlag)
            change = parsed.change
            request = flag_jobs.new_request(actor, change.operation, change.name, now,
                                            percentage=change.percentage,
                                            description=change.description,
                                            response_url=response_url)
        if request.operation == "disable":
            # The kill switch: no approvals, no queue; straight to work after the ack.
            await ack(response_type="ephemeral", text=f"Switching off {request.name}…",
                      blocks=flag_messages.note(f"🛑 Switching off `{request.name}`…"))
            services.spawn(flag_jobs.start_request(services, request))
            return "ok"
        await asyncio.wait_for(flag_jobs.enqueue_request(services, request, request_id(command)),
                               BEFORE_ACK_BUDGET)
    except (RedisError, TimeoutError):
        text = ("I cannot reach my state store (Redis) right now, so nothing was changed. "
                "Try again in a minute.")
        await ack(response_type="ephemeral", text=text, blocks=flag_messages.problem(text))
        return "failed"
    words = flag_messages.change_words(request)
    await ack(response_type="ephemeral", text=f"On it: {words}",
              blocks=flag_messages.note(f"⏳ On it: {words}. Follow it in "
                                        f"{services.config.slack.channel}."))
    return "ok"


async def answer_list(services: Services, response_url: str | None) -> None:
    try:
        current = await flag_jobs.read_current(services)
    except (FlagsError, GitError) as exc:
        await services.notifier.answer(response_url, flag_messages.problem(str(exc)), str(exc))
        return
    await services.notifier.answer(response_url, flag_messages.list_message(
        current.flags, services.config.flags.path, current.sha), "Feature flags")
