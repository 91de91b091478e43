"""Release versions from a git tag history: which tags are ours, and what comes next.

Only tags of the bot's exact form count (`{prefix}X.Y.Z` and `{prefix}X.Y.Z-rc.N`); anything
else in a real history (`v0.13.3-final`, `bd-12`, `v0.8.1-bug-fixes`, timestamps) is ignored.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import semver

Bump = Literal["major", "minor", "patch"]
BUMPS: tuple[Bump, ...] = ("major", "minor", "patch")


class VersionError(Exception):
    """A version cannot be chosen; the message says why and what to do."""


@dataclass(frozen=True, order=True)
class ReleaseVersion:
    """A final version or a release candidate; ordering follows semver (rc.10 after rc.2)."""

    version: semver.Version

    @property
    def is_candidate(self) -> bool:
        return self.version.prerelease is not None

    @property
    def rc_number(self) -> int | None:
        if self.version.prerelease is None:
            return None
        return int(self.version.prerelease.split(".")[1])

    @property
    def final(self) -> ReleaseVersion:
        return ReleaseVersion(self.version.finalize_version())

    def tag(self, prefix: str) -> str:
        return f"{prefix}{self.version}"

    def __str__(self) -> str:
        return str(self.version)


def parse_tag(tag: str, prefix: str) -> ReleaseVersion | None:
    """The version a tag names, or None when the tag is not of the bot's form."""
    parts = _tag_parser(prefix)(tag)
    if parts is None:
        return None
    return ReleaseVersion(_semver(parts))


# (major, minor, patch, rc number or None for a final): our versions as plain tuples. A
# history holds tens of thousands of tags after a few years, and semver objects cost
# microseconds to make and to compare: the choice of the next version works on these, and
# makes semver objects only of the few versions it returns.
_Parts = tuple[int, int, int, int | None]


@functools.lru_cache(maxsize=8)
def _tag_parser(prefix: str) -> Callable[[str], _Parts | None]:
    # ASCII digits only, no leading zeros, and `rc.N` as the only pre-release: the forms the
    # bot writes (`v1.2.3-rc.01`, `v1.2.3-RC.1`, `v1.2.3+build.5` are someone else's).
    pattern = re.compile(
        re.escape(prefix) + r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
        r"(?:-rc\.(0|[1-9][0-9]*))?"
    )
    match = pattern.fullmatch

    def parse(tag: str) -> _Parts | None:
        found = match(tag)
        if found is None:
            return None
        major, minor, patch, rc = found.groups()
        return int(major), int(minor), int(patch), None if rc is None else int(rc)

    return parse


def _parse_all(tags: Iterable[str], prefix: str) -> set[_Parts]:
    parse = _tag_parser(prefix)
    return {parts for tag in tags if (parts := parse(tag)) is not None}


def _order(parts: _Parts) -> tuple[int, int, int, int, int]:
    """Semver's order: the candidates of a version before the version itself."""
    major, minor, patch, rc = parts
    return (major, minor, patch, 1, 0) if rc is None else (major, minor, patch, 0, rc)


def _semver(parts: _Parts) -> semver.Version:
    major, minor, patch, rc = parts
    return semver.Version(major, minor, patch, None if rc is None else f"rc.{rc}")


def release_versions(tags: Iterable[str], prefix: str) -> list[ReleaseVersion]:
    """The bot's versions among `tags`, oldest first; other tags are skipped."""
    return [ReleaseVersion(_semver(p)) for p in sorted(_parse_all(tags, prefix), key=_order)]


def latest_final(versions: Iterable[ReleaseVersion]) -> ReleaseVersion | None:
    finals = [v for v in versions if not v.is_candidate]
    return max(finals, default=None)


