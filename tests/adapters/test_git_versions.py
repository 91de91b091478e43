"""The next version from the few newest tags git sorts for us, and from the version index in
Redis, equals the one from every tag of the history, on real repositories with messy, random
tag histories."""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.adapters.git_clone import GitClone, read_branch, sync_tags, tags_matching
from bot.adapters.redis.keys import Keys
from bot.adapters.redis.version_index import RedisVersionIndex
from bot.domain.config import Config
from bot.domain.versions import next_candidate, parse_tag
from bot.services import version_history
from tests.helpers.config import make_config
from tests.helpers.repos import GitRemote, git

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


@dataclass
class IndexedClone:
    """What finding the tags of a history through the index needs, all real."""

    git: GitClone
    versions: RedisVersionIndex
    config: Config
    clock: Callable[[], float] = time.time


def indexed_clone(where: Path, redis, prefix: str) -> IndexedClone:
    config = make_config(GitRemote(where / "remote.git", where / "work"), where)
    return IndexedClone(
        GitClone(str(where / "remote.git"), where / "clone", "origin", tag_prefix="v"),
        RedisVersionIndex(redis, Keys(prefix), "v"),
        config,
    )


@pytest.mark.parametrize("seed", range(8))
async def test_the_index_decides_as_every_tag_would(tmp_path: Path, redis, prefix, seed) -> None:
    random_history(random.Random(seed), tmp_path)
    needs = indexed_clone(tmp_path, redis, prefix)
    assert not await needs.versions.is_built()
    await needs.git.fetch_branches()
    head = (await needs.git.read_head("main")).head_sha
    found = await version_history.tags_in_history(needs, "main", head, may_rebuild=True)
    assert await needs.versions.is_built()
    every = git("tag", "--merged", "origin/main", cwd=tmp_path / "clone").split()
    assert "v5.0.0" not in found  # the newest version, but on the side branch only
    assert str(next_candidate(found, "v")) == str(next_candidate(every, "v"))
    listed = read_branch(str(tmp_path / "remote.git"), tmp_path / "clone", "origin", "main", "v")
    # git's listing also holds others' tags (v9.9.9-garbage), which no version is made of.
    assert found == tuple(t for t in listed.tags_in_history if parse_tag(t, "v") is not None)


async def test_an_index_not_built_is_not_written_by_a_reader(tmp_path: Path, redis, prefix) -> None:
    random_history(random.Random(1), tmp_path)
    needs = indexed_clone(tmp_path, redis, prefix)
    await needs.git.fetch_branches()
    head = (await needs.git.read_head("main")).head_sha
    found = await version_history.tags_in_history(needs, "main", head, may_rebuild=False)
    every = git("tag", "--merged", "origin/main", cwd=tmp_path / "clone").split()
    assert str(next_candidate(found, "v")) == str(next_candidate(every, "v"))
    assert not await needs.versions.is_built()
    assert await redis.exists(Keys(prefix).versions) == 0


async def test_a_tag_pushed_while_the_rebuild_reads_git_is_kept(tmp_path: Path, redis, prefix):
    index = RedisVersionIndex(redis, Keys(prefix), "v")
    await index.add("v0.1.0", "a" * 40)  # before the rebuild: git's list decides
    await index.begin_rebuild()
    await index.add("v0.3.0-rc.1", "c" * 40)  # pushed while git's list was read
    await index.add("v0.2.0-rc.9", "d" * 40)
    await index.remove("v0.2.0-rc.9")  # and taken back
    assert (
        await index.rebuild({"v0.2.0": "b" * 40, "v0.2.0-rc.1": "b" * 40, "bd-12": "e" * 40}, 1.0)
        == 2
    )
    assert await index.newest(0, 10) == [
        ("v0.3.0-rc.1", "c" * 40),
        ("v0.2.0", "b" * 40),
        ("v0.2.0-rc.1", "b" * 40),
    ]  # v0.1.0 is gone with the old index: git no longer lists it
    assert await index.newest(1, 1) == [("v0.2.0", "b" * 40)]
    assert await index.commit_of("v0.3.0-rc.1") == "c" * 40
    assert await index.commit_of("v0.1.0") is None
    assert await index.commit_of("bd-12") is None
    await index.begin_rebuild()
    assert await index.rebuild({}, 2.0) == 0  # every tag deleted
    assert await index.newest(0, 10) == []
    assert await index.is_built()
    assert not await RedisVersionIndex(redis, Keys(prefix), "release-").is_built()
    assert await redis.keys(f"{prefix}versions:rebuild:*") == []


async def test_adding_a_tag_again_keeps_one_entry_for_it(redis, prefix):
    index = RedisVersionIndex(redis, Keys(prefix), "v")
    await index.add("v1.0.0", "a" * 40)
    await index.add("v1.0.0", "b" * 40)  # moved and pushed again
    assert await index.newest(0, 10) == [("v1.0.0", "b" * 40)]
    await index.add("not-ours", "c" * 40)
    assert await index.newest(0, 10) == [("v1.0.0", "b" * 40)]


async def test_a_tag_list_seen_before_writes_nothing(redis, prefix):
    index = RedisVersionIndex(redis, Keys(prefix), "v")
    tags = {f"v0.{n}.0": f"{n:040x}" for n in range(5_000)}
    await index.begin_rebuild()
    assert await index.rebuild(tags, 1.0) == 5_000
    synced = json.loads(await redis.get(Keys(prefix).versions_synced))
    await index.begin_rebuild()
    await index.rebuild(dict(tags), 2.0)
    assert json.loads(await redis.get(Keys(prefix).versions_synced)) == synced
    del tags["v0.4999.0"]  # deleted on the remote
    await index.begin_rebuild()
    await index.rebuild(tags, 3.0)
    assert json.loads(await redis.get(Keys(prefix).versions_synced))["at"] == 3.0
    assert await index.newest(0, 1) == [("v0.4998.0", f"{4998:040x}")]
