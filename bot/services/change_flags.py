"""Feature flag changes from Slack: approval when a change shows a feature to more people, a
commit to the flags file in the released repository (retried on top of someone else's push,
never over their change to the same flag), the flag deploy, and a check that the site reports
the new state. Ramps raise a flag step by step while the environment has no critical alert.

A change is a request in Redis (`flagreq:<id>`) with one message in the channel; everything
that happens to it goes into that message's thread and the audit trail.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from redis.exceptions import WatchError

from bot.adapters import git_clone as gitrepo
from bot.blocks import flags as flag_messages
from bot.domain.actors import Actor
from bot.domain.command_results import CommandResult
from bot.domain.config import Config
from bot.domain.flags import (
    Flag,
    FlagChange,
    FlagsError,
    apply,
    new_flags_ready,
    raises_exposure,
    read_flags,
)
from bot.runtime.container import Services
from bot.services import approvers
from bot.services import deploy_engine as deploys
from bot.services import monitor_health as monitor
from bot.services.clicks import Where, refused, same_message

log = logging.getLogger(__name__)

APPLY = "flag_apply"
REQUEST = "flag_request"
APPROVE_ACTION = "flag_approve"
PUSH_ATTEMPTS = 4


@dataclass
class FlagRequest:
    id: str
    operation: str
    name: str
    requester: str
    requester_name: str
    created_at: float
    percentage: int | None = None
    description: str = ""
    enable: bool = False  # a ramp step also switches the flag on
    steps: list[int] = field(default_factory=list)  # a ramp: its percentages…
    every_seconds: float = 0.0  # …and the time between them
    status: str = "new"  # new, awaiting approval, approved, applying, done, failed, refused
    # Reported failed because the worker deploying it stopped answering; its own outcome, if
    # it comes later, replaces that.
    lost: bool = False
    approvals: list[dict[str, Any]] = field(default_factory=list)
    before: str = ""  # the flag's state when the request was read, in words
    after: str = ""
    commit: str = ""
    detail: str = ""
    channel: str = ""
    ts: str = ""
    response_url: str | None = None
    parent: str = ""  # a ramp's step: the ramp request, whose message it reports in

    @property
    def change(self) -> FlagChange:
        operation = "set" if self.operation == "ramp" else self.operation
        return FlagChange(operation, self.name, percentage=self.percentage,  # type: ignore[arg-type]
                          description=self.description)

    @property
    def ramp(self) -> bool:
        return self.operation == "ramp"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> FlagRequest:
        return cls(**json.loads(raw))


def _key(services: Services, request_id: str) -> str:
    return f"{services.store.keys.prefix}flagreq:{request_id}"


def _ramps_key(services: Services) -> str:
    """One hash of every ramp going (flag name -> ramp), read by each scheduler tick."""
    return f"{services.store.keys.prefix}flagramps"


async def save(services: Services, request: FlagRequest) -> None:
    await services.redis.set(_key(services, request.id), request.to_json(), ex=90 * 86400)


async def load(services: Services, request_id: str) -> FlagRequest | None:
    raw = await services.redis.get(_key(services, request_id))
    return FlagRequest.from_json(raw) if raw else None


# --- reading the flags ---------------------------------------------------------------------


@dataclass(frozen=True)
class FlagsAt:
    sha: str  # the head of the release branch they were read at
    text: str
    flags: dict[str, Flag]


async def read_current(services: Services) -> FlagsAt:
    """The flags file at the head of the release branch, fetched now."""
    repo = services.config.repository
    snapshot = await asyncio.to_thread(gitrepo.sync, repo.url, services.clone_path, repo.remote,
                                       repo.branch)
    text = await asyncio.to_thread(gitrepo.read_file, services.clone_path, snapshot.head_sha,
                                   services.config.flags.path)
    text = text if text is not None else ""
    return FlagsAt(snapshot.head_sha, text, read_flags(text, services.config.flags.path))


def _describe(flag: Flag | None) -> str:
    return "new" if flag is None else flag.summary


# --- a request, from the command to the decision -------------------------------------------


async def start_request(services: Services, request: FlagRequest) -> None:
    """Read the flags, check the request against them, then apply it or ask for approval."""
    notifier, store = services.notifier, services.store
    actor = Actor(request.requester, request.requester_name, request.channel)
    try:
        current = await read_current(services)
        flag = current.flags.get(request.name)
        if request.ramp:
            _check_ramp(request, flag)
        else:
            apply(current.text, request.change, services.config.flags.path)  # refuses now
    except (FlagsError, gitrepo.GitError) as exc:
        await store.audit(actor, f"flag.{request.operation}", outcome="refused",
                          reason=f"{request.name}: {exc}"[:1000])
        await notifier.answer(request.response_url, flag_messages.problem(str(exc)), str(exc))
        return
    request.before = _describe(flag)
    needs = needs_approval(services.config, request, flag)
    request.status = "awaiting approval" if needs else "approved"
    await _post(services, request)
    await store.audit(actor, f"flag.{request.operation}", outcome=request.status,
                      reason=f"{request.name}: {flag_messages.change_words(request)}"[:1000])
    await save(services, request)
    if not needs:
        await go(services, request)


def _check_ramp(request: FlagRequest, flag: Flag | None) -> None:
    if flag is None:
        raise FlagsError(f"There is no flag `{request.name}`; `/flag create` it first.")
    now = flag.rollout_percentage if flag.enabled else 0
    if request.steps[0] <= now:
        raise FlagsError(f"A ramp only goes up, and `{request.name}` is at {now}% already; "
                         f"start above it, like `{now + 10 if now < 90 else 100}`.")


def needs_approval(config: Config, request: FlagRequest, flag: Flag | None) -> bool:
    """Changes that show a feature to more people need the configured approvals; switching
    off, lowering and creating (off, at 0%) need none."""
    if config.flags.policy.required == 0:
        return False
    return request.ramp or raises_exposure(flag, request.change)


async def go(services: Services, request: FlagRequest) -> None:
    """An approved request: a ramp starts, a change is applied (the kill switch right here,
    anything else through the queue)."""
    if request.ramp:
        await start_ramp(services, request)
    elif request.operation == "disable":
        await apply_request(services, request.id)
    else:
        env = services.config.flags_environment
        await services.queue.enqueue(
            APPLY, request_id=request.id, key=f"flag-{request.id}", retries=1,
            timeout=deploys.job_timeout(services.config,
                                        env.timeout_seconds + services.config.flags.verify_seconds),
            heartbeat=deploys.job_heartbeat(services.config))


async def approve(services: Services, actor: Actor, request_id: str, where: Where) -> str:
    """Someone clicked Approve on the flag request's message at `where`; returns the private
    answer."""
    policy = services.config.flags.policy
    key = _key(services, request_id)
    found = await load(services, request_id)
    if found is None:
        return await refused(services, actor, "flag.approve", f"{request_id}: unknown",
                             "That flag request is gone.")
    if not same_message(where, found.channel, found.ts):
        return await refused(services, actor, "flag.approve",
                             f"{request_id}: not on the request's message",
                             "This button is not on the flag request's message; use the one "
                             "there.")
    if not await approvers.is_approver(services, policy, actor.user_id):
        await services.store.audit(actor, "flag.approve", outcome="refused",
                                   reason=f"{request_id}: not an approver")
        return "You are not one of the approvers of flag changes."
    while True:
        async with services.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(key)
            raw = await pipe.get(key)
            if raw is None:
                return "That flag request is gone."
            request = FlagRequest.from_json(raw)
            if request.status != "awaiting approval":
                return f"That request is {request.status} already; nothing to approve."
            if actor.user_id == request.requester and not policy.allow_self_approval:
                await services.store.audit(actor, "flag.approve", outcome="refused",
                                           reason=f"{request.name}: own request")
                return "You asked for this change; someone else has to approve it."
            if any(a["user"] == actor.user_id for a in request.approvals):
                return "You approved it already."
            request.approvals.append({"user": actor.user_id, "at": services.store.clock()})
            if len(request.approvals) >= policy.required:
                request.status = "approved"
            pipe.multi()
            pipe.set(key, request.to_json(), keepttl=True)
            try:
                await pipe.execute()
            except WatchError:
                continue
        break
    await services.store.audit(actor, "flag.approve", reason=f"{request.name}: "
                               f"{flag_messages.change_words(request)}"[:1000])
    await _redraw(services, request)
    await _thread(services, request, f"👍 approved by <@{actor.user_id}>.")
    if request.status == "approved":
        await go(services, request)
        return f"Approved; {flag_messages.change_words(request)} is going ahead."
    missing = policy.required - len(request.approvals)
    return f"Approved; {missing} more approval(s) needed."


# --- applying a change ---------------------------------------------------------------------


class Conflict(Exception):
    pass


async def commit_change(services: Services, request: FlagRequest, actor: Actor,
                        based_on: FlagsAt | None = None) -> tuple[str, str]:
    """Commit the change and push it; returns (commit sha, the new file text).

    A push that loses the race is retried on top of the newer commit, unless that commit
    changed this very flag: then Conflict, and their change stands."""
    flags_cfg, repo = services.config.flags, services.config.repository
    current = based_on or await read_current(services)
    base = current.flags.get(request.name)
    author = (actor.user_name or actor.user_id, f"{actor.user_id}@slack.invalid")
    for attempt in range(PUSH_ATTEMPTS):
        if attempt:
            current = await read_current(services)
            if current.flags.get(request.name) != base:
                now = _describe(current.flags.get(request.name))
                raise Conflict(f"someone changed `{request.name}` meanwhile (it is {now} "
                               "now), so I did not overwrite it")
        change = request.change
        text = apply(current.text, change, flags_cfg.path)
        if request.enable:
            text = apply(text, FlagChange("enable", request.name), flags_cfg.path)
        message = (f"Flag {request.name}: {flag_messages.change_words(request)}\n\n"
                   f"Requested in Slack by {actor.user_name} ({actor.user_id}) via releasebot"
                   + "".join(f"\nApproved-by: <{a['user']}>" for a in request.approvals))
        try:
            sha = await asyncio.to_thread(gitrepo.commit_file, services.clone_path, repo.remote,
                                          repo.branch, current.sha, flags_cfg.path, text,
                                          message, author)
        except gitrepo.PushRejected:
            log.info("flag push lost the race (attempt %d); retrying on top", attempt + 1)
            continue
        return sha, text
    raise gitrepo.GitError(f"the push kept losing to newer commits ({PUSH_ATTEMPTS} tries)")


async def apply_request(services: Services, request_id: str, job: Any = None) -> bool:
    """Commit, deploy and verify an approved request. True when it is live. `job` is the saq
    job it runs in, if any (the kill switch and ramp steps run without one)."""
    request = await load(services, request_id)
    if request is None or request.status not in ("approved", "ramping"):
        return False
    actor = Actor(request.requester, request.requester_name, request.channel)
    request.status = "applying"
    await save(services, request)
    try:
        return await _apply(services, request, actor, job)
    except Exception as exc:  # never leave a request "applying" without a word
        return await _unexpected(services, request, exc)


async def _apply(services: Services, request: FlagRequest, actor: Actor, job: Any) -> bool:
    store = services.store
    try:
        sha, text = await commit_change(services, request, actor)
    except (Conflict, FlagsError, gitrepo.GitError) as exc:
        return await _fail(services, request, actor, f"I did not change the flag: {exc}.",
                           "conflict" if isinstance(exc, Conflict) else "failed")
    request.commit = sha
    expected = read_flags(text, services.config.flags.path)[request.name]
    request.after = expected.summary
    await store.audit(actor, "flag.commit", environment=services.config.flags_environment.name,
                      reason=f"{request.name}: {request.before} → {request.after} in "
                             f"{sha[:10]}")
    await _thread(services, request, f"📝 Committed `{sha[:10]}`: `{request.name}` "
                                     f"{request.before} → {request.after}.")
    result = await deploy_flags(services, request, text, job)
    latest = await deploys.durably(services, f"flag request {request.id}", load, services,
                                   request.id)
    if latest is not None and latest.lost:
        await _thread(services, request, "↩️ The deploy was reported lost while its worker "
                                         "was cut off from Redis; the worker is back, and "
                                         "what follows is what really happened.")
    if not result.ok:
        return await _fail(services, request, actor,
                           f"The flag deploy {result.summary()}; the commit is in the "
                           "repository and goes out with the next deploy.", "failed")
    verified = await verify(services, request.name, expected)
    request.status = "done"
    request.detail = verified
    await save(services, request)
    await store.audit(actor, "flag.deploy", environment=services.config.flags_environment.name,
                      outcome="succeeded", reason=f"{request.name}: {request.after}; {verified}")
    await _thread(services, request, f"✅ Deployed to *{services.config.flags_environment.name}*"
                                     f" in {result.duration:.1f}s. {verified}")
    await _redraw(services, request)  # last: a message that says "done" has its details
    return True


async def _fail(services: Services, request: FlagRequest, actor: Actor, text: str,
                status: str) -> bool:
    request.status, request.detail = status, text
    await save(services, request)
    await services.store.audit(actor, "flag.apply", outcome=status,
                               reason=f"{request.name}: {text}"[:1000])
    await _thread(services, request, f"⚠️ {text}")
    await _redraw(services, request)
    return False


async def deploy_flags(services: Services, request: FlagRequest, text: str,
                       job: Any = None) -> CommandResult:
    """The flag deploy: by default the environment's deploy of the version it runs, with the
    new flags file; `flags.deploy_command` instead, in a checkout of the flag commit."""
    config, store = services.config, services.store
    env = config.flags_environment
    running_now = (await store.environment_versions([env.name]))[env.name]
    custom = config.flags.deploy_command
    ref = request.commit if custom or not running_now.get("tag") else running_now["tag"]
    target = deploys.Target(
        kind="flags", deploy_id=f"flags:{request.id}", environment=env, subject=request.id,
        holder=request.requester, reason=f"flag {request.name}: {request.after}",
        on_stopped=partial(report_lost, services, request.id))
    command_env = {"RELEASE_ENV": env.name, "RELEASE_VERSION": running_now.get("version", ""),
                   "RELEASE_TAG": running_now.get("tag", ""),
                   "RELEASE_SHA": running_now.get("sha", request.commit),
                   "FLAG_NAME": request.name, "FLAG_STATE": request.after,
                   "FLAGS_COMMIT": request.commit}
    try:
        async with deploys.deploying(services, target, job) as running:
            try:
                await running.checkout_with_file(ref, config.flags.path, text)
            except gitrepo.GitError as exc:
                return deploys.checkout_failed(ref, exc)
            # Its own deploy command gets [flags]'s env on top of the environment's.
            given = env.command_env + config.flags.command_env if custom else env.command_env
            return await running.run(custom or env.deploy_command, command_env, given,
                                     env.timeout_seconds)
    except deploys.EnvironmentBusy as exc:
        return CommandResult(exit_code=None, timed_out=False, duration=0.0, tail="",
                             error=f"could not start: {env.name} is held by "
                                   f"{exc.info.holder} ({exc.info.reason})")
    except deploys.GivenUp as exc:
        return CommandResult(exit_code=None, timed_out=False, duration=0.0, tail="",
                             error=f"not run: {exc}")


async def report_lost(services: Services, request_id: str, detail: str) -> bool:
    """The worker deploying this flag change died (or is shutting down): the request failed,
    in its thread and the audit trail; never re-run. False if it is not being applied."""
    request = await load(services, request_id)
    if request is None or request.status != "applying":
        return False
    request.status, request.lost = "failed", True
    request.detail = (f"The flag deploy did not finish ({detail}); the commit "
                      f"`{request.commit[:10]}` is in the repository and goes out with the next "
                      "deploy.")
    await save(services, request)
    actor = Actor(request.requester, request.requester_name, request.channel)
    await services.store.audit(actor, "flag.deploy",
                               environment=services.config.flags_environment.name,
                               outcome="failed", reason=f"{request.name}: {detail}"[:1000])
    await _thread(services, request, f"⚠️ {request.detail}")
    await _redraw(services, request)
    return True


async def verify(services: Services, name: str, expected: Flag) -> str:
    """Ask the site's /flags whether it runs the new state (for a while: it may restart)."""
    env, cfg = services.config.flags_environment, services.config.flags
    if not env.url:
        return "(No url for the environment, so its /flags was not checked.)"
    url = env.url.rstrip("/") + cfg.endpoint
    deadline = services.store.clock() + cfg.verify_seconds
    seen = "no answer"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while True:
            try:
                async with http.get(url) as resp:
                    body = await resp.json(content_type=None)
                flags = body.get("flags", body) if isinstance(body, dict) else {}
                entry = flags.get(name) if isinstance(flags, dict) else None
                if isinstance(entry, dict):
                    seen = (f"{'on' if entry.get('enabled') else 'off'}, "
                            f"{entry.get('rollout_percentage', 0)}%")
                    if entry.get("enabled") == expected.enabled \
                            and entry.get("rollout_percentage") == expected.rollout_percentage:
                        return f"{cfg.endpoint} reports `{name}` {seen}."
                else:
                    seen = "the flag missing"
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                seen = f"no answer ({type(exc).__name__})"
            if services.store.clock() >= deadline:
                return (f"⚠️ {cfg.endpoint} still reports {seen} after "
                        f"{cfg.verify_seconds:g}s; expected {expected.summary}.")
            await asyncio.sleep(min(1.0, cfg.verify_seconds / 10))


