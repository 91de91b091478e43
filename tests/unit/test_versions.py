import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.versions import (
    VersionError,
    index_member,
    index_prefix,
    is_final_tag,
    next_candidate,
    parse_tag,
    read_index_member,
    release_versions,
)

MESSY = [
    "v0.13.3-final",
    "bd-12",
    "v0.8.1-bug-fixes",
    "20240315-1200",
    "1700000000",
    "v1",
    "v1.2",
    "v01.2.3",
    "v1.2.3-rc.01",
    "v1.2.3-rc.x",
    "v1.2.3-beta.1",
    "release-1.0",
    "v1.2.3+build.5",
    "v",
    "",
    "vv1.2.3",
    "v1.2.3-rc",
    "v1.2.3-RC.1",
    "v-1.2.3",
]


def tags_of(*names: str) -> list[str]:
    return list(names)


def test_after_a_final_the_next_candidate_is_a_minor_bump():
    assert str(next_candidate(["v0.14.0", "v0.14.1"], "v")) == "0.15.0-rc.1"


def test_a_pending_candidate_is_continued():
    assert str(next_candidate(["v0.14.1", "v0.15.0-rc.1"], "v")) == "0.15.0-rc.2"


def test_rc_10_sorts_after_rc_2():
    tags = ["v0.14.1"] + [f"v0.15.0-rc.{n}" for n in range(1, 11)]
    assert str(next_candidate(tags, "v")) == "0.15.0-rc.11"
    versions = release_versions(tags, "v")
    assert str(versions[-1]) == "0.15.0-rc.10"


def test_a_final_closes_its_candidates():
    tags = ["v0.15.0-rc.1", "v0.15.0-rc.2", "v0.15.0"]
    assert str(next_candidate(tags, "v")) == "0.16.0-rc.1"


@pytest.mark.parametrize(
    ("bump", "expected"),
    [("major", "1.0.0-rc.1"), ("minor", "0.15.0-rc.1"), ("patch", "0.14.2-rc.1")],
)
def test_bump_overrides_the_default(bump, expected):
    assert str(next_candidate(["v0.14.1"], "v", bump)) == expected


def test_explicit_bump_equal_to_the_pending_version_continues_it():
    assert str(next_candidate(["v0.14.1", "v0.15.0-rc.3"], "v", "minor")) == "0.15.0-rc.4"


def test_explicit_bump_past_the_pending_version_starts_a_new_one():
    assert str(next_candidate(["v0.14.1", "v0.15.0-rc.3"], "v", "major")) == "1.0.0-rc.1"


def test_explicit_bump_below_a_pending_version_is_refused():
    with pytest.raises(VersionError, match="lower"):
        next_candidate(["v0.14.1", "v1.0.0-rc.1"], "v", "patch")


def test_no_history_starts_at_0_1_0():
    assert str(next_candidate([], "v")) == "0.1.0-rc.1"


def test_messy_tags_are_ignored():
    assert all(parse_tag(t, "v") is None for t in MESSY)
    assert str(next_candidate([*MESSY, "v0.14.1"], "v")) == "0.15.0-rc.1"


def test_other_prefixes():
    assert str(next_candidate(["release/1.2.0", "v9.9.9"], "release/")) == "1.3.0-rc.1"
    assert str(next_candidate(["1.2.0"], "")) == "1.3.0-rc.1"
    assert next_candidate(["1.2.0"], "").tag("") == "1.3.0-rc.1"


@given(st.lists(st.text(max_size=30), max_size=30))
def test_any_tag_history_never_crashes(tags):
    version = next_candidate(tags, "v")
    assert version.is_candidate


@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(0, 3),
            st.integers(0, 3),
            st.one_of(st.none(), st.integers(1, 12)),
        ),
        max_size=20,
    )
)
def test_the_next_candidate_is_newer_than_every_known_version(parts):
    tags = [f"v{a}.{b}.{c}" + (f"-rc.{n}" if n else "") for a, b, c, n in parts]
    version = next_candidate(tags, "v")
    assert all(version > v for v in release_versions(tags, "v"))
    assert version.tag("v") not in tags


def _reference_next_candidate(tags: list[str], prefix: str) -> str:
    """The rule as first written, with semver objects all the way (slow over a long history):
    the oracle the fast version must agree with."""
    import semver

    versions = sorted(
        {
            semver.Version.parse(t[len(prefix) :])
            for t in tags
            if t.startswith(prefix) and parse_tag(t, prefix) is not None
        }
    )
    finals = [v for v in versions if v.prerelease is None]
    final = max(finals, default=None)
    pending = [v for v in versions if v.prerelease is not None and (final is None or v > final)]
    base = final or semver.Version(0, 0, 0)
    target = max((v.finalize_version() for v in pending), default=None) or base.bump_minor()
    numbers = [int(v.prerelease.split(".")[1]) for v in pending if v.finalize_version() == target]
    return str(target.replace(prerelease=f"rc.{max(numbers, default=0) + 1}"))


@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.integers(0, 4),
                st.integers(0, 12),
                st.integers(0, 3),
                st.one_of(st.none(), st.integers(0, 12)),
            ).map(lambda p: f"v{p[0]}.{p[1]}.{p[2]}" + ("" if p[3] is None else f"-rc.{p[3]}")),
            st.sampled_from(MESSY),
        ),
        max_size=40,
    )
)
def test_the_fast_rule_agrees_with_semver_over_any_history(tags):
    assert str(next_candidate(tags, "v")) == _reference_next_candidate(tags, "v")


# --- the version index's members -----------------------------------------------------------

version_parts = st.tuples(
    st.integers(0, 10**10 - 1),
    st.integers(0, 10**10 - 1),
    st.integers(0, 10**10 - 1),
    st.none() | st.integers(0, 10**10 - 1),
)


def tag_of(parts: tuple[int, int, int, int | None], prefix: str = "v") -> str:
    major, minor, patch, rc = parts
    return f"{prefix}{major}.{minor}.{patch}" + ("" if rc is None else f"-rc.{rc}")


@given(
    st.lists(version_parts, min_size=1, max_size=40, unique=True),
    st.sampled_from(["v", "", "rel-"]),
)
def test_index_members_sort_byte_by_byte_as_the_versions_do(parts, prefix):
    tags = [tag_of(p, prefix) for p in parts]
    members = [index_member(t, "a" * 40, prefix) or "" for t in tags]
    assert all(members)
    # Redis compares members byte by byte (memcmp) in a BYLEX range.
    by_bytes = [read_index_member(m)[0] for m in sorted(members, key=str.encode)]
    assert by_bytes == [v.tag(prefix) for v in release_versions(tags, prefix)]
    for tag, member in zip(tags, members, strict=True):
        start = index_prefix(tag, prefix) or ""
        assert [m for m in members if m.startswith(start)] == [member]


def test_only_the_bots_tags_have_members():
    assert all(index_member(t, "a" * 40, "v") is None for t in MESSY)
    assert index_member("v1.2.3", "a" * 40, "") is None  # another prefix
    assert index_member(f"v{10**10}.0.0", "a" * 40, "v") is None  # past what sorts by digits
    assert read_index_member(index_member("v1.2.3-rc.4", "b" * 40, "v") or "") == (
        "v1.2.3-rc.4",
        "b" * 40,
    )
    assert is_final_tag("v1.2.3", "v") and not is_final_tag("v1.2.3-rc.1", "v")
    assert not is_final_tag("bd-12", "v")
