"""Release versions from a git tag history: which tags are ours, and what comes next.

Only tags of the bot's exact form count (`{prefix}X.Y.Z` and `{prefix}X.Y.Z-rc.N`); anything
else in a real history (`v0.13.3-final`, `bd-12`, `v0.8.1-bug-fixes`, timestamps) is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import semver

Bump = Literal["major", "minor", "patch"]
BUMPS: tuple[Bump, ...] = ("major", "minor", "patch")

_CORE = r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
_RC = re.compile(r"^rc\.(0|[1-9]\d*)$")


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
    if not tag.startswith(prefix):
        return None
    match = re.fullmatch(_CORE + r"(?:-(rc\.\d+))?", tag[len(prefix) :])
    if match is None:
        return None
    pre = match.group(4)
    if pre is not None and not _RC.fullmatch(pre):
        return None  # e.g. "rc.01": not a form the bot writes
    return ReleaseVersion(semver.Version.parse(tag[len(prefix) :]))


def release_versions(tags: Iterable[str], prefix: str) -> list[ReleaseVersion]:
    """The bot's versions among `tags`, oldest first; other tags are skipped."""
    found = {v for t in tags if (v := parse_tag(t, prefix)) is not None}
    return sorted(found)


def latest_final(versions: Iterable[ReleaseVersion]) -> ReleaseVersion | None:
    finals = [v for v in versions if not v.is_candidate]
    return max(finals, default=None)


def next_candidate(tags: Iterable[str], prefix: str, bump: Bump | None = None) -> ReleaseVersion:
    """The next release candidate after the history in `tags`.

    After final 0.14.1 a new candidate is 0.15.0-rc.1 (minor by default). While candidates of a
    version newer than the last final exist, the next is that version's next rc number, unless an
    explicit bump asks for a different version.
    """
    versions = release_versions(tags, prefix)
    final = latest_final(versions)
    base = final.version if final else semver.Version(0, 0, 0)
    pending = [v for v in versions if v.is_candidate and (final is None or v > final)]
    pending_base = max((v.final for v in pending), default=None)

    if bump is None and pending_base is not None:
        target = pending_base.version
    else:
        target = _bump(base, bump or "minor")
        if pending_base is not None and target < pending_base.version:
            raise VersionError(
                f"{pending_base.tag(prefix)} already has candidates; --bump {bump} would give "
                f"{prefix}{target}, which is lower. Leave out --bump to continue "
                f"{pending_base.tag(prefix)}, or use a larger bump."
            )

    rc_numbers = [v.rc_number or 0 for v in pending if v.version.finalize_version() == target]
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
            f"Nothing the bot deployed runs in {environment}, so there is "
            "nothing to hotfix; use `/release rc`."
        )
    try:
        base = semver.Version.parse(live).finalize_version().bump_patch()
    except ValueError:
        raise VersionError(
            f"{environment} runs {live}, which is not a version I can patch"
        ) from None
    while ReleaseVersion(base) in set(release_versions(tags, prefix)):
        base = base.bump_patch()  # that patch is already final: the next one
    numbers = [
        v.rc_number or 0
        for v in release_versions(tags, prefix)
        if v.is_candidate and v.version.finalize_version() == base
    ]
    return ReleaseVersion(base.replace(prerelease=f"rc.{max(numbers, default=0) + 1}"))
