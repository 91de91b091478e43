"""`/release`: parse the text, ack within Slack's 3 seconds, and hand the work to a worker."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncAck, AsyncBoltContext

from bot import environments, health_messages, jobs, messages, monitor, rollback_jobs
from bot.approvals import readiness
from bot.audit import audit_message, read_entries
from bot.commands import (
    AuditCommand,
    CommandError,
    FinalCommand,
    HealthCommand,
    HelpCommand,
    HotfixCommand,
    LockCommand,
    RcCommand,
    RollbackCommand,
    StatusCommand,
    UnlockCommand,
    parse_release_command,
)
from bot.environments import UnknownEnvironment
from bot.locks import LockRefused
from bot.services import Services
from bot.store import Actor

log = logging.getLogger(__name__)


# Redis work before the ack gets this long, so Slack always hears back within its 3 seconds.
BEFORE_ACK_BUDGET = 2.0


async def release_command(ack: AsyncAck, command: dict[str, Any],
                          context: AsyncBoltContext) -> None:
    services: Services = context["services"]
    await audit_command(services, command, await handle(ack, services, command))


async def audit_command(services: Services, command: dict[str, Any], outcome: str) -> None:
    """After the ack (Bolt has answered Slack by now): every command is on the audit trail."""
    text = f"{command.get('command') or '/release'} {command.get('text') or ''}"
    try:
        await services.store.audit(actor_of(command), "command", outcome=outcome,
                                   reason=text[:1000])
    except RedisError:
        log.warning("could not audit %s", text, exc_info=True)


async def handle(ack: AsyncAck, services: Services, command: dict[str, Any]) -> str:
    """Answer one /release; returns the outcome for the audit entry."""
    try:
        parsed = parse_release_command(command.get("text") or "")
    except CommandError as exc:
        await ack(response_type="ephemeral", text=str(exc), blocks=messages.problem(str(exc)))
        return "invalid"
    if isinstance(parsed, HelpCommand):
        await ack(response_type="ephemeral", text="releasebot help",
                  blocks=messages.help_message())
        return "ok"
    try:
        # The ack goes out once the work is safely queued: if this process dies first, the
        # person sees Slack's error instead of a promise that is never kept.
        if isinstance(parsed, StatusCommand):
            blocks = await asyncio.wait_for(services.status(), BEFORE_ACK_BUDGET)
            await ack(response_type="ephemeral", text="Release status", blocks=blocks)
        elif isinstance(parsed, HealthCommand):
            if parsed.environment is not None:
                try:
                    environments.check_environment(services.config, parsed.environment)
                except UnknownEnvironment as exc:
                    await ack(response_type="ephemeral", text=str(exc),
                              blocks=messages.problem(str(exc)))
                    return "invalid"
            rows = await asyncio.wait_for(monitor.health_rows(services, parsed.environment),
                                          BEFORE_ACK_BUDGET)
            await ack(response_type="ephemeral", text="Health checks",
                      blocks=health_messages.health_report(rows, services.store.clock()))
        elif isinstance(parsed, RollbackCommand):
            env = parsed.environment or services.config.last_environment.name
            try:
                environments.check_environment(services.config, env)
            except UnknownEnvironment as exc:
                await ack(response_type="ephemeral", text=str(exc),
                          blocks=messages.problem(str(exc)))
                return "invalid"
            if not await services.store.first_time(f"command:{request_id(command)}"):
                await ack()
                return "duplicate"
            text = await asyncio.wait_for(rollback_jobs.request_rollback(
                services, actor_of(command), env, parsed.to, parsed.reason,
                services.store.clock()), BEFORE_ACK_BUDGET)
            await ack(response_type="ephemeral", text=text, blocks=messages.note(text))
        elif isinstance(parsed, AuditCommand):
            await ack(response_type="ephemeral", text="Reading the audit trail…")
            await post_audit(services, command, parsed)
        elif isinstance(parsed, FinalCommand):
            text = await asyncio.wait_for(start_final(services, command, parsed),
                                          BEFORE_ACK_BUDGET)
            await ack(response_type="ephemeral", text=text, blocks=messages.note(text))
        elif isinstance(parsed, LockCommand | UnlockCommand):
            await lock_command(ack, services, command, parsed)
        elif isinstance(parsed, HotfixCommand):
            rc = RcCommand(description=parsed.description, issue=parsed.issue)
            await asyncio.wait_for(start_rc(services, command, rc, kind="hotfix"),
                                   BEFORE_ACK_BUDGET)
            await ack(response_type="ephemeral", text="Creating a hotfix…",
                      blocks=messages.note("🚑 Creating a hotfix of what runs in "
                                           f"*{services.config.last_environment.name}*…"))
        elif isinstance(parsed, RcCommand):
            await asyncio.wait_for(start_rc(services, command, parsed), BEFORE_ACK_BUDGET)
            await ack(response_type="ephemeral", text="Creating a release candidate…",
                      blocks=messages.rc_started(services.config.repository.branch,
                                                 services.config.slack.channel,
                                                 dry_run=parsed.dry_run))
    except (RedisError, TimeoutError):
        log.warning("/release %s: Redis unavailable", command.get("text"), exc_info=True)
        text = ("I cannot reach my state store (Redis) right now, so nothing was started or "
                "changed. Try again in a minute; if it persists, tell whoever runs releasebot.")
        await ack(response_type="ephemeral", text=text, blocks=messages.problem(text))
        return "failed"
    return "ok"


def actor_of(command: dict[str, Any]) -> Actor:
    return Actor(command.get("user_id", ""), command.get("user_name", ""),
                 command.get("channel_id", ""))


async def lock_command(ack: AsyncAck, services: Services, command: dict[str, Any],
                       parsed: LockCommand | UnlockCommand) -> None:
    actor = actor_of(command)
    try:
        if isinstance(parsed, LockCommand):
            outcome = await asyncio.wait_for(environments.lock(
                services, actor, parsed.environment, parsed.reason, parsed.force),
                BEFORE_ACK_BUDGET)
        else:
            outcome = await asyncio.wait_for(environments.unlock(
                services, actor, parsed.environment, parsed.force), BEFORE_ACK_BUDGET)
    except (UnknownEnvironment, LockRefused) as exc:
        verb = "lock" if isinstance(parsed, LockCommand) else "unlock"
        text = str(exc) if isinstance(exc, UnknownEnvironment) else \
            f"I did not {verb} *{parsed.environment}*: {exc}."
        await ack(response_type="ephemeral", text=text, blocks=messages.problem(text))
        return
    await ack(response_type="ephemeral", text=outcome.answer,
              blocks=messages.note(outcome.answer))
    if outcome.announcement:
        await services.notifier.post(services.config.slack.channel,
                                     messages.note(outcome.announcement), outcome.announcement)


async def post_audit(services: Services, command: dict[str, Any], parsed: AuditCommand) -> None:
    """After the ack (the trail can be long): the release's history, privately."""
    version = None
    if parsed.version is not None:
        version = await find_release_version(services, parsed.version)
        if version is None:
            text = f"I know no release `{parsed.version}`."
            await services.notifier.answer(command.get("response_url"),
                                           messages.problem(text), text)
            return
    entries = [e async for e in read_entries(services.redis, services.store.keys.audit,
                                             release=version)]
    await services.store.audit(actor_of(command), "audit.read", release=version or "")
    await services.notifier.answer(command.get("response_url"),
                                   audit_message(version, entries), "Audit trail")


