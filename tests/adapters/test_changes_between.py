"""What is in a release, read from real git histories made here (issue 16): merges on the
first-parent line, squash merges, Conventional Commits, risks, path filters, a rewritten
history, an empty range, and 5,000 commits made with `git fast-import`."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from bot.adapters.git_clone import GitClone, changes_between
from bot.blocks.changes import changes_blocks
from bot.devtools.slack_stand_in import validate_blocks
from bot.domain.changes import annotation_lines, group, summary_line
from bot.services.ports import GitError
from tests.helpers.repos import GIT_ENV, git


def repo(where: Path) -> Path:
    path = where / "clone"
    git("init", "-q", "-b", "main", str(path), cwd=where)
    return path


def commit(path: Path, *message: str, files: dict[str, str] | None = None) -> str:
    """A commit of `files` (or an empty one) whose message is `message`'s paragraphs."""
    for name, text in (files or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
        git("add", name, cwd=path)
    paragraphs = [arg for part in message for arg in ("-m", part)]
    git("commit", "-q", "--allow-empty", *paragraphs, cwd=path)
    return git("rev-parse", "HEAD", cwd=path)


def subjects(
    path: Path, base: str, head: str, *, first_parent: bool = True, paths: tuple[str, ...] = ()
) -> list[str]:
    found = changes_between(path, base, head, first_parent=first_parent, paths=paths)
    return [c.subject for c in found.changes]


def test_a_merged_pull_request_is_one_change_on_the_first_parent_line(tmp_path: Path):
    path = repo(tmp_path)
    base = commit(path, "chore: start")
    git("checkout", "-q", "-b", "login", cwd=path)
    commit(path, "wip", files={"api/login.py": "1"})
    commit(path, "more wip", files={"api/login.py": "2"})
    git("checkout", "-q", "main", cwd=path)
    commit(path, "fix: crash on empty cart (#6)", files={"web/cart.js": "1"})
    git(
        "merge",
        "-q",
        "--no-ff",
        "login",
        "-m",
        "Merge pull request #5 from acme/login",
        "-m",
        "feat(auth)!: log in with SSO",
        cwd=path,
    )
    head = git("rev-parse", "HEAD", cwd=path)

    changeset = changes_between(path, base, head)
    assert [(c.subject, c.pr, c.type, c.breaking) for c in changeset.changes] == [
        ("feat(auth)!: log in with SSO", 5, "feat", True),
        ("fix: crash on empty cart", 6, "fix", False),
    ]
    assert (changeset.base, changeset.truncated, changeset.note) == (base[:7], 0, "")
    assert summary_line(changeset) == "2 changes by 1 person · 1 breaking"
    assert changeset.changes[0].author == GIT_ENV["GIT_AUTHOR_NAME"]
    assert changeset.changes[0].sha == head

    # Every commit instead: the branch's own, no merge commit.
    assert sorted(subjects(path, base, head, first_parent=False)) == [
        "fix: crash on empty cart",
        "more wip",
        "wip",
    ]
    # A path filter keeps the merge that brought the path (compared with its first parent).
    assert subjects(path, base, head, paths=("api/",)) == ["feat(auth)!: log in with SSO"]
    assert subjects(path, base, head, paths=("*.js",)) == ["fix: crash on empty cart"]
    assert subjects(path, base, head, paths=("docs/",)) == []


def test_breaking_changes_risks_and_odd_characters(tmp_path: Path):
    path = repo(tmp_path)
    base = commit(path, "first")
    commit(
        path,
        "refactor(store): new keys",
        "Moves every key.",
        "## Risks\n- sessions are dropped once\n- None\n\n## Testing\n- unit tests",
        "BREAKING CHANGE: old keys are not read",
    )
    commit(path, "feat: sessions in Redis", "Risk: cache cold for 5 minutes\nRisk: none")
    commit(path, "docs: a\x1fb\tc, «ünïcode» %x00 | <@U123>", "body with\x1f\x1e separators")
    commit(path, "tidy", "Danger: custom trailer")
    head = git("rev-parse", "HEAD", cwd=path)

    changeset = changes_between(path, base, head)
    tidy, docs, feat, refactor = changeset.changes
    assert (refactor.type, refactor.scope, refactor.breaking) == ("refactor", "store", True)
    assert refactor.risks == ("sessions are dropped once",)
    assert feat.risks == ("cache cold for 5 minutes",)
    assert docs.subject == "docs: a b c, «ünïcode» %x00 | <@U123>"
    assert tidy.risks == ()
    custom = changes_between(path, base, head, risk_trailer="Danger")
    assert custom.changes[0].risks == ("custom trailer",)
    assert [h for h, _ in group(changeset)] == [
        "Breaking changes",
        "Features",
        "Documentation",
        "Other changes",
    ]
    assert summary_line(changeset) == "4 changes by 1 person · 1 breaking · 2 risks"


def test_a_base_that_is_not_an_ancestor_counts_from_the_merge_base(tmp_path: Path):
    path = repo(tmp_path)
    commit(path, "one")
    fork = commit(path, "two")
    released = commit(path, "fix: released, then rewritten")
    # History rewritten after the release: the released commit is no longer on main.
    git("reset", "-q", "--hard", fork, cwd=path)
    commit(path, "fix: released, reworded")
    head = commit(path, "feat: after")

    changeset = changes_between(path, released, head)
    assert [c.subject for c in changeset.changes] == ["feat: after", "fix: released, reworded"]
    assert changeset.base == fork[:7]
    assert changeset.note == (
        f"not descended from {released[:7]}: changes since their merge base {fork[:7]}"
    )

    # No history in common at all: the head's own, said so.
    git("checkout", "-q", "--orphan", "other", cwd=path)
    lonely = commit(path, "unrelated")
    apart = changes_between(path, lonely, head)
    assert len(apart.changes) == 4
    assert apart.note.startswith(f"no history in common with {lonely[:7]}")


def test_an_empty_range_no_base_and_a_limit(tmp_path: Path):
    path = repo(tmp_path)
    shas = [commit(path, f"fix: {n}") for n in range(8)]
    head = shas[-1]
    empty = changes_between(path, head, head)
    assert (empty.changes, empty.truncated, summary_line(empty)) == ((), 0, "no changes")
    assert changes_between(path, head, shas[0]).changes == ()  # head is behind base

    first = changes_between(path, "", head, limit=3)
    assert [c.subject for c in first.changes] == ["fix: 7", "fix: 6", "fix: 5"]
    assert (first.base, first.truncated) == ("", 5)
    assert first.note == "no earlier release: the newest commits of its history"
    assert annotation_lines(first, 2)[-1] == "and 6 more"


@pytest.mark.parametrize(
    ("base", "head", "paths", "trailer"),
    [
        ("", "HEAD", (), "Risk"),
        ("", "abc1234", (), "Risk"),
        ("--all", "X" * 40, (), "Risk"),
        ("", "f" * 40, (), "Risk"),  # a full sha the clone does not have
        ("", "<head>", ("--output=<out>",), "Risk"),
        ("", "<head>", (":(top)/etc",), "Risk"),
        ("", "<head>", ("../outside",), "Risk"),
        ("", "<head>", (), "Risk: x"),
    ],
)
def test_data_never_becomes_an_option(
    tmp_path: Path, base: str, head: str, paths: tuple[str, ...], trailer: str
):
    path = repo(tmp_path)
    real = commit(path, "one")
    out = tmp_path / "written"
    paths = tuple(p.replace("<out>", str(out)) for p in paths)
    with pytest.raises(GitError):
        changes_between(
            path, base, real if head == "<head>" else head, paths=paths, risk_trailer=trailer
        )
    assert not out.exists()


def fast_history(path: Path, count: int) -> str:
    """`count` commits on main in one `git fast-import` (5,000 `git commit`s take a minute):
    varied authors and Conventional Commit types, a few risks, a file each. Returns the root
    commit's sha."""
    kinds = ["feat", "fix", "perf", "chore", "docs", "", "refactor", "fix"]
    stream: list[bytes] = []
    for n in range(1, count + 1):
        kind = kinds[n % len(kinds)]
        subject = f"{kind}(mod{n % 13}): change {n} (#{n})" if kind else f"change {n}"
        body = "\nRisk: touches billing\n" if n % 97 == 0 else ""
        message = f"{subject}\n{body}".encode()
        content = f"{n}\n".encode()
        who = f"Dev {n % 9} <dev{n % 9}@example.com> {1_700_000_000 + n} +0000"
        stream += [
            b"commit refs/heads/main\n",
            f"mark :{n}\n".encode(),
            f"author {who}\ncommitter {who}\n".encode(),
            f"data {len(message)}\n".encode() + message + b"\n",
            f"from :{n - 1}\n".encode() if n > 1 else b"",
            f"M 100644 inline src/f{n % 50}.txt\ndata {len(content)}\n".encode() + content,
            b"\n",
        ]
    env = {**GIT_ENV, "PATH": "/usr/bin:/bin"}
    subprocess.run(
        ["git", "fast-import", "--quiet"], input=b"".join(stream), cwd=path, check=True, env=env
    )
    return git("rev-list", "--max-parents=0", "main", cwd=path)


def test_five_thousand_commits_in_well_under_a_second(tmp_path: Path):
    path = repo(tmp_path)
    root = fast_history(path, 5001)
    head = git("rev-parse", "main", cwd=path)
    timings = []
    for _ in range(3):  # the best of three: the machine is shared with other work
        started = time.perf_counter()
        changeset = changes_between(path, root, head)
        timings.append(time.perf_counter() - started)
    assert min(timings) < 1.0, timings
    assert (len(changeset.changes), changeset.truncated, changeset.total) == (500, 4500, 5000)
    assert changeset.changes[0].subject == "fix(mod9): change 5001"
    assert changeset.changes[0].pr == 5001
    assert summary_line(changeset) == ("5,000 changes by at least 9 people · at least 5 risks")

    started = time.perf_counter()
    whole = changes_between(path, "", head, limit=5000)
    assert time.perf_counter() - started < 2.0  # every commit read and parsed
    assert (len(whole.changes), whole.truncated) == (5000, 1)

    filtered = changes_between(path, root, head, paths=("src/f7.txt",))
    assert filtered.total == 100

    for show in (20, 200):
        blocks = changes_blocks(
            changeset, pr_url="https://github.com/acme/site/pull/{n}", show=show
        )
        assert validate_blocks(blocks) == []
        assert len(blocks) <= 50
        assert blocks[-2]["elements"][0]["text"] == f"…and {5000 - show:,} more changes"
    assert len(annotation_lines(changeset, 20)) == 23


def test_the_async_clone_runs_it_off_the_event_loop(tmp_path: Path):
    path = repo(tmp_path)
    base = commit(path, "one")
    head = commit(path, "feat: two (#2)", files={"a/b.txt": "x"})
    clone = GitClone(url=str(path), path=path, remote="origin")
    found = asyncio.run(clone.changes_between(base, head, paths=("a/",), limit=10))
    assert [(c.subject, c.pr) for c in found.changes] == [("feat: two", 2)]
