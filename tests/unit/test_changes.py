"""What is in a release (issue 16): parsing commits, grouping, the summary, the release notes,
the tag annotation and the Slack message, on hand-made changes."""

from __future__ import annotations

import json

import pytest

from bot.blocks.changes import SECTION_CHARS, changes_blocks, changes_text
from bot.devtools.slack_stand_in import validate_blocks
from bot.domain.changes import (
    Change,
    Changeset,
    annotation_lines,
    as_json,
    as_markdown,
    group,
    parse_commit,
    pathspec_problem,
    summary_line,
)

SHA = "0123456789abcdef0123456789abcdef01234567"


def commit(subject: str, body: str = "", author: str = "Ann", trailer: str = "Risk") -> Change:
    return parse_commit(SHA, subject, body, author, f"{author.lower()}@example.com", 1.0, trailer)


def changeset(*subjects: str, truncated: int = 0, note: str = "") -> Changeset:
    return Changeset(tuple(commit(s) for s in subjects), "abc1234", truncated, note)


# --- parse_commit ---------------------------------------------------------------------------


def test_a_github_merge_takes_its_number_and_its_title_from_the_body():
    change = commit("Merge pull request #123 from acme/login", "\nfeat(auth): add login\n")
    assert (change.pr, change.subject, change.type, change.scope) == (
        123,
        "feat(auth): add login",
        "feat",
        "auth",
    )
    assert change.title == "auth: add login"
    assert change.short_sha == SHA[:7]


def test_a_squash_merge_gives_its_number_and_drops_it_from_the_subject():
    change = commit("fix: no crash on empty cart (#45)")
    assert (change.pr, change.subject, change.type, change.title) == (
        45,
        "fix: no crash on empty cart",
        "fix",
        "no crash on empty cart",
    )
    assert commit("Update deps (#7) later").pr is None  # only a trailing (#n)


@pytest.mark.parametrize(
    ("subject", "body", "kind", "breaking"),
    [
        ("feat!: drop the v1 API", "", "feat", True),
        ("feat(api)!: drop the v1 API", "", "feat", True),
        ("refactor: new store", "BREAKING CHANGE: keys renamed", "refactor", True),
        ("fix: x", "text\n\nBREAKING-CHANGE: y", "fix", True),
        ("fix: x", "mentions BREAKING CHANGE: mid-line", "fix", False),
        ("Fix: capitalised", "", "fix", False),
        ("WIP: not a type", "", "", False),
        ("feat:no space", "", "", False),
        ('Revert "feat: add login"', "", "revert", False),
        ("plain subject", "", "", False),
    ],
)
def test_conventional_commits(subject: str, body: str, kind: str, breaking: bool):
    change = commit(subject, body)
    assert (change.type, change.breaking) == (kind, breaking)


def test_risks_come_from_trailers_and_a_risks_section_once_each():
    body = (
        "Moves sessions to Redis.\n\n"
        "## Risks\n"
        "- sessions are dropped once\n"
        "* [x] cache cold for 5 minutes\n"
        "- None\n"
        "\n## Testing\n"
        "- not a risk\n\n"
        "Risk: sessions are dropped once\n"
        "risk:   migrations lock the users table\n"
        "Risk: n/a\n"
        "Signed-off-by: Ann <ann@example.com>\n"
    )
    assert commit("feat: redis sessions", body).risks == (
        "sessions are dropped once",
        "cache cold for 5 minutes",
        "migrations lock the users table",
    )
    assert commit("x", "Danger: high\nRisk: other", trailer="Danger").risks == ("high",)


def test_control_characters_never_reach_a_message():
    change = commit("feat: a\x1b[31mred\x07 thing", author="Ann\x00\nB")
    assert change.subject == "feat: a [31mred thing"
    assert change.author == "Ann B"


@pytest.mark.parametrize(
    ("pathspec", "refused"),
    [
        ("services/api/", False),
        ("*.py", False),
        ("-p", True),
        (":(exclude)secret", True),
        (":!x", True),
        ("/etc", True),
        ("../up", True),
        ("", True),
        ("a\nb", True),
    ],
)
def test_pathspecs(pathspec: str, refused: bool):
    assert bool(pathspec_problem(pathspec)) is refused


# --- group, summary_line --------------------------------------------------------------------


def test_groups_in_a_fixed_order_breaking_first_others_last():
    found = group(
        changeset(
            "chore: bump",
            "fix: a",
            "feat: b",
            "tidy things",
            "feat!: c",
            "perf: d",
            "docs: e",
            "fix(ui): f",
        )
    )
    assert [(h, [c.subject for c in cs]) for h, cs in found] == [
        ("Breaking changes", ["feat!: c"]),
        ("Features", ["feat: b"]),
        ("Fixes", ["fix: a", "fix(ui): f"]),
        ("Performance", ["perf: d"]),
        ("Documentation", ["docs: e"]),
        ("Chores", ["chore: bump"]),
        ("Other changes", ["tidy things"]),
    ]


def test_fewer_than_half_conventional_is_a_plain_list():
    found = group(changeset("feat: a", "one", "two"))
    assert [(h, len(cs)) for h, cs in found] == [("Changes", 3)]
    half = group(changeset("feat: a", "one"))
    assert [(h, len(cs)) for h, cs in half] == [("Features", 1), ("Other changes", 1)]
    assert group(changeset()) == []


