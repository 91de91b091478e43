"""Worker jobs: create a release candidate, deploy a release to an environment, run its gates.

Jobs run in the worker role (saq on Redis). They take plain keyword arguments so a job can be
enqueued by any web replica and run by any worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import semver

from bot.adapters import git_clone as gitrepo
from bot.adapters.process.runner import CommandResult
from bot.adapters.redis.locks import LockHeld, held
from bot.blocks import release as messages
from bot.domain import approvals, releases
from bot.domain.actors import BOT, Actor
from bot.domain.config import Config, GateConfig
from bot.domain.releases import Release, TransitionError
from bot.domain.versions import VersionError, next_candidate, next_hotfix
from bot.runtime.container import Services
from bot.services import change_flags as flag_jobs
from bot.services import deploy_engine as deploys
from bot.services import monitor_health as monitor

log = logging.getLogger(__name__)

CREATE_RC = "create_rc"
DEPLOY = "deploy"
PROMOTE = "promote"


def config_last(services: Services) -> str:
    return services.config.last_environment.name


@dataclass(frozen=True)
class RcRequest:
    """A `/release rc` as the handler received it (plain data, so it travels in a job)."""

    user_id: str
    user_name: str
    channel_id: str
    response_url: str | None
    description: str = ""
    issue: str | None = None
    bump: str | None = None
    dry_run: bool = False
    kind: str = "rc"  # or "hotfix"
    request_id: str = ""  # the command's, which holds the "being created" claim

    @property
    def actor(self) -> Actor:
        return Actor(self.user_id, self.user_name, self.channel_id)


# A /release rc this soon after a candidate was made of the same commit is a double
# submission (a double enter, a retry by hand): answered with that candidate, not a copy.
DOUBLE_SUBMISSION_SECONDS = 10

# How long a claim that a candidate is being created stands if its job never ends (a worker
# that died with it); the job itself ends the claim as soon as it is done.
CREATION_CLAIM_SECONDS = 300

_END_CLAIM = """
local raw = redis.call('GET', KEYS[1])
if raw and cjson.decode(raw)['r'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Claim:
    request_id: str
    user_id: str
    at: float


async def claim_creation(services: Services, kind: str, request_id: str,
                         user_id: str) -> Claim | None:
    """Claim the creation of a candidate of `kind` for this command, before its ack; returns
    the claim that stands instead if another command was first (two /release rc moments apart
    make one candidate, and the second hears so)."""
    key = services.store.keys.pending(kind)
    mine = json.dumps({"r": request_id, "u": user_id, "at": services.store.clock()})
    if await services.redis.set(key, mine, nx=True, ex=CREATION_CLAIM_SECONDS):
        return None
    raw = await services.redis.get(key)
    if raw is None:  # ended meanwhile: try once more
        return await claim_creation(services, kind, request_id, user_id)
    other = json.loads(raw)
    return Claim(str(other["r"]), str(other["u"]), float(other["at"]))


async def end_creation(services: Services, kind: str, request_id: str) -> None:
    """End this command's claim (never another's)."""
    await services.redis.eval(_END_CLAIM, 1, services.store.keys.pending(kind), request_id)


async def enqueue_rc(services: Services, request: RcRequest, request_id: str) -> None:
    # The job key makes a re-delivered command a no-op even at the queue.
    await services.queue.enqueue(CREATE_RC, request=asdict(request), key=f"rc-{request_id}",
                                 timeout=600, retries=1)


async def enqueue_deploy(services: Services, release: Release, environment: str,
                         actor: Actor) -> str:
    """Record a queued deploy on the release and put its job on the queue."""
    deploy_id = f"{release.version}@{environment}#{secrets.token_hex(4)}"
    await services.store.update_release(
        release.version,
        lambda r: releases.queue_deploy(r, environment, deploy_id, services.store.clock()),
        actor, "deploy.queue", environment=environment)
    env = services.config.environment(environment)
    gate_time = sum(g.timeout_seconds for g in services.config.gates_for(environment)
                    if g.automatic)
    try:
        await services.queue.enqueue(
            DEPLOY, version=release.version, environment=environment, deploy_id=deploy_id,
            actor=asdict(actor), key=deploy_id, retries=1,
            timeout=deploys.job_timeout(services.config, env.timeout_seconds + gate_time),
            # Never retried (retries=1): a lost deploy is reported in its thread by our reaper.
            heartbeat=deploys.job_heartbeat(services.config))
    except Exception:
        # Recorded as queued but no job carries it: never leave it "queued" for ever.
        with contextlib.suppress(Exception):
            await services.store.update_release(
                release.version, partial(releases.block_deploy, deploy_id=deploy_id,
                                         now=services.store.clock(),
                                         detail="it could not be queued"),
                actor, "deploy.start", environment=environment, outcome="blocked",
                reason="could not be queued")
        raise
    services.notifier.refresh(release.version)
    return deploy_id


# --- /release rc -------------------------------------------------------------------------------

async def create_rc(ctx: dict[str, Any], *, request: dict[str, Any]) -> None:
    services: Services = ctx["services"]
    await create_release_candidate(services, RcRequest(**request))


async def create_release_candidate(services: Services, req: RcRequest) -> Release | None:
    """Tag, record, announce and deploy a candidate; whatever happens, the requester hears."""
    try:
        return await _create_release_candidate(services, req)
    except Exception as exc:
        # Each step undoes itself (see _tag_and_record); this is the answer nobody got yet.
        log.exception("creating a candidate for %s failed", req.user_id)
        text = (f"Something went wrong while creating the candidate ({type(exc).__name__}). "
                "Nothing half-made was left behind: `/release status` shows what there is; "
                "try again.")
        with contextlib.suppress(Exception):
            await services.store.audit(req.actor, "hotfix.create" if req.kind == "hotfix"
                                       else "rc.create", outcome="failed",
                                       reason=f"{type(exc).__name__}: {exc}"[:500])
        await services.notifier.answer(req.response_url, messages.problem(text), text)
        return None
    finally:
        if req.request_id and not req.dry_run:
            try:
                await end_creation(services, req.kind, req.request_id)
            except Exception:  # it expires by itself
                log.warning("could not end the creation claim of %s", req.request_id)


async def _create_release_candidate(services: Services, req: RcRequest) -> Release | None:
    notifier, store, config = services.notifier, services.store, services.config
    repo_cfg = config.repository
    hotfix = req.kind == "hotfix"
    action = "hotfix.create" if hotfix else "rc.create"

    async def refuse(text: str, reason: str) -> None:
        await store.audit(req.actor, action, outcome="refused", reason=reason)
        await notifier.answer(req.response_url, messages.problem(text), text)

    try:
        # Renewed while held; a creator that dies holds others off no longer than a dead deploy.
        async with held(services.redis, store.keys.repo_lock, config.worker.lock_ttl_seconds,
                        req.user_id, "creating a release candidate"):
            try:
                repaired = await asyncio.to_thread(gitrepo.sync_tags, repo_cfg.url,
                                                   services.clone_path, repo_cfg.remote)
                branch = repo_cfg.branch
                if hotfix and config.hotfix.branches:
                    branch = await asyncio.to_thread(
                        gitrepo.newest_branch, services.clone_path, repo_cfg.remote,
                        config.hotfix.branches) or branch
                snapshot = await asyncio.to_thread(gitrepo.read_branch, repo_cfg.url,
                                                   services.clone_path, repo_cfg.remote,
                                                   branch)
            except gitrepo.GitError as exc:
                await refuse(f"I could not fetch the repository, so nothing was tagged.\n"
                             f"{messages.code_block(str(exc))}\nCheck `repository.url` in the "
                             "config and that the bot can read it.", f"fetch failed: {exc}")
                return None
            try:
                if hotfix:
                    live = (await store.environment_versions(
                        [config.last_environment.name]))[config.last_environment.name]
                    version = next_hotfix(live.get("version"), snapshot.all_tags,
                                          repo_cfg.tag_prefix, config.last_environment.name)
                else:
                    version = next_candidate(snapshot.tags_in_history, repo_cfg.tag_prefix,
                                             req.bump)  # type: ignore[arg-type]
            except VersionError as exc:
                await refuse(str(exc), str(exc))
                return None
            twin = await _just_made(services, req.kind, snapshot.head_sha)
            if twin is not None and not req.dry_run:
                await refuse(f"`{twin.tag}` was just created of this same commit "
                             f"`{snapshot.head_sha[:10]}` (by {messages.mention(twin.requester)}"
                             "), so I took this as a double submission and made no other. "
                             f"Follow it in {messages.channel_ref(config.slack.channel)}.",
                             f"double submission of {twin.tag}")
                return None
            tag = version.tag(repo_cfg.tag_prefix)
            if tag in snapshot.all_tags:
                sha = snapshot.all_tags[tag][:10]
                await refuse(f"Tag `{tag}` already exists on commit `{sha}`, outside the "
                             f"history of `{branch}`, so I did not create it. Delete "
                             "that tag or choose another version with `--bump`.",
                             f"tag {tag} exists")
                return None
            first_env = config.first_environment.name
            if req.dry_run:
                gates = [g.name for g in config.gates_for(first_env)]
                blocks = messages.dry_run(tag, snapshot.head_sha, snapshot.head_subject,
                                          branch, first_env, gates)
                await store.audit(req.actor, "rc.dry-run", release=str(version),
                                  reason=f"would tag {tag} on {snapshot.head_sha}")
                await notifier.answer(req.response_url, blocks, f"Dry run: would tag {tag}")
                return None
            candidate = releases.new_release(
                config, version=str(version), tag=tag, sha=snapshot.head_sha,
                requester=req.user_id, requester_name=req.user_name,
                description=req.description, issue=req.issue, now=store.clock(),
                kind=req.kind)
            release = await _tag_and_record(services, req, candidate, refuse)
    except LockHeld as exc:
        await notifier.answer(req.response_url, messages.problem(
            f"{messages.mention(exc.info.holder)} is creating a release candidate right now. "
            "Try again in a minute."), "Another release candidate is being created")
        return None
    if release is None:
        return None
    repair_note = ""
    if repaired:
        repair_note = (f"My clone of the repository was damaged ({repaired}); I cloned it "
                       "again before tagging.")
        log.warning("the clone of %s was damaged (%s) and was cloned again", repo_cfg.url,
                    repaired)
        await store.audit(req.actor, "repository.reclone", release=release.version,
                          reason=repaired[:500])
        await notifier.thread(release.version, messages.note(f"🔧 {repair_note}"),
                              "The clone was repaired")
    if hotfix:
        await notifier.thread(release.version, messages.note(
            f"🚑 *HOTFIX* from `{branch}`, with its own gates and approvals. "
            f"{messages.mention(release.requester)}: review it afterwards (what broke, why the "
            "normal path was skipped, the follow-up issue)."), "Hotfix: review it afterwards")
    try:
        await enqueue_deploy(services, release, config.first_environment.name, req.actor)
    except Exception as exc:
        log.exception("could not queue the deploy of %s", release.version)
        text = (f"Created `{release.tag}`, but I could not start its deploy to "
                f"*{config.first_environment.name}* ({type(exc).__name__}). Make a new "
                "candidate with `/release rc` once `/release status` answers again.")
        await notifier.answer(req.response_url, messages.problem(text), text)
        return release
    text = (f"Created `{release.tag}`; deploying to *{config.first_environment.name}*. "
            f"Follow it in {messages.channel_ref(config.slack.channel)}.")
    await notifier.answer(req.response_url, messages.note(
        f"{text}\n🔧 {repair_note}" if repair_note else text), f"Created {release.tag}")
    return release


async def _just_made(services: Services, kind: str, sha: str) -> Release | None:
    """An open candidate of `kind` made of `sha` moments ago, if any."""
    since = services.store.clock() - DOUBLE_SUBMISSION_SECONDS
    return next((r for r in await services.store.releases_in_flight()
                 if r.kind == kind and r.sha == sha and r.created_at >= since), None)


def _tag_message(release: Release) -> str:
    lines = [f"Release candidate {release.tag}",
             "",
             f"Requested-by: {release.requester_name} ({release.requester})"]
    if release.description:
        lines.append(f"Description: {release.description}")
    if release.issue:
        lines.append(f"Issue: {release.issue}")
    return "\n".join(lines)


async def _tag_and_record(services: Services, req: RcRequest, release: Release,
                          refuse: Any) -> Release | None:
    """Record, tag, push, announce: all of it or none of it. Any exception after the record is
    created undoes what was done (the pushed tag, the record) before it is answered."""
    store, notifier, config = services.store, services.notifier, services.config
    repo_cfg = config.repository
    try:
        await store.create_release(release, req.actor)
    except TransitionError:
        await refuse(f"`{release.tag}` is already recorded by the bot. Check "
                     "`/release status`.", f"{release.version} already recorded")
        return None
    pushed = False
    try:
        try:
            await asyncio.to_thread(gitrepo.create_and_push_tag, services.clone_path,
                                    repo_cfg.remote, release.tag, release.sha,
                                    _tag_message(release))
        except gitrepo.GitError as exc:
            await _undo_candidate(services, release, req, pushed=False,
                                  reason=f"tag not pushed: {exc}")
            hint = ("Someone else may have created it; try again to get the next number."
                    if isinstance(exc, gitrepo.TagExists)
                    else "Check that the bot may push tags to the repository.")
            await refuse(f"I could not push `{release.tag}`, so no release was created.\n"
                         f"{messages.code_block(str(exc))}\n{hint}", f"push failed: {exc}")
            return None
        pushed = True
        posted = await notifier.post(config.slack.channel,
                                     messages.release_message(release, config),
                                     messages.release_fallback_text(release))
        channel = posted.get("channel") if posted else None
        ts = posted.get("ts") if posted else None
        release, _ = await store.update_release(
            release.version, partial(releases.activate, channel=channel, message_ts=ts),
            req.actor, "release.tag", reason=f"{release.tag} on {release.sha}")
    except Exception as exc:
        log.exception("creating %s failed after its record was made", release.version)
        await _undo_candidate(services, release, req, pushed=pushed,
                              reason=f"{type(exc).__name__}: {exc}"[:500])
        gone = f" I removed `{release.tag}` again." if pushed else ""
        await refuse(f"Something failed while creating `{release.tag}` "
                     f"({type(exc).__name__}), so no release was created.{gone} Try again.",
                     "recording failed")
        return None
    if posted is None:
        await notifier.answer(req.response_url, messages.problem(
            f"`{release.tag}` is tagged, but I could not post in "
            f"{messages.channel_ref(config.slack.channel)}. Invite me there (`/invite "
            "@releasebot`) or fix `slack.channel` in the config."), "could not post")
    else:
        await notifier.thread(release.version, messages.note(
            f"Tagged `{release.tag}` on `{release.sha[:10]}` for "
            f"{messages.mention(release.requester)}."), f"Tagged {release.tag}")
    try:
        await supersede_older(services, release, req.actor)
    except Exception:
        # The candidate stands; older ones are never promoted past it (/release final takes
        # the newest), their approvals are just not marked void yet.
        log.exception("superseding candidates older than %s failed", release.version)
    return release


async def _undo_candidate(services: Services, release: Release, req: RcRequest, *,
                          pushed: bool, reason: str) -> None:
    """Take back a candidate that did not come to be: its tag, if pushed, and its record.
    Each part is tried on its own; a record left behind (Redis gone) is replaced by the next
    candidate of that version, since only one creator runs at a time (the repository lock)."""
    if pushed:
        try:
            await asyncio.to_thread(gitrepo.delete_remote_tag, services.clone_path,
                                    services.config.repository.remote, release.tag)
        except Exception:
            log.exception("could not remove the tag %s again", release.tag)
    for attempt in range(3):
        try:
            await services.store.discard_release(release.version, req.actor, reason)
            return
        except Exception:
            if attempt == 2:
                log.exception("could not discard the record of %s", release.version)
            await asyncio.sleep(0.2 * (attempt + 1))


async def supersede_older(services: Services, newer: Release, actor: Actor) -> None:
    """A newer candidate voids the pending approvals of older ones of its kind."""
    for older in await services.store.releases_in_flight():
        if older.version == newer.version or older.kind != newer.kind:
            continue
        try:
            await services.store.update_release(
                older.version, partial(approvals.supersede, newer=newer.tag), actor,
                "release.supersede", reason=f"superseded by {newer.tag}")
        except TransitionError:
            continue  # promoted or superseded meanwhile
        services.notifier.refresh(older.version)
        await services.notifier.thread(older.version, messages.note(
            f"⏭️ Superseded by `{newer.tag}`: approvals of this candidate no longer count."),
            f"Superseded by {newer.tag}")


# --- deploys -----------------------------------------------------------------------------------

async def deploy(ctx: dict[str, Any], *, version: str, environment: str, deploy_id: str,
                 actor: dict[str, str] | None = None) -> None:
    services: Services = ctx["services"]
    await run_deploy(services, version, environment, deploy_id,
                     Actor(**actor) if actor else BOT, job=ctx.get("job"))


def _command_env(release: Release, environment: str, config: Config) -> dict[str, str]:
    version, tag = release.tag_for(environment, config.last_environment.name)
    return {"RELEASE_VERSION": version, "RELEASE_TAG": tag, "RELEASE_SHA": release.sha,
            "RELEASE_ENV": environment}


async def run_deploy(services: Services, version: str, environment: str, deploy_id: str,
                     actor: Actor = BOT, job: Any = None) -> None:
    """Deploy on behalf of `actor` (who asked for it: the audit entries name them)."""
    store, config = services.store, services.config
    env = config.environment(environment)
    release = await store.get_release(version)
    if release is None:
        log.warning("deploy %s: no release %s", deploy_id, version)
        return
    _, tag = release.tag_for(environment, config_last(services))
    target = deploys.Target(
        kind="release", deploy_id=deploy_id, environment=env, subject=version,
        holder=release.requester, reason=f"deploying {tag}",
        on_stopped=partial(report_lost_deploy, services, version, deploy_id, environment,
                           message=f"The worker was stopped while deploying `{tag}` to "
                                   f"*{environment}*; the deploy command was killed and the "
                                   f"deploy is marked *failed*. Check *{environment}* before "
                                   "deploying again."))
    try:
        async with deploys.deploying(services, target, job) as running:
            live = await _deploy_locked(services, release, running, actor)
        if live is not None:
            # After the lock is released: whoever reads "live" (and rolls back at once) finds
            # the environment free.
            await _go_live(services, live, environment, actor)
    except deploys.EnvironmentBusy as exc:
        holder = exc.info
        await _not_started(services, version, deploy_id, environment, actor,
                           detail=f"locked by {holder.holder}",
                           reason=f"{environment} held by {holder.holder}: {holder.reason}",
                           blocks=messages.environment_busy(environment, holder),
                           text=f"{environment} is busy")
    except deploys.GivenUp as exc:
        text = (f"The deploy of `{tag}` to *{environment}* was not run: {exc}. It was "
                "reported to you as failed or stuck meanwhile, so it is not run late; deploy "
                "again if it is still wanted.")
        await _not_started(services, version, deploy_id, environment, actor, detail=str(exc),
                           reason=str(exc), blocks=messages.problem(text), text=text)


async def _not_started(services: Services, version: str, deploy_id: str, environment: str,
                       actor: Actor, *, detail: str, reason: str,
                       blocks: list[messages.Block], text: str) -> None:
    store = services.store
    with contextlib.suppress(TransitionError):
        await store.update_release(
            version, partial(releases.block_deploy, deploy_id=deploy_id, now=store.clock(),
                             detail=detail),
            actor, "deploy.start", environment=environment, outcome="blocked", reason=reason)
    await services.notifier.thread(version, blocks, text)
    services.notifier.refresh(version)


def _finish(release: Release, *, deploy_id: str, now: float,
            result: CommandResult) -> tuple[releases.Deploy, bool]:
    """The worker's outcome, and whether it corrects a "worker lost" report made meanwhile."""
    was_lost = releases.find_deploy(release, deploy_id).lost
    deploy = releases.finish_deploy(release, deploy_id, now, ok=result.ok,
                                    detail=result.summary())
    return deploy, was_lost


async def _deploy_locked(services: Services, release: Release, running: deploys.Deploy,
                         actor: Actor) -> Release | None:
    """The deploy and its gates under the lock; returns the release if it is now to be
    marked live (a promoted release in the last environment)."""
    store, notifier, config = services.store, services.notifier, services.config
    env, deploy_id = running.target.environment, running.target.deploy_id
    version, tag = release.tag_for(env.name, config_last(services))
    try:
        release, _ = await store.update_release(
            release.version, partial(releases.start_deploy, deploy_id=deploy_id,
                                     now=store.clock()),
            actor, "deploy.start", environment=env.name)
    except TransitionError as exc:
        # Not queued any more (a re-delivered job, or reported lost): never run it again.
        log.warning("deploy %s not started: %s", deploy_id, exc)
        return
    notifier.refresh(release.version)
    await notifier.thread(release.version, messages.note(
        f"⏳ Deploying `{tag}` to *{env.name}*…"), f"Deploying to {env.name}")
    try:
        await running.checkout(tag, release.sha)
    except gitrepo.GitError as exc:
        result = deploys.checkout_failed(tag, exc)
    else:
        result = await running.run(env.deploy_command,
                                   _command_env(release, env.name, config), env.command_env,
                                   env.timeout_seconds)
    finished_at = store.clock()
    outcome = "succeeded" if result.ok else "failed"
    try:
        release, (deploy, corrected) = await deploys.durably(
            services, f"the outcome of deploy {deploy_id}", store.update_release,
            release.version, partial(_finish, deploy_id=deploy_id, now=finished_at,
                                     result=result),
            actor, "deploy.finish", environment=env.name, outcome=outcome,
            reason=result.summary())
    except releases.NoChange:
        # Written by an attempt whose reply was lost on the way back.
        release = await store.get_release(release.version) or release
        deploy, corrected = releases.find_deploy(release, deploy_id), False
    except deploys.NotRecorded as exc:
        await _outcome_not_recorded(services, release, env.name, tag, result, str(exc))
        return
    except TransitionError as exc:
        log.warning("deploy %s finished, but its record moved on: %s", deploy_id, exc)
        return
    if corrected:
        await notifier.thread(release.version, messages.note(
            f"↩️ The deploy to *{env.name}* was reported lost while its worker was not "
            "answering (frozen, or cut off from Redis); the worker is back, and this is what "
            f"really happened: it {outcome}."),
            f"Deploy to {env.name}: the real outcome")
    if result.ok:
        before = (await store.environment_versions([env.name]))[env.name]
        if await store.set_environment_version(env.name, version, tag, release.sha,
                                               release.version, deployed_at=finished_at):
            await monitor.deploy_finished(services, env.name, version, release.version,
                                          before.get("version", ""))
    else:
        await monitor.deploy_failed(services, env.name, release.version, tag,
                                    result.summary())
    await notifier.thread(release.version, messages.deploy_outcome(tag, env.name, result),
                          f"Deploy to {env.name} {deploy.status}")
    notifier.refresh(release.version)
    if not result.ok:
        return
    if not await running.hold() or not await _still_runs(services, env.name, release.version):
        await notifier.thread(release.version, messages.problem(
            f"The gates of `{tag}` in *{env.name}* were not run: the worker lost the "
            f"environment lock while Redis was unreachable, and *{env.name}* has moved on. "
            "Deploy again to run them."), "Gates not run")
        return
    await _run_gates(services, release, env.name, running, actor)
    return release if release.final_tag and env.name == config_last(services) else None


async def _go_live(services: Services, release: Release, environment: str,
                   actor: Actor) -> None:
    _, tag = release.tag_for(environment, config_last(services))
    with contextlib.suppress(TransitionError):
        await services.store.update_release(release.version, releases.go_live, actor,
                                            "release.live", environment=environment)
        services.notifier.refresh(release.version)
        await services.notifier.thread(release.version, messages.note(
            f"🎉 `{tag}` is live in *{environment}*."), f"{tag} is live")


async def _still_runs(services: Services, environment: str, version: str) -> bool:
    """Whether `environment` still runs what release `version` deployed (nobody deployed
    since): the gates check what is there."""
    current = (await services.store.environment_versions([environment]))[environment]
    return current.get("release") == version


async def _outcome_not_recorded(services: Services, release: Release, environment: str,
                                tag: str, result: CommandResult, why: str) -> None:
    """Redis stayed away: say what happened where people look, from what this worker holds."""
    outcome = "succeeded" if result.ok else "failed"
    log.error("deploy of %s to %s %s, but the outcome could not be recorded: %s",
              tag, environment, outcome, why)
    if release.channel and release.message_ts:
        text = (f"The deploy of `{tag}` to *{environment}* {outcome} ({result.summary()}), "
                f"but I could not record it: {why}. What I show for this release may be "
                f"wrong until someone checks *{environment}*.")
        await services.notifier.post(release.channel, messages.problem(text), text,
                                     thread_ts=release.message_ts)


async def report_lost_deploy(services: Services, version: str, deploy_id: str,
                             environment: str, detail: str, *, message: str) -> bool:
    """A deploy that did not end normally (its worker died, or is shutting down) is failed,
    in its thread and on the health page; never re-run. False if it finished meanwhile."""
    store = services.store
    try:
        release, _ = await store.update_release(
            version, partial(releases.report_lost, deploy_id=deploy_id, now=store.clock(),
                             detail=detail),
            BOT, "deploy.finish", environment=environment, outcome="failed", reason=detail)
    except TransitionError:
        return False  # finished meanwhile, or already reported by another replica
    await monitor.deploy_failed(services, environment, version, release.tag, detail)
    await services.notifier.thread(version, messages.problem(message),
                                   f"Deploy to {environment} lost")
    services.notifier.refresh(version)
    return True


async def _run_gates(services: Services, release: Release, environment: str,
                     running: deploys.Deploy, actor: Actor) -> None:
    store, notifier = services.store, services.notifier
    gates: list[GateConfig] = [g for g in services.config.gates_for(environment)
                               if g.automatic]
    for gate_cfg in gates:
        try:
            release, gate = await store.update_release(
                release.version, partial(releases.start_gate, gate_id=gate_cfg.id,
                                         now=store.clock()),
                actor, "gate.start", environment=environment, reason=gate_cfg.id)
        except TransitionError:
            continue
        notifier.refresh(release.version)
        if gate_cfg.check == "flags-ready":
            assert running.worktree is not None
            result = await flag_jobs.flags_ready(services, running.worktree)
        else:
            assert gate_cfg.command is not None
            result = await running.run(gate_cfg.command,
                                       _command_env(release, environment, services.config),
                                       services.config.gate_env(gate_cfg),
                                       gate_cfg.timeout_seconds)
        finished_at = store.clock()
        release, gate = await deploys.durably(
            services, f"gate {gate_cfg.id} of {release.version}", store.update_release,
            release.version, partial(releases.finish_gate, gate_id=gate_cfg.id,
                                     now=finished_at, ok=result.ok, detail=result.summary()),
            actor, "gate.finish", environment=environment,
            outcome="passed" if result.ok else "failed", reason=gate_cfg.id)
        notifier.refresh(release.version)
        await notifier.thread(release.version, messages.gate_outcome(release, gate, result),
                              f"{gate.name} {gate.status}")
        if result.error == deploys.LOCK_LOST:
            break  # the environment is not ours any more: no further gate runs in it


# --- /release final ---------------------------------------------------------------------------

@dataclass(frozen=True)
class FinalRequest:
    version: str  # the candidate to promote
    user_id: str
    user_name: str
    channel_id: str
    response_url: str | None
    description: str = ""
    issue: str | None = None

    @property
    def actor(self) -> Actor:
        return Actor(self.user_id, self.user_name, self.channel_id)


async def enqueue_promotion(services: Services, request: FinalRequest) -> None:
    # One promotion job per candidate, however often /release final is typed.
    await services.queue.enqueue(PROMOTE, request=asdict(request),
                                 key=f"promote-{request.version}", timeout=600, retries=1)


async def promote(ctx: dict[str, Any], *, request: dict[str, Any]) -> None:
    services: Services = ctx["services"]
    req = FinalRequest(**request)
    try:
        await run_promotion(services, req)
    except Exception as exc:
        log.exception("the promotion of %s failed", req.version)
        text = (f"Something went wrong while promoting ({type(exc).__name__}). Check "
                "`/release status` and try `/release final` again.")
        await services.notifier.answer(req.response_url, messages.problem(text), text)


def final_tag_message(release: Release, final_tag: str, state: approvals.Readiness,
                      req: FinalRequest, gate_names: dict[str, str]) -> str:
    """The final tag's annotation: git itself keeps who approved what, and when."""
    lines = [f"Release {final_tag} (from {release.tag})", "",
             f"Promoted-by: {req.user_name} ({req.user_id})",
             f"Requested-by: {release.requester_name} ({release.requester})"]
    if req.description or release.description:
        lines.append(f"Description: {req.description or release.description}")
    if req.issue or release.issue:
        lines.append(f"Issue: {req.issue or release.issue}")
    for gate in release.gates:
        for approval in gate.approvals:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(approval.at))
            lines.append(f"Approved-by: {approval.user_name} ({approval.user_id}) "
                         f"gate={gate.id} ({gate_names.get(gate.id, gate.name)}) at={when}")
    return "\n".join(lines)


