"""Real git repositories in a test's tmp dir: a bare "remote" and a developer's clone."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Commits get a fixed author, and no user's or system's git config changes what git does.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path) -> str:
    out = subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    )
    return out.stdout.strip()


@dataclass
class GitRemote:
    """A bare "remote" and a developer's clone of it, with a messy tag history."""

    bare: Path
    work: Path

    def commit(self, message: str, content: str | None = None) -> str:
        (self.work / "app.txt").write_text((content or message) + "\n")
        git("add", "app.txt", cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def commit_file(self, name: str, text: str, message: str | None = None) -> str:
        """Commit `text` as the file `name` on main and push it; the new head."""
        path = self.work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        git("add", name, cwd=self.work)
        git("commit", "-q", "-m", message or f"add {name}", cwd=self.work)
        git("push", "-q", "origin", "main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def tag(self, name: str, annotated: bool = False) -> None:
        if annotated:
            git("tag", "-a", name, "-m", name, cwd=self.work)
        else:
            git("tag", name, cwd=self.work)

    def push(self) -> None:
        git("push", "-q", "--tags", "origin", "main", cwd=self.work)

    def remote_tags(self) -> dict[str, str]:
        """tag -> commit on the bare remote."""
        out = git(
            "for-each-ref",
            "refs/tags",
            "--format=%(refname:strip=2) %(objectname) %(*objectname)",
            cwd=self.bare,
        )
        tags = {}
        for line in out.splitlines():
            parts = line.split()
            tags[parts[0]] = parts[2] if len(parts) > 2 else parts[1]
        return tags

    def tag_message(self, tag: str) -> str:
        return git("for-each-ref", f"refs/tags/{tag}", "--format=%(contents)", cwd=self.bare)

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.work)


def messy_remote(where: Path) -> GitRemote:
    """A remote with the tag history a real team has: tags of other schemes, an old final,
    a candidate and its final, a patch release, and work after the last tag."""
    bare = where / "remote.git"
    work = where / "work"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=where)
    git("clone", "-q", str(bare), str(work), cwd=where)
    git("checkout", "-q", "-b", "main", cwd=work)
    remote = GitRemote(bare=bare, work=work)
    remote.commit("first")
    remote.tag("v0.8.1-bug-fixes")
    remote.commit("second")
    remote.tag("v0.13.3-final", annotated=True)
    remote.tag("bd-12")
    remote.tag("20240315-1200")
    remote.commit("third")
    remote.tag("v0.14.0-rc.1", annotated=True)
    remote.tag("v0.14.0", annotated=True)
    remote.commit("fourth")
    remote.tag("v0.14.1", annotated=True)
    remote.commit("infrastructure changes")
    remote.push()
    return remote
