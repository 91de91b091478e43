"""/release final: promote the approved candidate, tagging its very commit as the final
version, and queue its deploy to the last environment."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Protocol

import semver

from bot.blocks import release as messages
from bot.domain import approvals
from bot.domain.actors import Actor
from bot.domain.changes import Changeset, grouped_lines, summary_line
from bot.domain.releases import Release, TransitionError
from bot.services import deploy_windows, permissions, release_changes
from bot.services.deploy_release import DeployNeeds, enqueue_deploy
from bot.services.ports import GitError, HasClock, HasUserDirectory
from bot.services.version_history import push_tag, take_back_tag

log = logging.getLogger(__name__)


class PromotionNeeds(DeployNeeds, HasClock, Protocol):
    """Tagging the final version, then queueing its deploy."""


class FinalNeeds(PromotionNeeds, HasUserDirectory, Protocol):
    """Asking for a promotion: who may deploy to the last environment is checked first
    (`deployers`, user groups through Slack)."""


PROMOTE = "promote"


@dataclass(frozen=True)
class FinalRequest:
    version: str  # the candidate to promote
    user_id: str
    user_name: str
    channel_id: str
    response_url: str | None
    description: str = ""
    issue: str | None = None
    # Queued for the next opening of the closed last environment (`--when-open`): its
    # approvals and the window are checked again when it runs.
    when_open: bool = False

    @property
    def actor(self) -> Actor:
        return Actor(self.user_id, self.user_name, self.channel_id)


async def enqueue_promotion(
    services: PromotionNeeds, request: FinalRequest, at: float | None = None
) -> None:
    # One promotion job per candidate, however often /release final is typed; the queue
    # runs a job once, on one worker, however many replicas there are (`at`: not before).
    scheduled = {"scheduled": int(at) + 1} if at is not None else {}
    await services.queue.enqueue(
        PROMOTE,
        request=asdict(request),
        key=f"promote-{request.version}",
        timeout=600,
        retries=1,
        **scheduled,
    )


async def promote_candidate(services: PromotionNeeds, req: FinalRequest) -> None:
    """Promote; whatever happens, the requester hears."""
    try:
        await run_promotion(services, req)
    except Exception as exc:
        log.exception("the promotion of %s failed", req.version)
        text = (
            f"Something went wrong while promoting ({type(exc).__name__}). Check "
            "`/release status` and try `/release final` again."
        )
        await services.chat.answer(req.response_url, messages.problem(text), text)


def final_tag_message(
    release: Release,
    final_tag: str,
    req: FinalRequest,
    gate_names: dict[str, str],
    changes: Changeset | None = None,
    show: int = 20,
) -> str:
    """The final tag's annotation: git itself keeps who approved what, and when."""
    kind = "HOTFIX" if release.kind == "hotfix" else "Release"
    lines = [
        f"{kind} {final_tag} (from {release.tag})",
        "",
        f"Promoted-by: {req.user_name} ({req.user_id})",
        f"Requested-by: {release.requester_name} ({release.requester})",
    ]
    if req.description or release.description:
        lines.append(f"Description: {req.description or release.description}")
    if req.issue or release.issue:
        lines.append(f"Issue: {req.issue or release.issue}")
    for gate in release.gates:
        for approval in gate.approvals:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(approval.at))
            lines.append(
                f"Approved-by: {approval.user_name} ({approval.user_id}) "
                f"gate={gate.id} ({gate_names.get(gate.id, gate.name)}) at={when}"
            )
    override = release.override
    if override is not None and override.granted:
        # Through a closed last environment: git keeps who asked, why, and who approved.
        approved = ", ".join(f"{a.user_name} ({a.user_id})" for a in override.approvals)
        lines.append(
            f"EMERGENCY-override: asked-by={override.user_name} ({override.user_id}) "
            f"approved-by={approved} reason={override.reason}"
        )
    for gate in release.gates:
        # A gate that failed and was let through says so in git too, with who and why.
        if gate.status == "waived" and gate.waiver is not None:
            w = gate.waiver
            approved = ", ".join(f"{a.user_name} ({a.user_id})" for a in w.approvals)
            lines.append(
                f"Waived: gate={gate.id} ({gate_names.get(gate.id, gate.name)}) "
                f"asked-by={w.user_name} ({w.user_id}) approved-by={approved} reason={w.reason}"
            )
    if changes is not None:
        # After the approvers: what they approved, kept in the repository as well.
        since = changes.base.replace("`", "") or "the start"  # Slack's code marks, not git's
        lines += ["", f"Changes since {since}: {summary_line(changes)}"]
        if changes.note:
            lines.append(f"  ({changes.note})")
        lines += grouped_lines(changes, show)
    return "\n".join(lines)