def next_candidate(tags: Iterable[str], prefix: str, bump: Bump | None = None) -> ReleaseVersion:
    """The next release candidate after the history in `tags`.

    After final 0.14.1 a new candidate is 0.15.0-rc.1 (minor by default). While candidates of a
    version newer than the last final exist, the next is that version's next rc number, unless an
    explicit bump asks for a different version.
    """
    found = _parse_all(tags, prefix)
    final = max((p[:3] for p in found if p[3] is None), default=None)
    base = semver.Version(*final) if final else semver.Version(0, 0, 0)
    # A candidate is pending when its version is newer than the last final (a candidate of
    # the final's own version sorts before it).
    pending = [p for p in found if p[3] is not None and (final is None or p[:3] > final)]
    newest_pending = max((p[:3] for p in pending), default=None)
    pending_base = semver.Version(*newest_pending) if newest_pending else None

    if bump is None and pending_base is not None:
        target = pending_base
    else:
        target = _bump(base, bump or "minor")
        if pending_base is not None and target < pending_base:
            raise VersionError(
                f"{prefix}{pending_base} already has candidates; --bump {bump} would give "
                f"{prefix}{target}, which is lower. Leave out --bump to continue "
                f"{prefix}{pending_base}, or use a larger bump."
            )

    core = (target.major, target.minor, target.patch)
    rc_numbers = [p[3] or 0 for p in pending if p[:3] == core]
    return ReleaseVersion(target.replace(prerelease=f"rc.{max(rc_numbers, default=0) + 1}"))


def _bump(version: semver.Version, bump: Bump) -> semver.Version:
    if bump == "major":
        return version.bump_major()
    if bump == "minor":
        return version.bump_minor()
    return version.bump_patch()


def next_hotfix(
    live: str | None, tags: Iterable[str], prefix: str, environment: str
) -> ReleaseVersion:
    """A patch of what runs in `environment` (0.15.0 -> 0.15.1-rc.N), N after any existing
    candidates of that patch."""
    if not live:
        raise VersionError(
            f"I do not know what {environment} runs (the bot never deployed it, and the "
            "release branch has no final tag), so there is nothing to hotfix. "
            f"`/release adopt {environment} VERSION --reason TEXT` tells me; `/release rc` "
            "makes a candidate."
        )
    try:
        base = semver.Version.parse(live).finalize_version().bump_patch()
    except ValueError:
        raise VersionError(
            f"{environment} runs {live}, which is not a version I can patch"
        ) from None
    found = _parse_all(tags, prefix)
    while (base.major, base.minor, base.patch, None) in found:
        base = base.bump_patch()  # that patch is already final: the next one
    core = (base.major, base.minor, base.patch)
    numbers = [p[3] or 0 for p in found if p[3] is not None and p[:3] == core]
    return ReleaseVersion(base.replace(prerelease=f"rc.{max(numbers, default=0) + 1}"))


def patch_line(live: str | None, prefix: str) -> tuple[str, ...]:
    """The tag patterns a hotfix of `live` depends on: every tag of its X.Y line."""
    try:
        version = semver.Version.parse(live or "")
    except ValueError:
        return ()
    return (f"{prefix}{version.major}.{version.minor}.*",)


# --- the version index (bot.adapters.redis.version_index) ----------------------------------
# The bot's tags, kept in Redis as members of one sorted set whose members sort, byte by byte,
# as the versions do: the newest versions are then read with one ZRANGE … BYLEX REV LIMIT,
# however many thousands of tags a history holds. A member is `KEY TAG SHA`: the sort key,
# the tag, and the commit it points at (what the history check needs, on any host).
_INDEX_DIGITS = 10  # up to 9,999,999,999 in each part: more than any version will reach


def _index_key(parts: _Parts) -> str:
    major, minor, patch, is_final, rc = _order(parts)
    width = _INDEX_DIGITS
    return f"{major:0{width}d}.{minor:0{width}d}.{patch:0{width}d}.{is_final}.{rc:0{width}d}"


def index_member(tag: str, sha: str, prefix: str) -> str | None:
    """The index's member for `tag` on commit `sha`, None when `tag` is not of the bot's form
    (or too large to sort by its digits)."""
    parts = _tag_parser(prefix)(tag)
    if parts is None or max(p or 0 for p in parts) >= 10**_INDEX_DIGITS:
        return None
    return f"{_index_key(parts)} {tag} {sha}"


def index_prefix(tag: str, prefix: str) -> str | None:
    """What every member for `tag` starts with (whatever its commit), to find or drop it."""
    parts = _tag_parser(prefix)(tag)
    if parts is None or max(p or 0 for p in parts) >= 10**_INDEX_DIGITS:
        return None
    return f"{_index_key(parts)} {tag} "


def read_index_member(member: str) -> tuple[str, str]:
    """The tag and commit a member names."""
    _, tag, sha = member.split(" ", 2)
    return tag, sha


def is_final_tag(tag: str, prefix: str) -> bool:
    parts = _tag_parser(prefix)(tag)
    return parts is not None and parts[3] is None