async def run_promotion(services: Services, req: FinalRequest) -> None:
    store, notifier, config = services.store, services.notifier, services.config
    repo_cfg = config.repository
    final_version = str(semver.Version.parse(req.version).finalize_version())
    final_tag = f"{repo_cfg.tag_prefix}{final_version}"
    try:
        release, state = await store.update_release(
            req.version, partial(approvals.start_promotion, config=config, now=store.clock(),
                                 final_version=final_version),
            req.actor, "release.promote", environment=config_last(services),
            outcome="started", reason=f"as {final_tag}")
    except TransitionError as exc:
        await store.audit(req.actor, "release.promote", release=req.version,
                          outcome="refused", reason=str(exc))
        await notifier.answer(req.response_url, messages.problem(str(exc)), str(exc))
        return
    notifier.refresh(release.version)
    pushed = False
    try:
        message = final_tag_message(release, final_tag, state, req,
                                    {g.id: g.name for g in config.gates})
        await asyncio.to_thread(gitrepo.sync_tags, repo_cfg.url, services.clone_path,
                                repo_cfg.remote)
        await asyncio.to_thread(gitrepo.create_and_push_tag, services.clone_path,
                                repo_cfg.remote, final_tag, release.sha, message)
        pushed = True
        release, _ = await store.update_release(
            release.version, partial(approvals.finish_promotion, final_tag=final_tag),
            req.actor, "release.final-tag", environment=config_last(services),
            reason=f"{final_tag} on {release.sha}")
    except Exception as exc:
        # Not only GitError: whatever failed, the candidate goes back to where it was (never
        # left "being promoted"), and a final tag pushed without its record is taken back.
        if not isinstance(exc, gitrepo.GitError):
            log.exception("promoting %s failed", release.version)
        if pushed:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(gitrepo.delete_remote_tag, services.clone_path,
                                        repo_cfg.remote, final_tag)
        detail = str(exc) if isinstance(exc, gitrepo.GitError) else type(exc).__name__
        try:
            await store.update_release(release.version, approvals.abandon_promotion,
                                       req.actor, "release.promote", outcome="failed",
                                       reason=detail[:500])
        except Exception:
            log.exception("could not put %s back after a failed promotion", release.version)
        text = (f"I could not tag `{final_tag}`, so {release.tag} was not promoted.\n"
                f"{messages.code_block(detail)}")
        await notifier.thread(release.version, messages.problem(text), "Promotion failed")
        await notifier.answer(req.response_url, messages.problem(text), "Promotion failed")
        notifier.refresh(release.version)
        return
    who = ", ".join(messages.mention(a.user_id) for a in state.approvers) or "nobody needed"
    await notifier.thread(release.version, messages.note(
        f"🏁 {messages.mention(req.user_id)} promoted `{release.tag}` as `{final_tag}` "
        f"(same commit `{release.sha[:10]}`; approved by {who}). Deploying to "
        f"*{config_last(services)}*…"), f"Promoted as {final_tag}")
    await enqueue_deploy(services, release, config_last(services), req.actor)
    await notifier.answer(req.response_url, messages.note(
        f"Promoting `{release.tag}` as `{final_tag}`; follow it in "
        f"{messages.channel_ref(config.slack.channel)}."), f"Promoting {final_tag}")