async def run_promotion(services: PromotionNeeds, req: FinalRequest) -> None:
    store, notifier, config = services.store, services.chat, services.config
    repo_cfg = config.repository
    final_version = str(semver.Version.parse(req.version).finalize_version())
    final_tag = f"{repo_cfg.tag_prefix}{final_version}"
    last = config.last_environment.name
    # Checked again as it runs: a freeze may have begun since it was asked for (or, asked
    # for --when-open, another one may hold now). An approved EMERGENCY override goes.
    asked = await store.get_release(req.version)
    overridden = asked is not None and asked.override is not None and asked.override.granted
    shut = await deploy_windows.closed(services, last, overridden=overridden)
    if shut is not None:
        text = deploy_windows.closed_text(services, last, shut)
        await _not_promoted(services, req, f"{text} `{final_tag}` was not made.", text)
        return
    try:
        release, state = await store.update_release(
            req.version,
            partial(
                approvals.start_promotion,
                config=config,
                now=store.clock(),
                final_version=final_version,
            ),
            req.actor,
            "release.promote",
            environment=services.config.last_environment.name,
            outcome="started",
            reason=f"{'EMERGENCY ' if overridden else ''}as {final_tag}",
        )
    except TransitionError as exc:
        await _not_promoted(services, req, str(exc), str(exc))
        return
    notifier.refresh(release.version)
    pushed = False
    try:
        try:
            changes: Changeset | None = await release_changes.release_changes(services, release)
        except Exception:  # the tag is made all the same, without its list
            log.warning("reading the changes of %s failed", release.version, exc_info=True)
            changes = None
        message = final_tag_message(
            release,
            final_tag,
            req,
            {g.id: g.name for g in config.gates},
            changes,
            config.changes.show,
        )
        await services.git.sync_tags()
        await push_tag(services, final_tag, release.sha, message)
        pushed = True
        release, _ = await store.update_release(
            release.version,
            partial(approvals.finish_promotion, final_tag=final_tag),
            req.actor,
            "release.final-tag",
            environment=services.config.last_environment.name,
            # A hotfix stays marked as one on the trail, as in its header and its tag.
            reason=f"{'HOTFIX ' if release.kind == 'hotfix' else ''}{final_tag} on {release.sha}",
        )
    except Exception as exc:
        # Not only GitError: whatever failed, the candidate goes back to where it was (never
        # left "being promoted"), and a final tag pushed without its record is taken back.
        if not isinstance(exc, GitError):
            log.exception("promoting %s failed", release.version)
        if pushed:
            with contextlib.suppress(Exception):
                await take_back_tag(services, final_tag)
        detail = str(exc) if isinstance(exc, GitError) else type(exc).__name__
        try:
            await store.update_release(
                release.version,
                approvals.abandon_promotion,
                req.actor,
                "release.promote",
                outcome="failed",
                reason=detail[:500],
            )
        except Exception:
            log.exception("could not put %s back after a failed promotion", release.version)
        text = (
            f"I could not tag `{final_tag}`, so {release.tag} was not promoted.\n"
            f"{messages.code_block(detail)}"
        )
        await notifier.thread(release.version, messages.problem(text), "Promotion failed")
        await notifier.answer(req.response_url, messages.problem(text), "Promotion failed")
        notifier.refresh(release.version)
        return
    who = ", ".join(messages.mention(a.user_id) for a in state.approvers) or "nobody needed"
    await notifier.thread(
        release.version,
        messages.note(
            f"🏁 {messages.mention(req.user_id)} promoted `{release.tag}` as `{final_tag}` "
            f"(same commit `{release.sha[:10]}`; approved by {who}). Deploying to "
            f"*{services.config.last_environment.name}*…"
        ),
        f"Promoted as {final_tag}",
    )
    await enqueue_deploy(services, release, services.config.last_environment.name, req.actor)
    await notifier.answer(
        req.response_url,
        messages.note(
            f"Promoting `{release.tag}` as `{final_tag}`; follow it in "
            f"{messages.channel_ref(config.slack.channel)}."
        ),
        f"Promoting {final_tag}",
    )