# --- ramps ---------------------------------------------------------------------------------


@dataclass
class Ramp:
    name: str
    request: str  # the approved ramp request, whose thread hears each step
    steps: list[int]
    every_seconds: float
    next_step: int = 0
    next_at: float = 0.0
    paused_by: str = ""  # the critical alert it waits for, in words
    expect: str = ""  # the flag's state after the last step: anything else is a person's hand

    def to_json(self) -> str:
        return json.dumps(asdict(self))


async def start_ramp(services: Services, request: FlagRequest) -> None:
    ramp = Ramp(name=request.name, request=request.id, steps=request.steps,
                every_seconds=request.every_seconds, next_at=services.store.clock(),
                expect=request.before)
    request.status = "ramping"
    await save(services, request)
    await services.redis.hset(_ramps_key(services), request.name, ramp.to_json())
    await _redraw(services, request)
    await _thread(services, request, f"📈 Ramp started: {_steps(ramp)}, one step every "
                                     f"{flag_messages.duration(ramp.every_seconds)}, while "
                                     f"*{services.config.flags_environment.name}* has no "
                                     "critical alert.")


def _steps(ramp: Ramp) -> str:
    return " → ".join(f"*{p}%*" if i == ramp.next_step else f"{p}%"
                      for i, p in enumerate(ramp.steps))


