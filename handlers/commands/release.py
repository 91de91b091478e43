"""`/release`: parse the text, ack within Slack's 3 seconds, and hand the work to a worker."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext

from bot.adapters.redis.job_queue import workers_alive
from bot.blocks import release as messages
from bot.commands.release import (
    AdoptCommand,
    AuditCommand,
    CancelCommand,
    ChangesCommand,
    CommandError,
    FinalCommand,
    FreezeCommand,
    HealthCommand,
    HelpCommand,
    HotfixCommand,
    LockCommand,
    RcCommand,
    ReportCommand,
    RollbackCommand,
    StatusCommand,
    UnfreezeCommand,
    UnlockCommand,
    freeze_until,
    parse_release_command,
)
from bot.domain.approvals import Refusal
from bot.domain.config import UnknownEnvironment
from bot.domain.locks import LockRefused, format_age
from bot.runtime.container import STORE_UNREACHABLE, Services
from bot.runtime.logs import loggable
from bot.services import (
    adopt_version,
    approve_freezes,
    cancel_release,
    create_candidate,
    delivery_report,
    freeze_environments,
    lock_environments,
    monitor_health,
    promote_release,
    release_changes,
    roll_back,
    show_audit,
)
from bot.services.approvers import approver_without_asking
from handlers.answers import AFTER_ACK_STORE_DOWN, STORE_DOWN, before_ack
from handlers.commands.which_service import answer_unclaimed
from handlers.payloads import command_actor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """What the ack says (None: a silent ack, for a re-delivery), the outcome for the audit
    entry, and work that may run only after the ack."""

    text: str | None
    blocks: list[messages.Block] | None = None
    outcome: str = "ok"
    after: Callable[[], Awaitable[object]] | None = None
    # True when the command changes nothing `/release status` shows. Otherwise no status
    # snapshot from before it is served once it is answered, nor once its `after` has run.
    read_only: bool = False


def say(text: str, outcome: str = "ok") -> Answer:
    return Answer(text, messages.note(text), outcome)


def read_after_ack(text: str, work: Callable[[], Awaitable[object]]) -> Answer:
    """A read that takes longer than an ack may wait (git, thousands of checks, a month of
    the trail): acked with `text`, answered privately by `work` after."""
    return Answer(text, read_only=True, after=work)


def problem(text: str, outcome: str = "invalid") -> Answer:
    return Answer(text, messages.problem(text), outcome)


async def release_command(
    ack: AsyncAck, command: dict[str, Any], context: AsyncBoltContext
) -> None:
    services: Services | None = context["services"]
    if services is None:  # several services, none named or bound to this channel
        await answer_unclaimed(ack, context["fleet"], command)
        return
    await audit_command(services, command, await handle(ack, services, command))


async def audit_command(services: Services, command: dict[str, Any], outcome: str) -> None:
    """After the ack (Bolt has answered Slack by now): every command is on the audit trail."""
    text = f"{command.get('command') or '/release'} {command.get('text') or ''}"
    try:
        await services.store.audit(
            command_actor(command), "command", outcome=outcome, reason=text[:1000]
        )
    except STORE_UNREACHABLE:
        log.warning("could not audit %s", loggable(text, 200))


async def handle(ack: AsyncAck, services: Services, command: dict[str, Any]) -> str:
    """Answer one /release; returns the outcome for the audit entry."""
    answer = status_from_snapshot(services, command)
    if answer is None:
        try:
            answer = await before_ack(answer_for(services, command))
        except STORE_UNREACHABLE:
            # The ack goes out once the work is safely queued: if Redis does not answer in
            # time, the person hears that nothing was started instead of a promise never kept.
            log.warning("/release %s: Redis unavailable", loggable(command.get("text"), 200))
            answer = problem(STORE_DOWN, "failed")
    if not answer.read_only:
        services.status.invalidate()
    if answer.text is None:
        await ack()
    else:
        await ack(response_type="ephemeral", text=answer.text, blocks=answer.blocks)
    if answer.after is not None:
        try:
            await answer.after()
        except STORE_UNREACHABLE:
            # The ack promised more (a report, a posted request): the person hears it stopped.
            log.warning(
                "/release %s: Redis failed after the ack", loggable(command.get("text"), 200)
            )
            await services.chat.answer(
                command.get("response_url"), messages.problem(AFTER_ACK_STORE_DOWN), "Not finished"
            )
            return "failed"
        finally:
            if not answer.read_only:
                services.status.invalidate()
    return answer.outcome


def status_from_snapshot(services: Services, command: dict[str, Any]) -> Answer | None:
    """A plain `/release status` while the status snapshot may be served
    (bot.runtime.shared_read); None for anything else, which answer_for answers in full.

    Nothing here waits: no Redis, so no budget, and the ack goes out in the listener's first
    step. The text test accepts less than the parser does (no quotes), never more."""
    text = command.get("text")
    if not isinstance(text, str) or text.strip(" \t\r\n").lower() != "status":
        return None
    view = services.status.snapshot()
    return None if view is None else Answer("Release status", view.blocks, read_only=True)


async def answer_for(services: Services, command: dict[str, Any]) -> Answer:
    """Everything a /release does before its ack: parse, check, record, queue."""
    try:
        parsed = parse_release_command(command.get("text") or "")
    except CommandError as exc:
        return problem(str(exc))
    config = services.config
    if isinstance(parsed, HelpCommand):
        return Answer("releasebot help", messages.help_message(), read_only=True)
    if isinstance(parsed, StatusCommand):
        return Answer("Release status", (await services.status()).blocks, read_only=True)
    if isinstance(parsed, AuditCommand):
        return Answer(
            "Reading the audit trail…",
            after=partial(
                show_audit.answer_audit,
                services,
                command_actor(command),
                command.get("response_url"),
                parsed.version,
            ),
        )
    response_url = command.get("response_url")
    if isinstance(parsed, ChangesCommand):
        return read_after_ack(
            "Reading the changes from git…",
            partial(release_changes.answer_changes, services, response_url, parsed.version),
        )
    if isinstance(parsed, ReportCommand):
        return read_after_ack(
            "Working out the delivery figures…",
            partial(delivery_report.answer_report, services, response_url, parsed.since),
        )
    if isinstance(parsed, HealthCommand):
        if parsed.environment is not None:
            try:
                config.check_environment(parsed.environment)
            except UnknownEnvironment as exc:
                return problem(str(exc))
        return read_after_ack(
            "Reading the health checks…",
            partial(monitor_health.answer_health, services, response_url, parsed.environment),
        )
    if isinstance(parsed, LockCommand | UnlockCommand):
        return await lock_command(services, command, parsed)
    if isinstance(parsed, FreezeCommand | UnfreezeCommand):
        return await freeze_command(services, command, parsed)
    if isinstance(parsed, RollbackCommand):
        env = parsed.environment or config.last_environment.name
        try:
            config.check_environment(env)
        except UnknownEnvironment as exc:
            return problem(str(exc))
        if not await services.store.first_time(f"command:{request_id(command)}"):
            return Answer(None, outcome="duplicate")
        asked = await roll_back.request_rollback(
            services, command_actor(command), env, parsed.to, parsed.reason, services.store.clock()
        )
        return await with_worker_note(
            services, Answer(asked.text, messages.note(asked.text), after=asked.post)
        )
    if isinstance(parsed, AdoptCommand):
        try:
            config.check_environment(parsed.environment)
        except UnknownEnvironment as exc:
            return problem(str(exc))
        return Answer(
            f"Looking for `{parsed.version}` in the repository…",
            # After the ack: it fetches the repository's tags.
            after=partial(
                _answer_adoption,
                services,
                command,
                parsed.environment,
                parsed.version,
                parsed.reason,
            ),
        )
    if isinstance(parsed, CancelCommand):
        if not await services.store.first_time(f"command:{request_id(command)}"):
            return Answer(None, outcome="duplicate")
        return say(
            await cancel_release.cancel_candidate(
                services, command_actor(command), parsed.version, parsed.reason
            )
        )
    if isinstance(parsed, FinalCommand):
        return await with_worker_note(
            services,
            say(
                await promote_release.request_promotion(
                    services,
                    command_actor(command),
                    command.get("response_url"),
                    request_id(command),
                    description=parsed.description,
                    issue=parsed.issue,
                    when_open=parsed.when_open,
                    emergency=parsed.emergency,
                )
            ),
        )
    if isinstance(parsed, HotfixCommand):
        rc = RcCommand(description=parsed.description, issue=parsed.issue)
        return await start_rc(services, command, rc, kind="hotfix")
    assert isinstance(parsed, RcCommand)
    return await start_rc(services, command, parsed)


async def _answer_adoption(
    services: Services, command: dict[str, Any], environment: str, version: str, reason: str
) -> None:
    text = await adopt_version.adopt(services, command_actor(command), environment, version, reason)
    await services.chat.answer(command.get("response_url"), messages.note(text), text)


async def lock_command(
    services: Services, command: dict[str, Any], parsed: LockCommand | UnlockCommand
) -> Answer:
    actor = command_actor(command)
    try:
        if isinstance(parsed, LockCommand):
            outcome = await lock_environments.lock(
                services, actor, parsed.environment, parsed.reason, parsed.force
            )
        else:
            outcome = await lock_environments.unlock(
                services, actor, parsed.environment, parsed.force
            )
    except (UnknownEnvironment, LockRefused) as exc:
        verb = "lock" if isinstance(parsed, LockCommand) else "unlock"
        if isinstance(exc, UnknownEnvironment):
            return problem(str(exc))
        return problem(f"I did not {verb} *{parsed.environment}*: {exc}.", "refused")
    announcement = outcome.announcement
    if announcement is None:
        return say(outcome.answer)
    return Answer(
        outcome.answer,
        messages.note(outcome.answer),
        # Through the channel's outbox: kept until Slack takes it, never dropped after retries.
        after=partial(
            services.chat.reply,
            services.config.slack.channel,
            "",
            messages.note(announcement),
            announcement,
        ),
    )


async def freeze_command(
    services: Services, command: dict[str, Any], parsed: FreezeCommand | UnfreezeCommand
) -> Answer:
    """Freezing is Redis only, before the ack. Unfreezing someone else's freeze may need to
    ask Slack whether the person is in an approver group: then after the ack."""
    try:
        services.config.check_environment(parsed.environment)
    except UnknownEnvironment as exc:
        return problem(str(exc))
    actor = command_actor(command)
    if isinstance(parsed, FreezeCommand):
        now = datetime.fromtimestamp(services.store.clock(), UTC)
        try:
            until = freeze_until(parsed.until, now, services.config.freeze.timezone)
        except CommandError as exc:
            return problem(str(exc))
        if not await services.store.first_time(f"command:{request_id(command)}"):
            return Answer(None, outcome="duplicate")
        if services.config.freeze.required > 0:
            asked = await approve_freezes.ask(
                services,
                actor,
                parsed.environment,
                until,
                parsed.reason,
                command.get("response_url"),
            )
            return Answer(asked.text, messages.note(asked.text), after=asked.after)
        outcome = await freeze_environments.freeze(
            services, actor, parsed.environment, until, parsed.reason
        )
        return _announced(services, outcome)
    if approver_without_asking(services.config.freeze.policy, actor.user_id) is None:
        return Answer(
            f"Unfreezing *{parsed.environment}*…",
            after=partial(_unfreeze_after_ack, services, command, parsed),
        )
    try:
        outcome = await freeze_environments.unfreeze(
            services, actor, parsed.environment, parsed.reason
        )
    except (freeze_environments.FreezeRefused, Refusal) as exc:
        return problem(f"I did not unfreeze *{parsed.environment}*: {exc}.", "refused")
    return _announced(services, outcome)


async def _unfreeze_after_ack(
    services: Services, command: dict[str, Any], parsed: UnfreezeCommand
) -> None:
    try:
        outcome = await freeze_environments.unfreeze(
            services, command_actor(command), parsed.environment, parsed.reason
        )
    except (freeze_environments.FreezeRefused, Refusal) as exc:
        text = f"I did not unfreeze *{parsed.environment}*: {exc}."
        await services.chat.answer(command.get("response_url"), messages.problem(text), text)
        return
    await services.chat.answer(
        command.get("response_url"), messages.note(outcome.answer), outcome.answer
    )
    await _tell_channel(services, outcome.announcement)


def _announced(services: Services, outcome: freeze_environments.FreezeOutcome) -> Answer:
    """The answer to the person, and the channel told after the ack."""
    return Answer(
        outcome.answer,
        messages.note(outcome.answer),
        after=partial(_tell_channel, services, outcome.announcement),
    )


async def _tell_channel(services: Services, text: str) -> None:
    # Through the channel's outbox: kept until Slack takes it, never dropped after retries.
    await services.chat.reply(services.config.slack.channel, "", messages.note(text), text)


def request_id(command: dict[str, Any]) -> str:
    """The same for Slack's re-deliveries of one command, different for every new command."""
    if command.get("trigger_id"):
        return str(command["trigger_id"])
    return hashlib.sha256(json.dumps(command, sort_keys=True).encode()).hexdigest()[:32]