def test_summary_line():
    assert summary_line(changeset()) == "no changes"
    assert summary_line(changeset("fix: a")) == "1 change by 1 person"
    many = Changeset(
        (
            commit("feat!: a", "Risk: one\nRisk: two", author="Ann"),
            commit("fix: b", author="Bob"),
            commit("fix: c", author="ANN"),  # the same email, whatever the case
        )
    )
    assert summary_line(many) == "3 changes by 2 people · 1 breaking · 2 risks"
    cut = Changeset((commit("fix: b", "Risk: x"),), truncated=1499)
    assert summary_line(cut) == "1,500 changes by at least 1 person · at least 1 risk"


# --- release notes, JSON, tag annotation ------------------------------------------------------


def test_markdown_release_notes():
    notes = as_markdown(
        Changeset(
            (
                commit("Merge pull request #12 from a/b", "feat(ui): dark *mode*"),
                commit("fix: crash (#13)", "Risk: cache <cold>", author="Bob"),
                commit("feat!: new API"),
            ),
            "abc1234",
            note="not descended from v1",
        ),
        pr_url="https://github.com/acme/site/pull/{n}",
    )
    assert notes == (
        "3 changes by 2 people · 1 breaking · 1 risk\n\n"
        "_not descended from v1_\n\n"
        "## Breaking changes\n\n"
        f"- new API — Ann, {SHA[:7]}\n\n"
        "## Features\n\n"
        f"- ui: dark \\*mode\\* ([#12](https://github.com/acme/site/pull/12)) — Ann, {SHA[:7]}\n\n"
        "## Fixes\n\n"
        f"- crash ([#13](https://github.com/acme/site/pull/13)) — Bob, {SHA[:7]}\n\n"
        "## Risks\n\n"
        f"- cache \\<cold\\> ({SHA[:7]})\n"
    )
    plain = as_markdown(changeset("one (#3)", "two", "feat!: three", truncated=2))
    assert f"- one (#3) — Ann, {SHA[:7]}" in plain
    assert "**breaking:** feat!: three" in plain
    assert plain.endswith("…and 2 more changes\n")


def test_json_is_plain_data():
    data = as_json(changeset("feat(api)!: a (#9)", truncated=3, note="n"))
    assert json.loads(json.dumps(data)) == data
    assert data["truncated"] == 3
    assert data["changes"][0] | {"sha": ""} == {
        "sha": "",
        "short_sha": SHA[:7],
        "subject": "feat(api)!: a",
        "author": "Ann",
        "email": "ann@example.com",
        "time": 1.0,
        "pr": 9,
        "type": "feat",
        "scope": "api",
        "breaking": True,
        "risks": [],
    }


def test_annotation_lines_are_bounded():
    lines = annotation_lines(changeset(*(f"fix: {n} (#{n})" for n in range(30)), truncated=5), 3)
    assert lines == [
        "35 changes by at least 1 person",
        "",
        f"{SHA[:7]} fix: 0 (#0)",
        f"{SHA[:7]} fix: 1 (#1)",
        f"{SHA[:7]} fix: 2 (#2)",
        "and 32 more",
    ]
    assert annotation_lines(changeset(), 3) == ["no changes"]


# --- the Slack message ----------------------------------------------------------------------


def test_blocks_link_prs_escape_text_and_list_risks_apart():
    blocks = changes_blocks(
        Changeset(
            (
                commit("feat: <!channel> ping (#5)", "Risk: <@U123> & co"),
                commit("fix: plain"),
            )
        ),
        pr_url="https://git.example.com/pr/{n}",
    )
    assert validate_blocks(blocks) == []
    text = json.dumps(blocks)
    assert "<https://git.example.com/pr/5|#5>" in text
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert blocks[-1]["text"]["text"].startswith("*Risks*")
    assert "&lt;@U123&gt; &amp; co" in blocks[-1]["text"]["text"]
    assert changes_text(changeset("fix: a")) == "What is in it: 1 change by 1 person"


def test_blocks_of_no_changes_say_so():
    blocks = changes_blocks(changeset(note="not descended from v1"))
    assert validate_blocks(blocks) == []
    assert blocks[0]["text"]["text"] == "*no changes*\n_not descended from v1_"


@pytest.mark.parametrize("show", [1, 20, 200])
def test_blocks_stay_within_slack_limits_with_long_subjects(show: int):
    long = "x" * 2000
    changes = tuple(
        commit(f"feat(s{n % 7}): {long} (#{n})", f"Risk: {long}", author="A" * 300)
        for n in range(600)
    )
    blocks = changes_blocks(
        Changeset(changes, truncated=4400), pr_url="https://e.com/" + "p" * 200 + "/{n}", show=show
    )
    assert validate_blocks(blocks) == []
    assert len(blocks) <= 50
    assert all(len(b.get("text", {}).get("text", "")) <= SECTION_CHARS for b in blocks)
    listed = sum(
        b["text"]["text"].count("\n• ") + b["text"]["text"].startswith("• ") for b in blocks[1:-3]
    )
    more = blocks[-3]["elements"][0]["text"]
    assert more == f"…and {5000 - listed:,} more changes"
    assert 1 <= listed <= show
    assert blocks[-1]["elements"][0]["text"] == "…and 590 more risks"


def test_blocks_never_leave_a_heading_without_its_changes():
    subjects = [f"{kind}: {'y' * 140} {n}" for kind in ("feat", "fix", "perf") for n in range(40)]
    blocks = changes_blocks(changeset(*subjects), show=200, max_blocks=4)
    assert validate_blocks(blocks) == []
    assert len(blocks) <= 4
    for block in blocks[1:-1]:
        assert not block["text"]["text"].rstrip().endswith("*")