async def stop_ramp(services: Services, actor: Actor, name: str) -> str:
    async with services.redis.pipeline(transaction=True) as pipe:
        pipe.hget(_ramps_key(services), name)
        pipe.hdel(_ramps_key(services), name)
        raw, _ = await pipe.execute()
    if raw is None:
        return f"`{name}` has no ramp going."
    ramp = Ramp(**json.loads(raw))
    await services.store.audit(actor, "flag.ramp-stop", reason=f"{name} before step "
                               f"{ramp.next_step + 1} of {len(ramp.steps)}")
    request = await load(services, ramp.request)
    if request is not None:
        request.status = "stopped"
        await save(services, request)
        await _redraw(services, request)
        await _thread(services, request, f"⏹ <@{actor.user_id}> stopped the ramp.")
    return f"Stopped the ramp of `{name}`; it stays where it is."


async def critical_alert(services: Services, environment: str) -> str:
    """An open critical incident in `environment`, in words, or ""."""
    for incident in await monitor.open_incidents(services, environment):
        if incident.critical:
            return f"CRITICAL · {environment} · {incident.check}: {incident.problem}"
    return ""


async def advance_ramps(services: Services) -> None:
    """The scheduler's tick: each ramp that is due takes its next step, unless the flag's
    environment has a critical alert (the ramp pauses, and says so) or someone changed the
    flag by hand (the ramp stops: people decide now)."""
    key = _ramps_key(services)
    env = services.config.flags_environment.name
    for name in await services.redis.hkeys(key):
        raw = await services.redis.hget(key, name)  # fresh: a stop may have come meanwhile
        if raw is None:
            continue
        ramp = Ramp(**json.loads(raw))
        now = services.store.clock()
        if now < ramp.next_at:
            continue
        request = await load(services, ramp.request)
        if request is None:
            await services.redis.hdel(key, name)
            continue
        alert = await critical_alert(services, env)
        if alert:
            if ramp.paused_by != alert:
                ramp.paused_by = alert
                await services.redis.hset(key, name, ramp.to_json())
                await _thread(services, request, f"⏸ Ramp paused before "
                                                 f"{ramp.steps[ramp.next_step]}%: {alert}")
            continue
        if ramp.paused_by:
            ramp.paused_by = ""
            await _thread(services, request, "▶️ The alert is resolved; the ramp goes on.")
        current = (await read_current(services)).flags.get(ramp.name)
        if current is None or current.summary != ramp.expect:
            await services.redis.hdel(key, name)
            await _thread(services, request, f"⏹ Ramp stopped: `{ramp.name}` was changed by "
                                             f"hand (it is {_describe(current)}, the ramp "
                                             f"left it {ramp.expect}).")
            continue
        step = FlagRequest(id=f"{request.id}-{ramp.next_step + 1}", operation="set",
                           name=ramp.name, requester=request.requester,
                           requester_name=request.requester_name, created_at=now,
                           percentage=ramp.steps[ramp.next_step], enable=True,
                           status="approved", approvals=request.approvals,
                           before=current.summary, channel=request.channel, ts=request.ts,
                           parent=request.id)
        await save(services, step)
        ok = await apply_request(services, step.id)
        latest = await load(services, step.id)
        if not ok or latest is None:
            await services.redis.hdel(key, name)
            await _thread(services, request, "⏹ Ramp stopped: that step did not go out.")
            continue
        ramp.expect = request.after = latest.after
        await save(services, request)
        await _redraw(services, request)
        ramp.next_step += 1
        ramp.next_at = services.store.clock() + ramp.every_seconds
        if ramp.next_step >= len(ramp.steps):
            await services.redis.hdel(key, name)
            request.status = "done"
            request.after = latest.after
            await save(services, request)
            await _redraw(services, request)
            await _thread(services, request, f"🏁 Ramp finished: `{ramp.name}` is "
                                             f"{latest.after}.")
        elif await services.redis.hexists(key, name):  # not stopped meanwhile
            await services.redis.hset(key, name, ramp.to_json())
            await _thread(services, request, f"📈 Next: {_steps(ramp)} in "
                                             f"{flag_messages.duration(ramp.every_seconds)}.")


