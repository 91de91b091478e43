"""/release rc and /release hotfix: tag a candidate of the branch (or the hotfix branch),
record it, announce it and queue its first deploy; all of it or none of it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Protocol

from bot.blocks import release as messages
from bot.blocks.changes import changes_blocks, changes_text
from bot.domain import approvals, releases
from bot.domain.actors import BOT, Actor
from bot.domain.changes import Changeset, summary_line
from bot.domain.locks import LockHeld
from bot.domain.releases import Release, TransitionError
from bot.domain.versions import (
    Bump,
    ReleaseVersion,
    VersionError,
    next_candidate,
    next_hotfix,
    patch_line,
)
from bot.services import ci_gates, permissions, release_changes
from bot.services.adopt_version import last_environment_version
from bot.services.deploy_release import DeployNeeds, enqueue_deploy
from bot.services.ports import (
    GitError,
    HasClock,
    HasCreationClaims,
    Snapshot,
    TagExists,
)
from bot.services.version_history import (
    push_tag,
    rebuild_version_index,
    tags_in_history,
    take_back_tag,
)

log = logging.getLogger(__name__)


class CandidateNeeds(DeployNeeds, HasCreationClaims, HasClock, Protocol):
    """Tagging a candidate, then queueing its first deploy."""


CREATE_RC = "create_rc"


@dataclass(frozen=True)
class RcRequest:
    """A `/release rc` as the handler received it (plain data, so it travels in a job)."""

    user_id: str
    user_name: str
    channel_id: str
    response_url: str | None
    description: str = ""
    issue: str | None = None
    bump: Bump | None = None
    dry_run: bool = False
    kind: str = "rc"  # or "hotfix"
    request_id: str = ""  # the command's, which holds the "being created" claim
    allow_empty: bool = False  # made even when nothing changed since production

    @property
    def actor(self) -> Actor:
        return Actor(self.user_id, self.user_name, self.channel_id)


# A /release rc this soon after a candidate was made of the same commit is a double
# submission (a double enter, a retry by hand): answered with that candidate, not a copy.
DOUBLE_SUBMISSION_SECONDS = 10

# How long a claim that a candidate is being created stands if its job never ends (a worker
# that died with it); the job itself ends the claim as soon as it is done.
CREATION_CLAIM_SECONDS = 300


@dataclass(frozen=True)
class Claim:
    request_id: str
    user_id: str
    at: float


async def claim_creation(
    services: CandidateNeeds, kind: str, request_id: str, user_id: str
) -> Claim | None:
    """Claim the creation of a candidate of `kind` for this command, before its ack; returns
    the claim that stands instead if another command was first (two /release rc moments apart
    make one candidate, and the second hears so)."""
    other = await services.creation_claims.claim(
        kind, request_id, user_id, services.store.clock(), CREATION_CLAIM_SECONDS
    )
    return None if other is None else Claim(str(other["r"]), str(other["u"]), float(other["at"]))


async def end_creation(services: CandidateNeeds, kind: str, request_id: str) -> None:
    """End this command's claim (never another's)."""
    await services.creation_claims.end(kind, request_id)


async def refuse_starter(
    services: permissions.PermissionNeeds, actor: Actor, kind: str
) -> str | None:
    """Whether `actor` may start a release of `kind` (`requesters`), before anything is
    claimed, recorded or queued: None when they may, else their answer (the refusal is
    audited). A dry run tags nothing and starts nothing: anyone may make one."""
    return await permissions.refusal(services, permissions.to_start(services.config, kind), actor)


async def enqueue_rc(services: CandidateNeeds, request: RcRequest, request_id: str) -> None:
    # The job key makes a re-delivered command a no-op even at the queue.
    await services.queue.enqueue(
        CREATE_RC, request=asdict(request), key=f"rc-{request_id}", timeout=600, retries=1
    )


async def create_release_candidate(services: CandidateNeeds, req: RcRequest) -> Release | None:
    """Tag, record, announce and deploy a candidate; whatever happens, the requester hears."""
    try:
        return await _create_release_candidate(services, req)
    except Exception as exc:
        # Each step undoes itself (see _tag_and_record); this is the answer nobody got yet.
        log.exception("creating a candidate for %s failed", req.user_id)
        text = (
            f"Something went wrong while creating the candidate ({type(exc).__name__}). "
            "Nothing half-made was left behind: `/release status` shows what there is; "
            "try again."
        )
        with contextlib.suppress(Exception):
            await services.store.audit(
                req.actor,
                "hotfix.create" if req.kind == "hotfix" else "rc.create",
                outcome="failed",
                reason=f"{type(exc).__name__}: {exc}"[:500],
            )
        await services.chat.answer(req.response_url, messages.problem(text), text)
        return None
    finally:
        if req.request_id and not req.dry_run:
            try:
                await end_creation(services, req.kind, req.request_id)
            except Exception:  # it expires by itself
                log.warning("could not end the creation claim of %s", req.request_id)


async def _create_release_candidate(services: CandidateNeeds, req: RcRequest) -> Release | None:
    notifier, store, config = services.chat, services.store, services.config
    repo_cfg = config.repository
    hotfix = req.kind == "hotfix"
    action = "hotfix.create" if hotfix else "rc.create"

    async def refuse(text: str, reason: str) -> None:
        await store.audit(req.actor, action, outcome="refused", reason=reason)
        await notifier.answer(req.response_url, messages.problem(text), text)

    repaired: str | None = None
    changes: tuple[Changeset, str] | None = None  # what it brings, read once
    release: Release | _Clash | None = None
    branch = repo_cfg.branch
    try:
        # Renewed while held; a creator that dies holds others off no longer than a dead deploy.
        # A dry run tags nothing, so it takes no lock: two hundred of them at once all get their
        # answer, and a creator is never held off by one (the clone is shared under its own
        # file lock, bot.adapters.git_clone).
        creator: contextlib.AbstractAsyncContextManager[object] = (
            contextlib.nullcontext()
            if req.dry_run
            else services.locks.repository(req.user_id, "creating a release candidate")
        )
        async with creator:
            # A push that meets a tag the index did not know (made by hand, or by a replica
            # whose index write was lost) rebuilds the index from git, and the version is
            # chosen again, once.
            for last_try in (False, True):
                choice = await _choose(services, req, refuse, may_resync=not last_try)
                if choice is None:
                    return None  # refused and answered
                if isinstance(choice, _Stale):
                    if not await _resync(services, req, refuse, "the next version"):
                        return None
                    continue
                branch, snapshot, version = choice.branch, choice.snapshot, choice.version
                repaired = choice.repaired or repaired
                tag = version.tag(repo_cfg.tag_prefix)
                first_env = config.first_environment.name
                changes = await _changes_of(services, snapshot.head_sha)
                if changes is not None and _empty(changes, req, hotfix):
                    await refuse(
                        f"Nothing changed since {changes[0].base} (`{snapshot.head_sha[:10]}` "
                        f"is what it runs), so no candidate was made. "
                        "`/release rc --allow-empty` makes one anyway.",
                        "no change since production",
                    )
                    return None
                if req.dry_run:
                    gates = [g.name for g in config.gates_for(first_env)]
                    blocks = messages.dry_run(
                        tag, snapshot.head_sha, snapshot.head_subject, branch, first_env, gates
                    )
                    if changes is not None:
                        blocks.append(
                            messages.context(
                                f"What it would bring since {changes[0].base}: "
                                f"{summary_line(changes[0])}"
                            )
                        )
                    await store.audit(
                        req.actor,
                        "rc.dry-run",
                        release=str(version),
                        reason=f"would tag {tag} on {snapshot.head_sha}",
                    )
                    await notifier.answer(req.response_url, blocks, f"Dry run: would tag {tag}")
                    return None
                candidate = releases.new_release(
                    config,
                    version=str(version),
                    tag=tag,
                    sha=snapshot.head_sha,
                    requester=req.user_id,
                    requester_name=req.user_name,
                    description=req.description,
                    issue=req.issue,
                    now=store.clock(),
                    kind=req.kind,
                )
                if changes is not None:
                    candidate = dataclasses.replace(
                        candidate,
                        changes=summary_line(changes[0]),
                        changes_base=changes[1],
                        changes_since=changes[0].base,
                    )
                release = await _tag_and_record(
                    services, req, candidate, refuse, retry_on_clash=not last_try
                )
                if release is not CLASH:
                    break
                if not await _resync(services, req, refuse, f"`{tag}`"):
                    return None
    except LockHeld as exc:
        await notifier.answer(
            req.response_url,
            messages.problem(
                f"{messages.mention(exc.info.holder)} is creating a release candidate right now. "
                "Try again in a minute."
            ),
            "Another release candidate is being created",
        )
        return None
    if not isinstance(release, Release):
        return None  # refused and answered (a clash is retried before the loop ends)
    repair_note = ""
    if repaired:
        repair_note = (
            f"My clone of the repository was damaged ({repaired}); I cloned it "
            "again before tagging."
        )
        log.warning("the clone of %s was damaged (%s) and was cloned again", repo_cfg.url, repaired)
        await store.audit(
            req.actor, "repository.reclone", release=release.version, reason=repaired[:500]
        )
        await notifier.thread(
            release.version, messages.note(f"🔧 {repair_note}"), "The clone was repaired"
        )
    if hotfix:
        await notifier.thread(
            release.version,
            messages.note(
                f"🚑 *HOTFIX* from `{branch}`, with its own gates and approvals. "
                f"{messages.mention(release.requester)}: review it afterwards (what broke, why the "
                "normal path was skipped, the follow-up issue)."
            ),
            "Hotfix: review it afterwards",
        )
    await _tell_changes(services, release, changes[0] if changes is not None else None)
    try:
        await enqueue_deploy(services, release, config.first_environment.name, req.actor)
    except Exception as exc:
        log.exception("could not queue the deploy of %s", release.version)
        text = (
            f"Created `{release.tag}`, but I could not start its deploy to "
            f"*{config.first_environment.name}* ({type(exc).__name__}). Make a new "
            "candidate with `/release rc` once `/release status` answers again."
        )
        await notifier.answer(req.response_url, messages.problem(text), text)
        return release
    text = (
        f"Created `{release.tag}`; deploying to *{config.first_environment.name}*. "
        f"Follow it in {messages.channel_ref(config.slack.channel)}."
    )
    await notifier.answer(
        req.response_url,
        messages.note(f"{text}\n🔧 {repair_note}" if repair_note else text),
        f"Created {release.tag}",
    )
    return release


@dataclass(frozen=True)
class _Choice:
    """The commit a candidate is made of, and its version."""

    branch: str
    snapshot: Snapshot
    version: ReleaseVersion
    repaired: str | None  # why the clone was made again on the way, if it was


class _Stale:
    """The clone knows a tag the version index does not: one of them is behind the remote."""


STALE = _Stale()
Refuse = Callable[[str, str], Awaitable[None]]


async def _choose(
    services: CandidateNeeds, req: RcRequest, refuse: Refuse, *, may_resync: bool
) -> _Choice | _Stale | None:
    """Read the branch and choose the next version; None when refused (answered), STALE when
    the clone and the index disagree and `may_resync`."""
    config, repo_cfg = services.config, services.config.repository
    hotfix = req.kind == "hotfix"
    branch = repo_cfg.branch
    try:
        if hotfix:
            # A hotfix is rare and made from the tags of what production runs: every tag.
            repaired = await services.git.sync_tags()
            if config.hotfix.branches:
                branch = await services.git.newest_branch(config.hotfix.branches) or branch
            snapshot = await services.git.read_head(branch)
        else:
            # The branches only: the versions come from the index, at a cost flat in the tags.
            repaired = await services.git.fetch_branches()
            snapshot = await services.git.read_head(branch)
            history = await tags_in_history(
                services, branch, snapshot.head_sha, may_rebuild=not req.dry_run
            )
    except GitError as exc:
        await refuse(
            f"I could not fetch the repository, so nothing was tagged.\n"
            f"{messages.code_block(str(exc))}\nCheck `repository.url` in the "
            "config and that the bot can read it.",
            f"fetch failed: {exc}",
        )
        return None
    try:
        if hotfix:
            production = config.last_environment.name
            live = await last_environment_version(services)
            version = next_hotfix(
                live.get("version"),
                await services.git.tags_matching(
                    patch_line(live.get("version"), repo_cfg.tag_prefix)
                ),
                repo_cfg.tag_prefix,
                production,
            )
        else:
            version = next_candidate(history, repo_cfg.tag_prefix, req.bump)
    except VersionError as exc:
        await refuse(str(exc), str(exc))
        return None
    twin = await _just_made(services, req.kind, snapshot.head_sha)
    if twin is not None and not req.dry_run:
        await refuse(
            f"`{twin.tag}` was just created of this same commit "
            f"`{snapshot.head_sha[:10]}` (by {messages.mention(twin.requester)}"
            "), so I took this as a double submission and made no other. "
            f"Follow it in {messages.channel_ref(config.slack.channel)}.",
            f"double submission of {twin.tag}",
        )
        return None
    tag = version.tag(repo_cfg.tag_prefix)
    final_tag = version.final.tag(repo_cfg.tag_prefix)
    existing = await services.git.tags_matching((tag, final_tag))
    indexed = None if hotfix else await services.versions.commit_of(tag)
    if (
        not hotfix
        and may_resync
        and ((tag in existing and indexed is None) or final_tag in existing)
    ):
        # A tag pushed by hand, one whose removal was cut short, or the final of this very
        # version, which the index must have missed.
        return STALE
    if tag in existing or indexed is not None:
        sha = (existing.get(tag) or indexed or "")[:10]
        await refuse(
            f"Tag `{tag}` already exists on commit `{sha}`, outside the "
            f"history of `{branch}`, so I did not create it. Delete "
            "that tag or choose another version with `--bump`.",
            f"tag {tag} exists",
        )
        return None
    if final_tag in existing and not hotfix:
        sha = existing[final_tag][:10]
        await refuse(
            f"`{final_tag}` is already final (on commit `{sha}`, outside the "
            f"history of `{branch}`), so I made no candidate `{tag}` of it. "
            "Choose another version with `--bump`.",
            f"{final_tag} exists",
        )
        return None
    return _Choice(branch, snapshot, version, repaired)


async def _resync(services: CandidateNeeds, req: RcRequest, refuse: Refuse, what: str) -> bool:
    """Bring the clone's tags (and, for a creator, who holds the lock, the index) up to the
    remote's after they disagreed about `what`; False when that failed (answered)."""
    try:
        if req.dry_run:
            await services.git.sync_tags()
        else:
            await rebuild_version_index(services)
    except GitError as exc:
        await refuse(
            f"{what} may already be on the repository, and I could not fetch its tags to "
            f"choose another.\n{messages.code_block(str(exc))}\nTry again.",
            f"fetch failed after a tag clash ({what}): {exc}",
        )
        return False
    return True


