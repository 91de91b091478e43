"""What is in a release: the commits between two versions, read for the people who approve it.

Pure (no I/O). The git adapter (`bot.adapters.git_clone.changes_between`) reads the commits
and builds a `Changeset` with `parse_commit`; the rest renders it:

- `parse_commit(sha, subject, body, author, email, time, risk_trailer="Risk") -> Change`
- `group(changeset) -> list[tuple[str, list[Change]]]`: headings in a fixed order
  (Breaking changes, Features, Fixes, Performance, …, Other changes), or one "Changes" list
  when fewer than half of the subjects follow Conventional Commits
- `summary_line(changeset) -> str`: "12 changes by 4 people · 1 breaking · 2 risks"
- `risks(changeset) -> list[tuple[str, Change]]`: every risk with the change that names it
- `as_markdown(changeset, pr_url="") -> str`: release notes; `pr_url` is a template with
  `{n}` (`[changes] pr_url`) that links PR numbers
- `as_json(changeset) -> dict`: the same as plain data (`json.dumps`-able)
- `annotation_lines(changeset, limit) -> list[str]`: plain text for a tag's annotation, at most
  `limit` changes and then "and N more"
- `pathspec_problem(pathspec) -> str`: why a `[changes] paths` entry is refused ("" if fine)

A commit's PR number comes from GitHub's merge subject (`Merge pull request #123 from …`, whose
title is then the body's first line) or a squash merge's trailing `(#123)`. Its type, scope and
`!` come from a Conventional Commit subject (`feat(api)!: …`); a `BREAKING CHANGE:` (or
`BREAKING-CHANGE:`) line in the body marks it breaking too. Its risks are the lines of the body
that start with the risk trailer (`Risk: …`) and the bullets of a `## Risks` section (a PR
template's, kept in a squash or merge commit's body).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Change:
    """One change of a release: a commit, or on the release branch's first-parent line, a
    merged pull request (its merge commit stands for the branch's commits)."""

    sha: str
    short_sha: str
    subject: str  # without a trailing "(#123)"; a merged PR's title, not "Merge pull request"
    author: str
    email: str
    time: float  # the author's time, seconds since the epoch
    pr: int | None
    type: str  # a Conventional Commit type (feat, fix, …), lowercase, or ""
    scope: str
    breaking: bool
    risks: tuple[str, ...]

    @property
    def title(self) -> str:
        """The subject without its Conventional Commit prefix, with its scope in front when
        there is one (`api: add login`): what a line under a type's heading shows."""
        found = _CONVENTIONAL.match(self.subject) if self.type else None
        if found is None:
            return self.subject
        text = found.group("text").strip()
        return f"{self.scope}: {text}" if self.scope else text


@dataclass(frozen=True)
class Changeset:
    """The changes between a base and a head, newest first, as many as were read."""

    changes: tuple[Change, ...]
    base: str = ""  # what the changes are counted from ("abc1234"), "" for head's history
    truncated: int = 0  # changes in the range beyond those read (the range was cut)
    note: str = ""  # how the range was taken when not simply base..head

    @property
    def total(self) -> int:
        return len(self.changes) + self.truncated


# --- parsing one commit ---------------------------------------------------------------------

# The types of the Conventional Commits spec and of the Angular convention it came from. Only
# these count: a subject like "WIP: try" or "Update: docs" is not a Conventional Commit.
TYPES = {
    "feat": "Features",
    "fix": "Fixes",
    "perf": "Performance",
    "refactor": "Refactoring",
    "revert": "Reverts",
    "docs": "Documentation",
    "style": "Style",
    "test": "Tests",
    "build": "Build",
    "ci": "CI",
    "chore": "Chores",
}
BREAKING_HEADING = "Breaking changes"
OTHER_HEADING = "Other changes"
PLAIN_HEADING = "Changes"

_CONVENTIONAL = re.compile(
    r"^(?P<type>[A-Za-z]+)(?:\((?P<scope>[^()\n]*)\))?(?P<bang>!)?:[ \t]+(?P<text>\S.*)$"
)
_MERGED_PR = re.compile(r"^Merge pull request #(?P<n>\d{1,9}) from \S+")
_SQUASHED_PR = re.compile(r"\s*\(#(?P<n>\d{1,9})\)$")
_BREAKING = re.compile(r"^BREAKING[ -]CHANGE:", re.MULTILINE)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(?P<name>.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(?:\[[ xX]\]\s+)?(?P<text>.+)$")
# What a PR template's risk section or a trailer holds when there is no risk to tell.
_NO_RISK = {"", "none", "n/a", "na", "no", "no risk", "no risks", "nothing", "-", "—"}
TRAILER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")  # what a trailer's name may be
_RISK_LIMIT = 300  # characters of one risk kept (a trailer is a line, not an essay)


def parse_commit(
    sha: str,
    subject: str,
    body: str,
    author: str,
    email: str,
    time: float,
    risk_trailer: str = "Risk",
) -> Change:
    """The change a commit makes, from its message as git gives it (`%s` and `%b`)."""
    subject = _one_line(subject)
    pr: int | None = None
    merged = _MERGED_PR.match(subject)
    if merged is not None:
        pr = int(merged.group("n"))
        # GitHub puts the PR's title on the first line of the merge commit's body.
        title = next((ln.strip() for ln in body.splitlines() if ln.strip()), "")
        if title:
            subject = _one_line(title)
    squashed = _SQUASHED_PR.search(subject)
    if squashed is not None:
        pr = pr if pr is not None else int(squashed.group("n"))
        subject = subject[: squashed.start()].rstrip()
    kind, scope, breaking = "", "", False
    conventional = _CONVENTIONAL.match(subject)
    if conventional is not None and conventional.group("type").lower() in TYPES:
        kind = conventional.group("type").lower()
        scope = (conventional.group("scope") or "").strip()
        breaking = conventional.group("bang") is not None
    elif subject.startswith('Revert "'):  # what `git revert` writes
        kind = "revert"
    breaking = breaking or _BREAKING.search(body) is not None
    return Change(
        sha=sha,
        short_sha=sha[:7],
        subject=subject,
        author=_one_line(author),
        email=email.strip(),
        time=time,
        pr=pr,
        type=kind,
        scope=scope,
        breaking=breaking,
        risks=_risks(body, risk_trailer),
    )


def _one_line(text: str) -> str:
    """`text` on one line, without control characters (they would reach Slack and tags)."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def _risks(body: str, trailer: str) -> tuple[str, ...]:
    """The risk trailers of `body` and the bullets of its risk section, each once, in order."""
    found: list[str] = []
    # A trailer anywhere at the start of a line, not only in the last paragraph: a squash
    # merge's body is every commit's message one after another, trailers included.
    name = re.compile(rf"^{re.escape(trailer)}\s*:\s*(?P<text>.*)$", re.IGNORECASE)
    in_section = False
    for line in body.splitlines():
        heading = _HEADING.match(line)
        if heading is not None:
            in_section = heading.group("name").rstrip(":").strip().lower() in ("risk", "risks")
            continue
        trailer_line = name.match(line)
        if trailer_line is not None:
            found.append(trailer_line.group("text"))
        elif in_section and (bullet := _BULLET.match(line)) is not None:
            found.append(bullet.group("text"))
    kept = (_one_line(r)[:_RISK_LIMIT] for r in found)
    return tuple(dict.fromkeys(r for r in kept if r.lower().rstrip(".") not in _NO_RISK))


def pathspec_problem(pathspec: str) -> str:
    """Why `pathspec` may not go to git as a path filter ("" when it may). A filter is a path
    or a glob inside the repository (`src/`, `*.py`, `services/api/*`); never something git
    reads as an option (`-…`) or as pathspec magic (`:(…)`, `:!…`, `:/…`), which could reach
    outside the filter's meaning."""
    if not pathspec.strip():
        return "must not be empty"
    if any(not c.isprintable() for c in pathspec):
        return "must not hold control characters"
    if pathspec.startswith("-"):
        return "must not start with - (git would read an option)"
    if pathspec.startswith(":"):
        return "must not start with : (git pathspec magic)"
    if pathspec.startswith("/") or ".." in pathspec.split("/"):
        return "must be a path inside the repository (no leading /, no ..)"
    return ""


# --- reading a changeset --------------------------------------------------------------------


def group(changeset: Changeset) -> list[tuple[str, list[Change]]]:
    """The changes under headings: breaking ones first (whatever their type), then by type in
    `TYPES`' order, then "Other changes" (subjects that are no Conventional Commit). When
    fewer than half of the subjects are conventional, headings would mislead (most of it
    "Other changes"), so it is one list under "Changes". Newest first within each."""
    changes = list(changeset.changes)
    if not changes:
        return []
    conventional = sum(1 for c in changes if c.type)
    if conventional * 2 < len(changes):
        return [(PLAIN_HEADING, changes)]
    groups: dict[str, list[Change]] = {BREAKING_HEADING: []}
    groups.update((heading, []) for heading in TYPES.values())
    groups[OTHER_HEADING] = []
    for change in changes:
        if change.breaking:
            groups[BREAKING_HEADING].append(change)
        else:
            groups[TYPES[change.type] if change.type else OTHER_HEADING].append(change)
    return [(heading, found) for heading, found in groups.items() if found]


def risks(changeset: Changeset) -> list[tuple[str, Change]]:
    """Every risk the changes name, with the change that names it, newest first."""
    return [(risk, change) for change in changeset.changes for risk in change.risks]


def _plural(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


def people(changes: Iterable[Change]) -> int:
    """How many people wrote `changes` (an email is a person; git's .mailmap applies)."""
    return len({(c.email or c.author).lower() for c in changes})


def summary_line(changeset: Changeset) -> str:
    """One line for a message or a notification: "12 changes by 4 people · 1 breaking · 2
    risks". When the range was cut, the authors, breaking changes and risks are those of the
    changes read, and the line says so ("at least")."""
    if not changeset.total:
        return "no changes"
    least = "at least " if changeset.truncated else ""
    parts = [
        f"{_plural(changeset.total, 'change', 'changes')} by "
        f"{least}{_plural(people(changeset.changes), 'person', 'people')}"
    ]
    breaking = sum(1 for c in changeset.changes if c.breaking)
    if breaking:
        parts.append(f"{least}{breaking:,} breaking")
    risky = len(risks(changeset))
    if risky:
        parts.append(f"{least}{_plural(risky, 'risk', 'risks')}")
    return " · ".join(parts)


def pr_link(pr_url: str, number: int) -> str:
    """The URL of PR `number` by the template `pr_url` ("" without one). Replaced, not
    formatted: a template's other characters are never read as format fields."""
    return pr_url.replace("{n}", str(number)) if pr_url and "{n}" in pr_url else ""


def as_markdown(changeset: Changeset, pr_url: str = "") -> str:
    """Release notes in Markdown: the summary, the note, a section per heading with
    `- subject (#123) — author, abc1234` lines, then the risks."""
    lines = [summary_line(changeset)]
    if changeset.note:
        lines += ["", f"_{_markdown(changeset.note)}_"]
    for heading, changes in group(changeset):
        lines += ["", f"## {heading}", ""]
        titled = heading != PLAIN_HEADING
        lines += [f"- {_markdown_change(c, pr_url, titled)}" for c in changes]
    if changeset.truncated:
        lines += ["", f"…and {_plural(changeset.truncated, 'more change', 'more changes')}"]
    found = risks(changeset)
    if found:
        lines += ["", "## Risks", ""]
        lines += [f"- {_markdown(risk)} ({change.short_sha})" for risk, change in found]
    return "\n".join(lines) + "\n"


def _markdown(text: str) -> str:
    """Commit text shown as it is, not as Markdown or HTML it may hold."""
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", text)


def _markdown_change(change: Change, pr_url: str, titled: bool) -> str:
    text = _markdown(change.title if titled else change.subject)
    if change.breaking and titled is False:
        text = f"**breaking:** {text}"
    if change.pr is not None:
        link = pr_link(pr_url, change.pr)
        text += f" ([#{change.pr}]({link}))" if link else f" (#{change.pr})"
    return f"{text} — {_markdown(change.author)}, {change.short_sha}"


def as_json(changeset: Changeset) -> dict[str, Any]:
    """The changeset as plain data (for `--format json`, an API, a file)."""
    return {
        "summary": summary_line(changeset),
        "base": changeset.base,
        "note": changeset.note,
        "truncated": changeset.truncated,
        "changes": [
            {
                "sha": c.sha,
                "short_sha": c.short_sha,
                "subject": c.subject,
                "author": c.author,
                "email": c.email,
                "time": c.time,
                "pr": c.pr,
                "type": c.type,
                "scope": c.scope,
                "breaking": c.breaking,
                "risks": list(c.risks),
            }
            for c in changeset.changes
        ],
    }


def annotation_lines(changeset: Changeset, limit: int = 20) -> list[str]:
    """Plain text for a tag's annotation: the summary, then at most `limit` changes, newest
    first (`abc1234 feat: add login (#12)`), then "and N more"."""
    lines = [summary_line(changeset)]
    if changeset.note:
        lines.append(changeset.note)
    if changeset.changes:
        lines.append("")
    shown = changeset.changes[: max(limit, 0)]
    for change in shown:
        pr = f" (#{change.pr})" if change.pr is not None else ""
        mark = "[breaking] " if change.breaking else ""
        lines.append(f"{change.short_sha} {mark}{change.subject}{pr}")
    rest = changeset.total - len(shown)
    if rest > 0:
        lines.append(f"and {rest:,} more")
    return lines


def grouped_lines(changeset: Changeset, limit: int = 20) -> list[str]:
    """The changes under their headings, for a tag's annotation: each change indented behind
    its short sha, so that no commit subject can ever start a line of the annotation (a
    subject "Approved-by: …" must not read as an approval), at most `limit` of them."""
    lines: list[str] = []
    shown = 0
    for heading, items in group(changeset):
        if shown >= limit:
            break
        lines.append(f"{heading}:")
        for change in items[: limit - shown]:
            pr = f" (#{change.pr})" if change.pr is not None else ""
            lines.append(f"  {change.short_sha} {_one_line(change.title)}{pr}")
            shown += 1
    rest = changeset.total - shown
    if rest > 0:
        lines.append(f"  and {rest:,} more")
    return lines