# --- the "Feature flags ready" gate ---------------------------------------------------------


async def flags_ready(services: Services, worktree: Path) -> CommandResult:
    """New flags in the candidate start off, at 0% (compared with what production runs)."""
    config, started = services.config, services.store.clock()
    path = config.flags.path
    candidate_file = worktree / path
    candidate_text = await asyncio.to_thread(
        lambda: candidate_file.read_text("utf-8") if candidate_file.exists() else "")
    live = (await services.store.environment_versions([config.last_environment.name]))[
        config.last_environment.name]
    live_text = ""
    if live.get("tag"):
        live_text = await asyncio.to_thread(gitrepo.read_file, services.clone_path,
                                            live["tag"], path) or ""
    try:
        problems = new_flags_ready(read_flags(candidate_text, path), read_flags(live_text, path))
    except FlagsError as exc:
        problems = [str(exc)]
    took = services.store.clock() - started
    if problems:
        return CommandResult(exit_code=1, timed_out=False, duration=took,
                             tail="\n".join(problems))
    return CommandResult(exit_code=0, timed_out=False, duration=took,
                         tail="every new flag starts off, at 0%")


# --- messages ------------------------------------------------------------------------------


async def _post(services: Services, request: FlagRequest) -> None:
    channel = services.config.slack.channel
    posted = await services.notifier.post(
        channel, flag_messages.request_message(request, services.config),
        flag_messages.request_text(request))
    request.channel = str((posted or {}).get("channel", channel))
    request.ts = str((posted or {}).get("ts", ""))