async def _just_made(services: CandidateNeeds, kind: str, sha: str) -> Release | None:
    """An open candidate of `kind` made of `sha` moments ago, if any."""
    since = services.store.clock() - DOUBLE_SUBMISSION_SECONDS
    return next(
        (
            r
            for r in await services.store.releases_in_flight()
            if r.kind == kind and r.sha == sha and r.created_at >= since
        ),
        None,
    )


def _tag_message(release: Release) -> str:
    lines = [
        f"Release candidate {release.tag}",
        "",
        f"Requested-by: {release.requester_name} ({release.requester})",
    ]
    if release.description:
        lines.append(f"Description: {release.description}")
    if release.issue:
        lines.append(f"Issue: {release.issue}")
    return "\n".join(lines)


class _Clash:
    """The tag was on the remote already: nothing was made, the version may be chosen again."""


CLASH = _Clash()


async def _tag_and_record(
    services: CandidateNeeds,
    req: RcRequest,
    release: Release,
    refuse: Refuse,
    *,
    retry_on_clash: bool,
) -> Release | _Clash | None:
    """Record, tag, push, announce: all of it or none of it. Any exception after the record is
    created undoes what was done (the pushed tag, the record) before it is answered. A tag
    already on the remote returns CLASH unanswered when `retry_on_clash`."""
    store, notifier, config = services.store, services.chat, services.config
    try:
        await store.create_release(release, req.actor)
    except TransitionError:
        await refuse(
            f"`{release.tag}` is already recorded by the bot. Check `/release status`.",
            f"{release.version} already recorded",
        )
        return None
    pushed = False
    try:
        try:
            await push_tag(services, release.tag, release.sha, _tag_message(release))
        except GitError as exc:
            await _undo_candidate(
                services, release, req, pushed=False, reason=f"tag not pushed: {exc}"
            )
            if isinstance(exc, TagExists) and retry_on_clash:
                log.info("%s was on the remote already; choosing the version again", release.tag)
                return CLASH
            hint = (
                "Someone else may have created it; try again to get the next number."
                if isinstance(exc, TagExists)
                else "Check that the bot may push tags to the repository."
            )
            await refuse(
                f"I could not push `{release.tag}`, so no release was created.\n"
                f"{messages.code_block(str(exc))}\n{hint}",
                f"push failed: {exc}",
            )
            return None
        pushed = True
        posted = await notifier.post(
            config.slack.channel,
            messages.release_message(release, config),
            messages.release_fallback_text(release),
        )
        channel = posted.get("channel") if posted else None
        ts = posted.get("ts") if posted else None
        release, _ = await store.update_release(
            release.version,
            partial(releases.activate, channel=channel, message_ts=ts),
            req.actor,
            "release.tag",
            reason=f"{release.tag} on {release.sha}",
        )
    except Exception as exc:
        log.exception("creating %s failed after its record was made", release.version)
        await _undo_candidate(
            services, release, req, pushed=pushed, reason=f"{type(exc).__name__}: {exc}"[:500]
        )
        gone = f" I removed `{release.tag}` again." if pushed else ""
        await refuse(
            f"Something failed while creating `{release.tag}` "
            f"({type(exc).__name__}), so no release was created.{gone} Try again.",
            "recording failed",
        )
        return None
    if posted is None:
        await notifier.answer(
            req.response_url,
            messages.problem(
                f"`{release.tag}` is tagged, but I could not post in "
                f"{messages.channel_ref(config.slack.channel)}. I try again every minute "
                "until it is posted; if Slack refuses the channel, invite me there "
                "(`/invite @releasebot`) or fix `slack.channel` in the config."
            ),
            "could not post",
        )
    else:
        await notifier.thread(
            release.version,
            messages.note(
                f"Tagged `{release.tag}` on `{release.sha[:10]}` for "
                f"{messages.mention(release.requester)}."
            ),
            f"Tagged {release.tag}",
        )
    try:
        await supersede_older(services, release, req.actor)
    except Exception:
        # The candidate stands; older ones are never promoted past it (/release final takes
        # the newest), their approvals are just not marked void yet.
        log.exception("superseding candidates older than %s failed", release.version)
    return release


