"""`/flag`: parse, ack within Slack's 3 seconds, and hand the change to the flag jobs."""

from __future__ import annotations

from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext

from bot.blocks import flags as flag_messages
from bot.commands.flag import (
    FLAG_USAGE,
    ChangeFlag,
    FlagHelp,
    ListFlags,
    RampFlag,
    parse_flag_command,
)
from bot.commands.release import CommandError
from bot.domain.flag_requests import FlagRequest, new_request
from bot.domain.flags import FlagsError
from bot.runtime.container import STORE_UNREACHABLE, Services
from bot.services import change_flags
from bot.services.ports import GitError
from handlers.answers import before_ack
from handlers.commands.release import Answer, audit_command, request_id
from handlers.commands.which_service import answer_unclaimed
from handlers.payloads import command_actor

STORE_DOWN = (
    "I cannot reach my state store (Redis) right now, so nothing was changed. "
    "Try again in a minute."
)


async def flag_command(ack: AsyncAck, command: dict[str, Any], context: AsyncBoltContext) -> None:
    services: Services | None = context["services"]
    if services is None:  # several services, none named or bound to this channel
        await answer_unclaimed(ack, context["fleet"], command)
        return
    await audit_command(services, command, await handle(ack, services, command))


async def handle(ack: AsyncAck, services: Services, command: dict[str, Any]) -> str:
    try:
        answer = await before_ack(answer_for(services, command))
    except STORE_UNREACHABLE:
        answer = Answer(STORE_DOWN, flag_messages.problem(STORE_DOWN), "failed")
    if answer.text is None:
        await ack()
    else:
        await ack(response_type="ephemeral", text=answer.text, blocks=answer.blocks)
    if answer.after is not None:
        await answer.after()
    return answer.outcome


def note(text: str, outcome: str = "ok") -> Answer:
    return Answer(text, flag_messages.note(text), outcome)


async def answer_for(services: Services, command: dict[str, Any]) -> Answer:
    """Everything a /flag does before its ack."""
    try:
        parsed = parse_flag_command(command.get("text") or "")
    except CommandError as exc:
        return Answer(str(exc), flag_messages.problem(str(exc)), "invalid")
    if isinstance(parsed, FlagHelp):
        return Answer("/flag help", flag_messages.note(FLAG_USAGE))
    actor, response_url = command_actor(command), command.get("response_url")
    if isinstance(parsed, ListFlags):
        return Answer("Reading the flags…", after=partial(answer_list, services, response_url))
    if isinstance(parsed, RampFlag) and parsed.stop:
        return note(await change_flags.stop_ramp(services, actor, parsed.name))
    if not await services.store.first_time(f"command:{request_id(command)}"):
        return Answer(None, outcome="duplicate")
    now = services.store.clock()
    if isinstance(parsed, RampFlag):
        request = new_request(
            actor,
            "ramp",
            parsed.name,
            now,
            steps=list(parsed.steps),
            every_seconds=parsed.every_seconds,
            response_url=response_url,
        )
    else:
        assert isinstance(parsed, ChangeFlag)
        change = parsed.change
        request = new_request(
            actor,
            change.operation,
            change.name,
            now,
            percentage=change.percentage,
            description=change.description,
            response_url=response_url,
        )
    if request.operation == "disable":
        # The kill switch: no approvals, no queue; straight to work after the ack.
        return Answer(
            f"Switching off {request.name}…",
            flag_messages.note(f"🛑 Switching off `{request.name}`…"),
            after=partial(spawn, services, request),
        )
    await change_flags.enqueue_request(services, request, request_id(command))
    words = flag_messages.change_words(request)
    return Answer(
        f"On it: {words}",
        flag_messages.note(f"⏳ On it: {words}. Follow it in {services.config.slack.channel}."),
    )


async def spawn(services: Services, request: FlagRequest) -> None:
    services.spawn(change_flags.start_request(services, request))


async def answer_list(services: Services, response_url: str | None) -> None:
    try:
        current = await change_flags.read_current(services)
    except (FlagsError, GitError) as exc:
        await services.notifier.answer(response_url, flag_messages.problem(str(exc)), str(exc))
        return
    await services.notifier.answer(
        response_url,
        flag_messages.list_message(current.flags, services.config.flags.path, current.sha),
        "Feature flags",
    )
