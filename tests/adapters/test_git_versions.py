"""The next version from the few newest tags git sorts for us equals the one from every tag of
the history, on real repositories with messy, random tag histories."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from bot.adapters.git_clone import read_branch, sync_tags, tags_matching
from bot.domain.versions import next_candidate
from tests.helpers.repos import git

MESSY = ["v0.13.3-final", "bd-12", "v1.2.3-rc.01", "v1.2.3-beta.1", "v9.9.9-garbage", "v1"]


def random_history(rng: random.Random, where: Path) -> Path:
    """A bare remote whose main has random tags of ours and others', some on a side branch
    (not in main's history)."""
    bare, work = where / "remote.git", where / "work"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=where)
    git("init", "-q", "-b", "main", str(work), cwd=where)
    lines = []
    for n in range(12):
        git("commit", "-q", "--allow-empty", "-m", f"c{n}", cwd=work)
        sha = git("rev-parse", "HEAD", cwd=work)
        for _ in range(rng.randint(0, 8)):
            major, minor, patch = rng.randint(0, 2), rng.randint(0, 12), rng.randint(0, 3)
            name = f"v{major}.{minor}.{patch}"
            if rng.random() < 0.6:
                name += f"-rc.{rng.randint(0, 12)}"
            if rng.random() < 0.1:
                name = rng.choice(MESSY)
            lines.append(f"create refs/tags/{name} {sha}\n")
    git("checkout", "-q", "-b", "side", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", "side", cwd=work)
    lines.append(f"create refs/tags/v5.0.0 {git('rev-parse', 'HEAD', cwd=work)}\n")
    git("checkout", "-q", "main", cwd=work)
    unique = list({line.split()[1]: line for line in lines}.values())
    subprocess.run(["git", "update-ref", "--stdin"], input="".join(unique), text=True, cwd=work)
    git("push", "-q", "--tags", str(bare), "main", "side", cwd=work)
    return bare


@pytest.mark.parametrize("seed", range(8))
def test_the_newest_tags_decide_as_all_of_them_would(tmp_path: Path, seed: int) -> None:
    bare = random_history(random.Random(seed), tmp_path)
    clone = tmp_path / "clone"
    sync_tags(str(bare), clone, "origin")
    snapshot = read_branch(str(bare), clone, "origin", "main", "v")
    every = git("tag", "--merged", "origin/main", cwd=clone).split()
    assert "v5.0.0" not in every  # on the side branch only
    assert str(next_candidate(snapshot.tags_in_history, "v")) == str(next_candidate(every, "v"))


def test_a_long_history_gives_only_its_newest_tags(tmp_path: Path) -> None:
    bare, work = tmp_path / "remote.git", tmp_path / "work"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    git("commit", "-q", "--allow-empty", "-m", "one", cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work)
    lines = [
        f"create refs/tags/v0.{m}.0{suffix} {sha}\n"
        for m in range(3_000)
        for suffix in ("-rc.1", "-rc.2", "")
    ]
    lines += [f"create refs/tags/v0.3000.0-rc.{n} {sha}\n" for n in range(1, 11)]
    subprocess.run(["git", "update-ref", "--stdin"], input="".join(lines), text=True, cwd=work)
    git("push", "-q", "--tags", str(bare), "main", cwd=work)
    clone = tmp_path / "clone"
    sync_tags(str(bare), clone, "origin")
    snapshot = read_branch(str(bare), clone, "origin", "main", "v")
    assert snapshot.tags_in_history == (
        *(f"v0.3000.0-rc.{n}" for n in range(10, 0, -1)),
        "v0.2999.0",
    )
    assert str(next_candidate(snapshot.tags_in_history, "v")) == "0.3000.0-rc.11"
    found = tags_matching(clone, ("v0.2999.*", "v0.5.0-rc.2"))
    assert sorted(found) == ["v0.2999.0", "v0.2999.0-rc.1", "v0.2999.0-rc.2", "v0.5.0-rc.2"]
    assert set(found.values()) == {sha}