async def _undo_candidate(
    services: CandidateNeeds, release: Release, req: RcRequest, *, pushed: bool, reason: str
) -> None:
    """Take back a candidate that did not come to be: its tag, if pushed, and its record.
    Each part is tried on its own; a record left behind (Redis gone) is replaced by the next
    candidate of that version, since only one creator runs at a time (the repository lock)."""
    if pushed:
        try:
            await take_back_tag(services, release.tag)
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


async def supersede_older(services: CandidateNeeds, newer: Release, actor: Actor) -> None:
    """A newer candidate voids the pending approvals of older ones of its kind."""
    for older in await services.store.releases_in_flight():
        if older.version == newer.version or older.kind != newer.kind:
            continue
        try:
            older, _ = await services.store.update_release(
                older.version,
                partial(approvals.supersede, newer=newer.tag),
                actor,
                "release.supersede",
                reason=f"superseded by {newer.tag}",
            )
        except TransitionError:
            continue  # promoted or superseded meanwhile
        services.chat.refresh(older.version)
        try:
            await ci_gates.stop_waiting(services, older, f"superseded by {newer.tag}")
        except Exception:  # superseded all the same; a gate left waiting fails at its timeout
            log.warning("could not stop the CI gates of %s waiting", older.version, exc_info=True)
        await services.chat.thread(
            older.version,
            messages.note(
                f"⏭️ Superseded by `{newer.tag}`: approvals of this candidate no longer count."
            ),
            f"Superseded by {newer.tag}",
        )