async def _redraw(services: Services, request: FlagRequest) -> None:
    if not request.ts or request.parent:  # a ramp's step: the ramp's message is redrawn
        return
    try:
        await services.notifier.client.chat_update(
            channel=request.channel, ts=request.ts,
            blocks=flag_messages.request_message(request, services.config),
            text=flag_messages.request_text(request))
    except Exception:  # the thread still tells
        log.warning("updating flag request %s failed", request.id, exc_info=True)


async def _thread(services: Services, request: FlagRequest, text: str) -> None:
    if request.ts:
        await services.notifier.post(request.channel, flag_messages.note(text), text,
                                     thread_ts=request.ts)


def new_request(actor: Actor, operation: str, name: str, now: float, **fields: Any) -> FlagRequest:
    return FlagRequest(id=secrets.token_hex(6), operation=operation, name=name,
                       requester=actor.user_id, requester_name=actor.user_name,
                       created_at=now, channel=actor.channel, **fields)


async def _unexpected(services: Services, request: FlagRequest, exc: Exception) -> bool:
    log.exception("flag request %s failed", request.id, exc_info=exc)
    actor = Actor(request.requester, request.requester_name, request.channel)
    return await _fail(services, request, actor, f"Something went wrong ({type(exc).__name__}"
                       f": {exc}); check the repository before trying again.", "failed")


async def enqueue_request(services: Services, request: FlagRequest, request_key: str) -> None:
    await services.queue.enqueue(REQUEST, request=asdict(request), key=f"flagreq-{request_key}",
                                 timeout=3600, retries=1)