async def start_rc(
    services: Services, command: dict[str, Any], parsed: RcCommand, kind: str = "rc"
) -> Answer:
    rid = request_id(command)
    if not await services.store.first_time(f"command:{rid}"):
        return Answer(None, outcome="duplicate")  # a re-delivery of a command we already took
    actor = command_actor(command)
    if not parsed.dry_run:
        refused = await create_candidate.refuse_starter(services, actor, kind)
        if refused is not None:
            return problem(refused, "refused")
        busy = await create_candidate.claim_creation(services, kind, rid, actor.user_id)
        if busy is not None:
            return say(
                f"⏳ A {'hotfix' if kind == 'hotfix' else 'candidate'} is already being "
                f"created (asked by {messages.mention(busy.user_id)} "
                f"{format_age(services.store.clock() - busy.at)} ago); follow it in "
                f"{messages.channel_ref(services.config.slack.channel)}.",
                "duplicate",
            )
    request = create_candidate.RcRequest(
        user_id=actor.user_id,
        user_name=actor.user_name,
        channel_id=actor.channel,
        response_url=command.get("response_url"),
        description=parsed.description,
        issue=parsed.issue,
        bump=parsed.bump,
        dry_run=parsed.dry_run,
        kind=kind,
        request_id=rid,
        allow_empty=parsed.allow_empty,
    )
    try:
        await create_candidate.enqueue_rc(services, request, rid)
    except BaseException:
        if not parsed.dry_run:
            await create_candidate.end_creation(services, kind, rid)
        raise
    if kind == "hotfix":
        return await with_worker_note(
            services,
            say(f"🚑 Creating a hotfix of what runs in *{services.config.last_environment.name}*…"),
        )
    return await with_worker_note(
        services,
        Answer(
            "Creating a release candidate…",
            messages.rc_started(
                services.config.repository.branch,
                services.config.slack.channel,
                dry_run=parsed.dry_run,
            ),
        ),
    )


NO_WORKER = (
    "🕒 Queued, but no worker is running: it starts when one does "
    "(`releasebot serve --role worker`, or `--role all`)."
)


async def with_worker_note(services: Services, answer: Answer) -> Answer:
    """An answer that queued work says so when no worker would take it, instead of a silent
    wait. Asked briefly: the ack must not wait on it."""
    if answer.text is None or answer.outcome != "ok":
        return answer
    try:
        alive = await asyncio.wait_for(workers_alive(services.queue), 0.5)
    except Exception:
        return answer  # not known: the ack says what it would have said
    if alive:
        return answer
    blocks = [*(answer.blocks or []), messages.context(NO_WORKER)]
    return dataclasses.replace(answer, text=f"{answer.text} {NO_WORKER}", blocks=blocks)