async def post_missing_messages(services: CandidateNeeds) -> int:
    """Post the message of each release in flight that has none (Slack refused or throttled
    it when the candidate was made): nothing people must see is dropped after the retries.
    Bounded by the releases in flight; returns how many were posted."""
    store, config = services.store, services.config
    posted_now = 0
    for release in await store.releases_in_flight():
        if release.message_ts is not None or release.phase != "active":
            continue
        posted = await services.chat.post(
            config.slack.channel,
            messages.release_message(release, config),
            messages.release_fallback_text(release),
        )
        if not posted or not posted.get("ts"):
            continue  # the next run tries again
        try:
            await store.update_release(
                release.version,
                partial(
                    releases.place_message,
                    channel=str(posted.get("channel") or config.slack.channel),
                    message_ts=str(posted["ts"]),
                ),
                BOT,
                "release.message",
                reason="posted late",
            )
        except TransitionError:
            continue  # another replica placed one meanwhile; this post stays unbound
        posted_now += 1
    return posted_now


# --- what it brings ---------------------------------------------------------------------------


async def _changes_of(services: CandidateNeeds, head: str) -> tuple[Changeset, str] | None:
    """The changes a candidate of `head` brings since production, and the commit they are
    counted from; None when git cannot say (the candidate is made all the same)."""
    try:
        base, label = await release_changes.production_base(services)
        return await release_changes.changes_between(services, base, head, label), base
    except Exception:
        log.warning("reading the changes of %s failed; the candidate goes without", head[:10])
        return None


