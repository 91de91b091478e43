"""A checkout of a version the bot's clone already has is made without a fetch, but only
while the remote's tag still points at the recorded commit. Real git repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.adapters import git_clone as gitrepo
from tests.helpers.repos import git


@pytest.fixture
def clone(git_remote, tmp_path: Path) -> Path:
    """The bot's clone, fetched once (as creating a candidate does)."""
    path = tmp_path / "clone"
    gitrepo.sync_tags(str(git_remote.bare), path, "origin")
    return path


def local_tags(path: Path) -> set[str]:
    return set(git("tag", "--list", cwd=path).split())


def checkout(git_remote, clone: Path, tag: str, sha: str) -> Path:
    return gitrepo.checkout(str(git_remote.bare), clone, "origin", tag, sha)


@pytest.mark.parametrize("tag", ["v0.14.1", "bd-12"])  # annotated, lightweight
def test_a_version_the_clone_has_is_checked_out_without_a_fetch(git_remote, clone, tag):
    sha = git_remote.remote_tags()[tag]
    git_remote.commit("later work")
    git_remote.tag("v9.9.9")
    git_remote.push()
    tree = checkout(git_remote, clone, tag, sha)
    try:
        assert (tree / "app.txt").read_text() == git(
            "show", f"{sha}:app.txt", cwd=git_remote.work
        ) + "\n"
        assert not (tree / ".git").exists()
    finally:
        gitrepo.remove_tree(tree)
    assert "v9.9.9" not in local_tags(clone)  # nothing was fetched for it


def test_a_tag_moved_on_the_remote_is_refused_though_the_clone_has_the_recorded_commit(
    git_remote, clone
):
    sha = git_remote.remote_tags()["v0.14.1"]
    other = git_remote.commit("sneaky")
    git("tag", "-f", "-a", "v0.14.1", "-m", "moved", other, cwd=git_remote.work)
    git("push", "-q", "-f", "origin", "v0.14.1", cwd=git_remote.work)
    with pytest.raises(gitrepo.GitError, match="someone moved it"):
        checkout(git_remote, clone, "v0.14.1", sha)


def test_a_tag_deleted_on_the_remote_is_refused(git_remote, clone):
    sha = git_remote.remote_tags()["v0.14.1"]
    git("push", "-q", "origin", ":refs/tags/v0.14.1", cwd=git_remote.work)
    with pytest.raises(gitrepo.GitError, match="not on origin any more"):
        checkout(git_remote, clone, "v0.14.1", sha)


def test_a_ref_that_only_ends_like_the_tag_does_not_count(git_remote, clone):
    """ls-remote matches the end of ref names: refs/tags/x/refs/tags/v0.14.1 is not v0.14.1."""
    sha = git_remote.remote_tags()["v0.14.1"]
    git("tag", "x/refs/tags/v0.14.1", sha, cwd=git_remote.work)
    git("push", "-q", "origin", "x/refs/tags/v0.14.1", ":refs/tags/v0.14.1", cwd=git_remote.work)
    with pytest.raises(gitrepo.GitError, match="not on origin any more"):
        checkout(git_remote, clone, "v0.14.1", sha)


def test_a_tag_the_clone_has_not_seen_is_fetched_first(git_remote, clone):
    sha = git_remote.commit("new work")
    git_remote.tag("v0.16.0", annotated=True)
    git_remote.push()
    tree = checkout(git_remote, clone, "v0.16.0", sha)
    try:
        assert (tree / "app.txt").read_text() == "new work\n"
    finally:
        gitrepo.remove_tree(tree)
    assert "v0.16.0" in local_tags(clone)


def test_a_clone_of_another_url_or_a_damaged_one_is_fetched_and_mended(git_remote, clone, tmp_path):
    sha = git_remote.remote_tags()["v0.14.1"]
    mirror = tmp_path / "mirror.git"
    git("clone", "-q", "--mirror", str(git_remote.bare), str(mirror), cwd=tmp_path)
    tree = gitrepo.checkout(str(mirror), clone, "origin", "v0.14.1", sha)
    gitrepo.remove_tree(tree)
    assert git("remote", "get-url", "origin", cwd=clone) == str(mirror)
    (clone / ".git" / "HEAD").write_text("garbage\n")
    tree = gitrepo.checkout(str(mirror), clone, "origin", "v0.14.1", sha)
    try:
        assert (tree / "app.txt").read_text() == "fourth\n"
    finally:
        gitrepo.remove_tree(tree)