async def find_release_version(services: Services, name: str) -> str | None:
    """A candidate by its version or tag, or a promoted release by its final version."""
    prefix = services.config.repository.tag_prefix
    version = name[len(prefix):] if prefix and name.startswith(prefix) else name
    if await services.store.get_release(version) is not None:
        return version
    for release in await services.store.recent_releases(200):
        if release.final_version == version:
            return release.version
    return None


async def start_final(services: Services, command: dict[str, Any],
                      parsed: FinalCommand) -> str:
    """Queue the promotion of the newest open candidate, or say what it still lacks."""
    actor = actor_of(command)
    candidates = [r for r in await services.store.releases_in_flight()
                  if r.phase == "active" and not r.superseded_by and not r.final_tag]
    if not candidates:
        return "There is no open release candidate to promote; `/release rc` makes one."
    release = candidates[-1]
    state = readiness(release, services.config, services.store.clock())
    if not state.ready:
        await services.store.audit(actor, "release.promote", release=release.version,
                                   outcome="refused", reason="; ".join(state.missing))
        return (f":warning: `{release.tag}` is not ready for "
                f"*{services.config.last_environment.name}*:\n• " + "\n• ".join(state.missing))
    if await services.store.first_time(f"command:{request_id(command)}"):
        await jobs.enqueue_promotion(services, jobs.FinalRequest(
            version=release.version, user_id=actor.user_id, user_name=actor.user_name,
            channel_id=actor.channel, response_url=command.get("response_url"),
            description=parsed.description, issue=parsed.issue))
    return f"⏳ Promoting `{release.tag}` to *{services.config.last_environment.name}*…"


def request_id(command: dict[str, Any]) -> str:
    """The same for Slack's re-deliveries of one command, different for every new command."""
    if command.get("trigger_id"):
        return str(command["trigger_id"])
    return hashlib.sha256(json.dumps(command, sort_keys=True).encode()).hexdigest()[:32]


async def start_rc(services: Services, command: dict[str, Any], parsed: RcCommand,
                   kind: str = "rc") -> None:
    rid = request_id(command)
    if not await services.store.first_time(f"command:{rid}"):
        return  # a re-delivery of a command we already took
    actor = actor_of(command)
    request = jobs.RcRequest(
        user_id=actor.user_id, user_name=actor.user_name, channel_id=actor.channel,
        response_url=command.get("response_url"),
        description=parsed.description, issue=parsed.issue, bump=parsed.bump,
        dry_run=parsed.dry_run, kind=kind)
    await jobs.enqueue_rc(services, request, rid)
