"""What a release brings, for the people who approve it (bot.domain.changes): counted from
what production runs (or the newest final tag before it), read from git by the worker.

Used when a candidate is made (the summary on its message, the list in its thread, "since
rc.1"), when it is promoted (its tag's annotation), when production is rolled back (what the
rollback takes away), by `/release changes` and by `releasebot notes`."""

from __future__ import annotations

import dataclasses
from typing import Protocol

import semver

from bot.blocks import release as messages
from bot.blocks.changes import changes_blocks, changes_text
from bot.domain.changes import Changeset
from bot.domain.releases import Release
from bot.domain.versions import parse_tag
from bot.services.ports import HasChat, HasConfig, HasRepository, HasStore, HasVersionIndex

CHANGES_READ = 500  # changes read of one range; the rest are counted ("and N more")
INDEX_LOOKS = 300  # newest versions looked at for the final tag before one


class ChangesNeeds(HasConfig, HasStore, HasRepository, HasVersionIndex, Protocol):
    """The release records, production's record, the clone and the version index."""


async def changes_between(
    services: ChangesNeeds, base: str, head: str, base_label: str
) -> Changeset:
    """The changes `head` brings since `base` (both full commit names; `base` may be ""),
    the changeset's base named `base_label` ("production (v0.20.3)")."""
    cfg = services.config.changes
    found = await services.git.changes_between(
        base,
        head,
        first_parent=cfg.first_parent,
        paths=cfg.paths,
        limit=CHANGES_READ,
        risk_trailer=cfg.risk_trailer,
    )
    if base_label and not found.note:
        return dataclasses.replace(found, base=base_label)
    return found


async def production_base(services: ChangesNeeds) -> tuple[str, str]:
    """(commit, label) of what the changes of a new candidate are counted from: what the last
    environment runs, else the newest final tag the repository has; ("", "") if neither."""
    last = services.config.last_environment.name
    running = (await services.store.environment_versions([last]))[last]
    if running.get("sha"):
        shown = running.get("tag") or running.get("version") or running["sha"][:10]
        return running["sha"], f"{last} (`{shown}`)"
    return await newest_final_before(services, None)


async def newest_final_before(
    services: ChangesNeeds, version: semver.Version | None
) -> tuple[str, str]:
    """(commit, label) of the newest final tag older than `version` (any, for None), from the
    version index (newest first: a few hundred looked at, never the whole tag list)."""
    prefix = services.config.repository.tag_prefix
    for tag, sha in await services.versions.newest(0, INDEX_LOOKS):
        parsed = parse_tag(tag, prefix)
        if parsed is None or parsed.version.prerelease or parsed.version.build:
            continue
        if version is None or parsed.version < version:
            return sha, f"`{tag}`"
    return "", ""


async def previous_candidate(services: ChangesNeeds, release: Release) -> Release | None:
    """The candidate just before `release` on the way to the same final version (rc.2's is
    rc.1: its approvers may have approved that one, and see what is new since). One record
    read, whatever the history: the candidate path scans no release."""
    try:
        mine = semver.Version.parse(release.version)
    except ValueError:
        return None
    label, _, number = (mine.prerelease or "").rpartition(".")
    if not label or not number.isdigit() or int(number) < 2:
        return None
    before = mine.replace(prerelease=f"{label}.{int(number) - 1}")
    return await services.store.get_release(str(before))


async def release_changes(services: ChangesNeeds, release: Release) -> Changeset:
    """A release's changes, counted from what it recorded when it was made (production then),
    or else from what production runs now."""
    if release.changes_base:
        return await changes_between(
            services,
            release.changes_base,
            release.sha,
            release.changes_since or f"`{release.changes_base[:10]}`",
        )
    base, label = await production_base(services)
    return await changes_between(services, base, release.sha, label)


class AnswerNeeds(ChangesNeeds, HasChat, Protocol):
    """…and the chat to answer in."""


async def find_release(services: ChangesNeeds, version: str | None) -> Release | None:
    """The release `version` names (a candidate, or a final version it was promoted as),
    else the newest one still in flight, else the newest one."""
    store = services.store
    if version:
        wanted = version.removeprefix(services.config.repository.tag_prefix)
        found = await store.get_release(wanted)
        if found is None and (candidate := await store.release_by_final_version(wanted)):
            found = await store.get_release(candidate)
        return found
    in_flight = sorted(await store.releases_in_flight(), key=lambda r: r.created_at)
    if in_flight:
        return in_flight[-1]
    recent = await store.recent_releases(1)
    return recent[0] if recent else None


async def answer_changes(
    services: AnswerNeeds, response_url: str | None, version: str | None
) -> None:
    """`/release changes [VERSION]`, privately, after the ack (git is asked)."""
    release = await find_release(services, version)
    if release is None:
        text = (
            f"I know no release `{version}`; `/release status` lists them."
            if version
            else "There is no release yet: `/release rc` makes the first candidate."
        )
        await services.chat.answer(response_url, messages.problem(text), text)
        return
    cfg = services.config.changes
    changeset = await release_changes(services, release)
    blocks = [
        messages.context(f"`{release.tag}`: what it brings since {changeset.base or 'the start'}"),
        *changes_blocks(changeset, pr_url=cfg.pr_url, show=cfg.show, max_blocks=49),
    ]
    await services.chat.answer(response_url, blocks, changes_text(changeset))
