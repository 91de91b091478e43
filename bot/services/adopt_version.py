"""What an environment runs when the bot did not deploy it: adopted by hand (`/release adopt
ENV VERSION --reason`), or, for the last environment, learnt from the newest final tag of the
release branch the first time something needs it (a hotfix's base, the flags-ready gate).

Until the bot knows, it says "unknown" and how to tell it, never a wrong answer: an adopted
version is recorded in the environment's history like a deploy, marked as adopted, and
audited, so rollbacks, hotfixes and the flags-ready gate work from it.
"""

from __future__ import annotations

import logging
from typing import Protocol

from bot.domain.actors import Actor
from bot.domain.versions import is_final_tag, parse_tag
from bot.services.ports import (
    GitError,
    HasAuditLog,
    HasConfig,
    HasEnvironmentOutcomes,
    HasRepository,
    HasRunningReleases,
    HasStore,
    HasVersionIndex,
)
from bot.services.version_history import VersionHistoryNeeds, tags_in_history

log = logging.getLogger(__name__)


class AdoptNeeds(HasStore, HasRepository, HasConfig, Protocol):
    """The repository's tags and the environments' records."""


class LearnNeeds(AdoptNeeds, VersionHistoryNeeds, Protocol):
    """Also the version index, to find the newest final tag of the release branch."""


async def adopt(
    services: AdoptNeeds, actor: Actor, environment: str, version: str, reason: str
) -> str:
    """Record that `environment` runs `version` (a tag of the repository, of the bot's form);
    returns the answer for the person who said so."""
    store, prefix = services.store, services.config.repository.tag_prefix
    tag = version if prefix and version.startswith(prefix) else f"{prefix}{version}"
    parsed = parse_tag(tag, prefix)
    if parsed is None:
        text = (
            f"`{version}` is not a version of the form the bot tags (`{prefix}1.2.3`), so I "
            f"did not adopt it for *{environment}*."
        )
        await store.audit(
            actor,
            "environment.adopt",
            environment=environment,
            outcome="refused",
            reason=text[:500],
        )
        return text
    try:
        await services.git.sync_tags()
        sha = (await services.git.tags_matching((tag,))).get(tag)
    except GitError as exc:
        await store.audit(
            actor,
            "environment.adopt",
            environment=environment,
            outcome="failed",
            reason=str(exc)[:500],
        )
        return f"I could not read the repository's tags, so nothing was adopted: {exc}"
    if sha is None:
        text = (
            f"`{tag}` is not a tag of the repository, so I did not adopt it for "
            f"*{environment}*; `git tag --list` shows the ones there are."
        )
        await store.audit(
            actor,
            "environment.adopt",
            environment=environment,
            outcome="refused",
            reason=text[:500],
        )
        return text
    await store.set_environment_version(
        environment, str(parsed.version), tag, sha, adopted=f"by {actor.user_name}: {reason}"
    )
    await store.audit(
        actor, "environment.adopt", environment=environment, reason=f"{tag}: {reason}"[:1000]
    )
    return (
        f"Noted: *{environment}* runs `{tag}` (`{sha[:10]}`). Rollbacks, hotfixes and the "
        "flags-ready gate now start from it."
    )


async def last_environment_version(services: LearnNeeds) -> dict[str, str]:
    """What the last environment runs: as recorded, or, the first time nothing is, the newest
    final tag of the release branch, adopted and audited ({} when the branch has none)."""
    last = services.config.last_environment.name
    current = (await services.store.environment_versions([last]))[last]
    if current.get("version"):
        return current
    branch = services.config.repository.branch
    prefix = services.config.repository.tag_prefix
    try:
        await services.git.fetch_branches()
        head = (await services.git.read_head(branch)).head_sha
        tags = await tags_in_history(services, branch, head, may_rebuild=True)
    except GitError as exc:
        log.warning("could not learn what %s runs: %s", last, exc)
        return {}
    final = next((t for t in tags if is_final_tag(t, prefix)), None)
    parsed = parse_tag(final, prefix) if final else None
    if final is None or parsed is None:
        return {}
    sha = await services.versions.commit_of(final) or ""
    why = f"the newest final tag of {branch}"
    # Only while still unknown: a deploy (or another replica's learning) meanwhile wins.
    await services.store.adopt_unknown(last, str(parsed.version), final, sha, why)
    return (await services.store.environment_versions([last]))[last]


class ReportedNeeds(
    HasConfig, HasAuditLog, HasRunningReleases, HasEnvironmentOutcomes, HasVersionIndex, Protocol
):
    """What the monitor has: the environments' records, the version index, the audit."""


async def adopt_reported(
    services: ReportedNeeds, environment: str, version: str, check: str
) -> bool:
    """An environment the bot knows nothing of reports `version` (a check's `version_field`,
    /build-info): adopted, audited, when it is a tag of the repository the version index
    knows (its commit is what a rollback would deploy). True if adopted."""
    prefix = services.config.repository.tag_prefix
    tag = version if prefix and version.startswith(prefix) else f"{prefix}{version}"
    parsed = parse_tag(tag, prefix)
    if parsed is None:
        return False
    current = (await services.running_releases.environment_versions([environment]))[environment]
    if current.get("version"):
        return False  # known meanwhile (a deploy, another replica)
    sha = await services.versions.commit_of(tag)
    if not sha:
        return False  # not a tag (yet): the index is rebuilt within a minute; asked again then
    # Only while still unknown, with its audit entry: a deploy that finished since the check
    # (or another replica's adoption) is not overwritten by what the check saw before it.
    return await services.environment_outcomes.adopt_unknown(
        environment, str(parsed.version), tag, sha, f"reported by its {check} check"
    )