def _empty(changes: tuple[Changeset, str], req: RcRequest, hotfix: bool) -> bool:
    """Nothing new since what production runs, and nobody asked for it anyway."""
    changeset, base = changes
    return (
        bool(base)
        and changeset.total == 0
        and not changeset.note
        and not (req.allow_empty or hotfix)
    )


async def _tell_changes(
    services: CandidateNeeds, release: Release, changeset: Changeset | None
) -> None:
    """The release's thread gets its changes once, and, for a candidate after another one
    of the same version, what is new since that one (its approvers saw the rest)."""
    if changeset is None:
        return  # git could not say
    cfg = services.config.changes
    try:
        blocks = changes_blocks(changeset, pr_url=cfg.pr_url, show=cfg.show, max_blocks=45)
        earlier = await release_changes.previous_candidate(services, release)
        if earlier is not None:
            since = await release_changes.changes_between(
                services, earlier.sha, release.sha, f"`{earlier.tag}`"
            )
            blocks.insert(1, messages.context(f"Since `{earlier.tag}`: {summary_line(since)}"))
        if cfg.notify_authors:
            # Mentioned, so that people whose code ships know it (only those the config
            # maps from their git email: a name is never guessed into a person).
            authors = sorted({cfg.slack_id_of(c.email) for c in changeset.changes} - {""})
            if authors:
                mentions = ", ".join(messages.mention(who) for who in authors)
                blocks.append(messages.context(f"📣 Changes by {mentions} are in this release."))
    except Exception:
        log.warning("listing the changes of %s failed", release.version, exc_info=True)
        return
    await services.chat.thread(release.version, blocks, changes_text(changeset))