async def _not_promoted(
    services: PromotionNeeds, req: FinalRequest, text: str, reason: str
) -> None:
    """A promotion that does not go as it runs: audited, and said to who asked (in the
    release's thread too when it was queued for an opening: its answer link has expired)."""
    await services.store.audit(
        req.actor, "release.promote", release=req.version, outcome="refused", reason=reason[:500]
    )
    await services.chat.answer(req.response_url, messages.problem(text), text)
    if req.when_open:
        await services.chat.thread(
            req.version,
            messages.problem(
                f"{messages.mention(req.user_id)}, the promotion asked for when it opened did "
                f"not go: {text} Ask again with `/release final` once it can."
            ),
            "Promotion did not go",
        )


async def request_promotion(
    services: FinalNeeds,
    actor: Actor,
    response_url: str | None,
    request_id: str,
    *,
    description: str = "",
    issue: str | None = None,
    when_open: bool = False,
    emergency: str = "",
) -> str:
    """`/release final`: queue the promotion of the newest open candidate (once per
    command, however often Slack delivers it), or say what it still lacks; with `when_open`,
    while the last environment is closed, queue it for its next opening; with `emergency`
    (its reason), ask for an EMERGENCY override of the closure (bot.services.emergency)."""
    candidates = [
        r for r in await services.store.releases_in_flight() if approvals.is_open_candidate(r)
    ]
    if not candidates:
        return "There is no open release candidate to promote; `/release rc` makes one."
    release = candidates[-1]
    last = services.config.last_environment.name
    # A hotfix's promotion too: whatever the path, it ends in the last environment.
    refused = await permissions.refusal(
        services,
        permissions.to_deploy_last(services.config, "release.promote"),
        actor,
        release=release.version,
        environment=last,
    )
    if refused is not None:
        return f":no_entry: {refused} `{release.tag}` was not promoted."
    state = approvals.readiness(release, services.config, services.store.clock())
    if not state.ready:
        await services.store.audit(
            actor,
            "release.promote",
            release=release.version,
            outcome="refused",
            reason="; ".join(state.missing),
        )
        return f":warning: `{release.tag}` is not ready for *{last}*:\n• " + "\n• ".join(
            state.missing
        )
    # An approved EMERGENCY override goes through the closure.
    overridden = release.override is not None and release.override.granted
    shut = await deploy_windows.closed(services, last, overridden=overridden)
    if shut is not None and emergency:
        from bot.services import emergency as override  # it promotes through this module

        return await override.ask(services, actor, release, emergency, shut)
    request = FinalRequest(
        version=release.version,
        user_id=actor.user_id,
        user_name=actor.user_name,
        channel_id=actor.channel,
        response_url=response_url,
        description=description,
        issue=issue,
    )
    if shut is not None and when_open and shut.opens_at is not None:
        text = deploy_windows.closed_text(services, last, shut)
        if await services.store.first_time(f"command:{request_id}"):
            await enqueue_promotion(
                services, replace(request, when_open=True), at=shut.opens_at.timestamp()
            )
            await services.store.audit(
                actor,
                "release.promote",
                release=release.version,
                environment=last,
                outcome="scheduled",
                reason=text[:500],
            )
            await services.chat.thread(
                release.version,
                messages.note(
                    f"⏰ {messages.mention(actor.user_id)} asked to promote `{release.tag}` when "
                    f"*{last}* opens: {text} Its approvals are checked again then."
                ),
                f"{release.tag} waits for {last} to open",
            )
        return (
            f"⏰ {text} `{release.tag}` will be promoted then, its approvals checked again "
            "at that moment."
        )
    if shut is not None:
        text = deploy_windows.closed_text(services, last, shut)
        await services.store.audit(
            actor,
            "release.promote",
            release=release.version,
            environment=last,
            outcome="refused",
            reason=text[:500],
        )
        return (
            f"⏸ {text} `{release.tag}` was not promoted; ask again once it opens, or "
            "`/release final --when-open` to promote it then. Rollbacks and kill switches "
            "still go through."
        )
    if await services.store.first_time(f"command:{request_id}"):
        await enqueue_promotion(services, request)
    return f"⏳ Promoting `{release.tag}` to *{last}*…"
