"""The bot's own clone of the released repository (GitPython, blocking).

Every function here blocks; `GitClone` at the end is what async code uses: it runs them off
the event loop. Each opens a fresh `Repo` and closes it (GitPython leaks in long-lived
processes otherwise), and holds a file lock on the clone so that two processes on one host
never run git in it at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import fnmatch
import functools
import os
import pwd
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

import git

from bot.domain.changes import TRAILER, Change, Changeset, parse_commit, pathspec_problem
from bot.domain.versions import parse_tag
from bot.services.ports import GitError, PushRejected, Snapshot, TagExists

BOT_NAME = "releasebot"
BOT_EMAIL = "releasebot@localhost"


def _clean(exc: git.GitCommandError) -> str:
    """The useful lines of git's stderr, without credentials embedded in URLs."""
    text = exc.stderr if isinstance(exc.stderr, str) else str(exc)
    text = re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", text)
    lines = [
        ln.strip().removeprefix("stderr:").strip().strip("'").strip()
        for ln in text.strip().splitlines()
    ]
    lines = [ln for ln in lines if ln]
    return "\n".join(lines[-6:]) or "git failed"


P = ParamSpec("P")
T = TypeVar("T")


def _git_errors(work: Callable[P, T]) -> Callable[P, T]:
    """Only GitError leaves this module: GitPython and the OS raise others too (a NUL byte in a
    message is a ValueError, a damaged clone an InvalidGitRepositoryError), and a caller that
    undoes its work on GitError must not be surprised by them."""

    @functools.wraps(work)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return work(*args, **kwargs)
        except GitError:
            raise
        except Exception as exc:
            raise GitError(f"git failed: {type(exc).__name__}: {exc}"[:500]) from exc

    return guarded


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _repo(path: Path) -> Iterator[git.Repo]:
    repo = git.Repo(path)
    try:
        yield repo
    finally:
        repo.close()


@_git_errors
def sync(url: str, path: Path, remote: str, branch: str, tag_prefix: str = "") -> Snapshot:
    """Clone the repository if needed, fetch branches and tags, and read the release branch."""
    repaired = sync_tags(url, path, remote)
    return dataclasses.replace(
        read_branch(url, path, remote, branch, tag_prefix), repaired=repaired
    )


# git orders versions as semver does once it knows that `-rc.` comes before the release
# (v1.2.0-rc.9 < v1.2.0-rc.10 < v1.2.0): for the bot's tags its order is ours.
_VERSION_ORDER = {
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "versionsort.suffix",
    "GIT_CONFIG_VALUE_0": "-rc.",
}


@_git_errors
def read_branch(url: str, path: Path, remote: str, branch: str, tag_prefix: str = "") -> Snapshot:
    """The release branch as last fetched: its head, and the newest tags of the bot's form in
    its history (all that the next version depends on)."""
    with _locked(path), _repo(path) as repo:
        head, subject = _head(repo, url, remote, branch)
        recent = _newest_versions(repo, head, tag_prefix)
    return Snapshot(head_sha=head, head_subject=subject, tags_in_history=recent)


def _head(repo: git.Repo, url: str, remote: str, branch: str) -> tuple[str, str]:
    """The commit and subject of the release branch's head, as last fetched."""
    ref = f"refs/remotes/{remote}/{branch}"
    try:
        head = str(repo.git.rev_parse("--verify", f"{ref}^{{commit}}"))
    except git.GitCommandError:
        raise GitError(
            f"the release branch `{branch}` does not exist on {remote} ({_safe_url(url)})"
        ) from None
    return head, str(repo.git.log("-1", "--format=%s", head))


def _newest_versions(repo: git.Repo, head: str, prefix: str) -> tuple[str, ...]:
    """The tags in `head`'s history from the newest version down to the newest final one,
    newest first. git sorts them, so a history of 20,000 tags costs Python a few dozen: the
    candidates above the last final and that final are all a next version is made from."""
    glob = not any(c in prefix for c in "*?[\\")
    pattern = f"refs/tags/{prefix}[0-9]*" if glob else "refs/tags/"
    count = 64
    while True:
        with repo.git.custom_environment(**_VERSION_ORDER):
            listing = str(
                repo.git.for_each_ref(
                    f"--merged={head}",
                    "--sort=-v:refname",
                    f"--count={count}",
                    "--format=%(refname:strip=2)",
                    pattern,
                )
            )
        tags = listing.split()
        for n, tag in enumerate(tags):
            found = parse_tag(tag, prefix)
            if found is not None and not found.is_candidate:
                return tuple(tags[: n + 1])
        if len(tags) < count:
            return tuple(tags)  # no final at all: every tag there is
        count *= 8


@_git_errors
def tags_matching(path: Path, patterns: tuple[str, ...]) -> dict[str, str]:
    """Tags named by `patterns` (exact names or globs, `v0.15.*`), each with the commit it
    points at, as last fetched."""
    return _tags_matching(path, patterns)


def _tags_matching(path: Path, patterns: tuple[str, ...]) -> dict[str, str]:
    if not patterns:
        return {}
    with _locked(path), _repo(path) as repo:
        listing = str(
            repo.git.for_each_ref(
                "--format=%(refname:strip=2) %(objectname) %(*objectname)",
                *(f"refs/tags/{p}" for p in patterns),
            )
        )
    found: dict[str, str] = {}
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            found[parts[0]] = parts[2] if len(parts) > 2 else parts[1]
    return found


def _safe_url(url: str) -> str:
    return re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", url)


@_git_errors
def create_and_push_tag(path: Path, remote: str, tag: str, sha: str, message: str) -> None:
    """Create an annotated tag on `sha` and push it; on any failure no tag is left behind."""
    with _locked(path), _repo(path) as repo:
        try:
            repo.git.rev_parse("--verify", f"refs/tags/{tag}")
        except git.GitCommandError:
            pass
        else:
            raise TagExists(f"tag {tag} already exists")
        author = {"GIT_COMMITTER_NAME": BOT_NAME, "GIT_COMMITTER_EMAIL": BOT_EMAIL}
        try:
            with repo.git.custom_environment(**author):
                repo.git.tag("-a", tag, sha, "-m", message)
        except git.GitCommandError as exc:
            raise GitError(f"cannot create tag {tag}:\n{_clean(exc)}") from None
        try:
            repo.git.push(remote, f"refs/tags/{tag}:refs/tags/{tag}")
        except git.GitCommandError as exc:
            repo.git.tag("-d", tag)
            detail = _clean(exc)
            if "already exists" in detail:
                raise TagExists(f"tag {tag} already exists on {remote}") from None
            raise PushRejected(f"{remote} rejected tag {tag}:\n{detail}") from None


@_git_errors
def delete_remote_tag(path: Path, remote: str, tag: str) -> None:
    """Undo a pushed tag (used when the release could not be recorded after the push)."""
    with _locked(path), _repo(path) as repo:
        with contextlib.suppress(git.GitCommandError):
            repo.git.push(remote, f":refs/tags/{tag}")
        with contextlib.suppress(git.GitCommandError):
            repo.git.tag("-d", tag)


@_git_errors
def checkout(url: str, path: Path, remote: str, tag: str, sha: str, owner: str = "") -> Path:
    """A fresh tree of `tag`, in a temporary folder of its own, owned by `owner` if given.

    Refuses when the tag no longer points at `sha` on the remote (someone moved or deleted
    it): a deploy runs exactly the tested commit, and deploy scripts that use $RELEASE_TAG
    must get that commit too. The remote is asked about this one tag (ls-remote); if it
    still points at `sha` and the clone already has that commit (a rollback to a version
    deployed before, a candidate this bot tagged), the tree is made without a fetch, the
    longest step before a deploy's command starts when the remote is across a network.
    Otherwise everything is fetched first (another worker may have made the tag), and the
    tag is checked in the fetched clone.
    """
    if _remote_tag(path, remote, url, tag) == sha:
        with _locked(path), _repo(path) as repo:
            if _has_commit(repo, sha):
                return _export(repo, sha, tag, owner)
    sync_tags(url, path, remote)
    with _locked(path), _repo(path) as repo:
        try:
            found = repo.git.rev_parse("--verify", f"refs/tags/{tag}^{{commit}}")
        except git.GitCommandError:
            raise GitError(f"tag {tag} is not on {remote} any more") from None
        if found != sha:
            raise GitError(
                f"tag {tag} now points at {found[:10]}, not at the released "
                f"{sha[:10]}; someone moved it, so I will not deploy it"
            )
        return _export(repo, sha, tag, owner)


def _remote_tag(path: Path, remote: str, url: str, tag: str) -> str | None:
    """The commit `tag` points at on the remote now, asking for that tag only (nothing is
    fetched); None if the remote does not have it or that cannot be told here (no clone yet,
    a clone of another URL, a damaged clone, the remote unreachable)."""
    if not (path / ".git").is_dir():
        return None
    ref = f"refs/tags/{tag}"
    try:
        with _locked(path), _repo(path) as repo:
            if remote not in [r.name for r in repo.remotes] or repo.remote(remote).url != url:
                return None
            listing = str(repo.git.ls_remote(remote, ref, f"{ref}^{{}}"))
    except Exception:  # whatever it is, the fetch that follows says it properly
        return None
    found: dict[str, str] = {}
    for line in listing.splitlines():
        commit, _, name = line.partition("\t")
        found[name] = commit
    # An annotated tag is listed twice: as itself, and as `ref^{}`, the commit it points at.
    return found.get(f"{ref}^{{}}") or found.get(ref)


def _has_commit(repo: git.Repo, sha: str) -> bool:
    """Whether the clone holds the commit `sha` (a full clone then has its whole tree)."""
    try:
        return bool(repo.git.cat_file("-t", sha) == "commit")
    except git.GitCommandError:
        return False


def _export(repo: git.Repo, ref: str, name: str, owner: str) -> Path:
    """The files of `ref` in a new temporary folder, and nothing else: no `.git` that would
    lead a command (the released repository's code) into the bot's clone, its config or the
    credentials in its remote URL. Made through a temporary index, so the clone is untouched."""
    target = Path(tempfile.mkdtemp(prefix="releasebot-wt-"))
    try:
        with (
            tempfile.TemporaryDirectory() as scratch,
            repo.git.custom_environment(GIT_INDEX_FILE=str(Path(scratch) / "index")),
        ):
            repo.git.read_tree(ref)
            repo.git.checkout_index("-a", "-f", f"--prefix={target}/")
        if owner:
            _give(target, owner)
    except Exception as exc:
        shutil.rmtree(target, ignore_errors=True)
        detail = _clean(exc) if isinstance(exc, git.GitCommandError) else str(exc)
        raise GitError(f"cannot check out {name}:\n{detail}") from None
    return target


def _give(tree: Path, owner: str) -> None:
    """Hand the tree to the user commands run as (worker.run_as)."""
    entry = pwd.getpwnam(owner)
    for root, dirs, files in os.walk(tree):
        for name in [*dirs, *files]:
            os.chown(Path(root) / name, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    os.chown(tree, entry.pw_uid, entry.pw_gid)


@_git_errors
def sync_tags(url: str, path: Path, remote: str) -> str | None:
    """Clone if needed and fetch the remote's branches and tags, dropping local tags the
    remote no longer has. A damaged clone is removed and made again: returns why, if so."""
    return _fetch(url, path, remote, tags=True)


@_git_errors
def fetch_branches(url: str, path: Path, remote: str) -> str | None:
    """As `sync_tags`, but the branches only, no tag (a candidate's versions come from the
    version index). Listing a remote's tags costs it time in proportion to them: 0.14 s of
    git at 20,000 tags, against 0.02 s for its branches."""
    return _fetch(url, path, remote, tags=False)


def _fetch(url: str, path: Path, remote: str, *, tags: bool) -> str | None:
    with _locked(path):
        damage = _damage(path)
        try:
            if damage is not None or not (path / ".git").exists():
                _remove(path)
                git.Repo.clone_from(url, path, no_checkout=True, origin=remote).close()
            with _repo(path) as repo:
                repo.git.remote("set-url", remote, url)
                # Explicit refspecs for both: with a refspec given, --prune-tags prunes
                # nothing, and versions were computed from tags deleted on the remote.
                refspecs = [f"+refs/heads/*:refs/remotes/{remote}/*"]
                if tags:
                    refspecs.append("+refs/tags/*:refs/tags/*")
                else:
                    refspecs.insert(0, "--no-tags")
                repo.git.fetch(remote, "--prune", "--force", *refspecs)
                if tags:
                    repo.git.worktree("prune")
        except git.GitCommandError as exc:
            raise GitError(f"cannot fetch {_safe_url(url)}:\n{_clean(exc)}") from None
    return damage


@_git_errors
def read_head(url: str, path: Path, remote: str, branch: str) -> Snapshot:
    """The release branch's head as last fetched, without its tags."""
    with _locked(path), _repo(path) as repo:
        head, subject = _head(repo, url, remote, branch)
    return Snapshot(head_sha=head, head_subject=subject, tags_in_history=())


@_git_errors
def in_history(path: Path, head: str, commits: tuple[str, ...]) -> set[str]:
    """Those of `commits` that are `head` or its ancestors. A commit the clone does not have
    is in no history of the fetched release branch, and is left out too."""
    found = set()
    with _locked(path), _repo(path) as repo:
        for commit in dict.fromkeys(commits):
            try:
                repo.git.merge_base("--is-ancestor", commit, head)
            except git.GitCommandError:
                continue
            found.add(commit)
    return found


MAX_CHANGES = 5000  # commits read for one shipped version (a first deploy of a long history)
_SHA = re.compile(r"[0-9a-f]{40}")


@_git_errors
def commit_times(path: Path, base: str, head: str) -> list[float]:
    """The commit times of the changes `head` brought since `base` (of `head` alone when
    `base` is "" or unknown to the clone). Commits are data here: only full object names go
    to git, each checked to be one, never an option."""
    if not _SHA.fullmatch(head) or (base and not _SHA.fullmatch(base)):
        return []
    with _locked(path), _repo(path) as repo:
        if not _has_commit(repo, head):
            return []
        if base and _has_commit(repo, base):
            out = repo.git.log(
                f"--max-count={MAX_CHANGES}", "--format=%ct", f"{base}..{head}", "--"
            )
        else:
            out = repo.git.log("--max-count=1", "--format=%ct", head, "--")
    return [float(line) for line in out.split() if line.isdigit()]


# The fields of one commit for `changes_between`, separated by NUL as `-z` ends each commit
# with one: git cuts a message at a NUL, so no field can hold one and every commit is exactly
# _FIELDS items, whatever its subject, body or author's name holds. %aN/%aE: as .mailmap says.
_LOG_FORMAT = "%H%x00%aN%x00%aE%x00%at%x00%s%x00%b"
_FIELDS = 6
COUNT_CAP = 100_000  # commits counted beyond those read: a bound on `rev-list --count`'s time


@_git_errors
def changes_between(
    path: Path,
    base: str,
    head: str,
    *,
    first_parent: bool = True,
    paths: tuple[str, ...] = (),
    limit: int = 500,
    risk_trailer: str = "Risk",
) -> Changeset:
    """The changes `head` brings since `base`, newest first, at most `limit` of them (the rest
    counted in `truncated`, up to COUNT_CAP).

    `base` and `head` are full commit shas (data, never options); `base` "" means no earlier
    release: the newest `limit` commits of `head`'s history. A `base` that is not an ancestor
    of `head` (history rewritten, a hotfix branch) counts from their merge base, and the note
    says so. `first_parent`: the release branch's own line, where a merged pull request is one
    change (its merge commit); otherwise every commit but merges. `paths`: pathspecs (globs
    inside the repository, `pathspec_problem` checked) that a change must touch.
    """
    for sha in (head, base) if base else (head,):
        if not _SHA.fullmatch(sha):
            raise GitError(f"not a full commit sha: {sha[:60]!r}")
    for pathspec in paths:
        if problem := pathspec_problem(pathspec):
            raise GitError(f"path filter {pathspec[:60]!r} {problem}")
    if not TRAILER.fullmatch(risk_trailer):
        raise GitError(f"not a trailer name: {risk_trailer[:60]!r}")
    limit = max(limit, 0)
    with _locked(path), _repo(path) as repo:
        for sha in (head, base) if base else (head,):
            if not _has_commit(repo, sha):
                raise GitError(f"the clone has no commit {sha[:10]}; fetch first")
        since, note = _range_base(repo, base, head)
        span = [f"{since}..{head}"] if since else [head]
        walk = ["--first-parent"] if first_parent else ["--no-merges"]
        raw = repo.git.log(
            f"--max-count={limit + 1}",  # one more than shown: whether there are more
            "--no-show-signature",  # a user's log.showSignature would mix gpg's lines in
            "--encoding=UTF-8",
            "-z",
            f"--format={_LOG_FORMAT}",
            *walk,
            *span,
            "--",
            *paths,
            stdout_as_string=False,
        )
        changes = _parse_log(bytes(raw), risk_trailer)
        truncated = 0
        if len(changes) > limit:
            changes = changes[:limit]
            counted = int(
                repo.git.rev_list("--count", f"--max-count={COUNT_CAP}", *walk, *span, "--", *paths)
            )
            truncated = max(counted - limit, 1)
            if counted >= COUNT_CAP:
                note = "; ".join(x for x in (note, f"counted up to {COUNT_CAP:,} changes") if x)
    return Changeset(changes=tuple(changes), base=since[:7], truncated=truncated, note=note)


def _range_base(repo: git.Repo, base: str, head: str) -> tuple[str, str]:
    """Where the range starts ("" for head's whole history), and a note when that is not
    `base` itself."""
    if not base:
        return "", "no earlier release: the newest commits of its history"
    try:
        repo.git.merge_base("--is-ancestor", base, head)
    except git.GitCommandError:
        pass
    else:
        return base, ""
    try:
        since = str(repo.git.merge_base(base, head)).strip()
    except git.GitCommandError:  # no common history at all
        return "", f"no history in common with {base[:7]}: the newest commits of its history"
    return since, (f"not descended from {base[:7]}: changes since their merge base {since[:7]}")


def _parse_log(raw: bytes, risk_trailer: str) -> list[Change]:
    """The commits of `git log -z --format=_LOG_FORMAT`. Text that is not UTF-8 (an old
    commit in another encoding) is shown with replacement characters rather than refused."""
    items = raw.decode("utf-8", errors="replace").split("\0")
    if items and items[-1].strip() == "":
        items.pop()  # after the last commit's NUL
    if len(items) % _FIELDS:
        raise GitError("git log gave commits in a form I cannot read")
    changes = []
    for i in range(0, len(items), _FIELDS):
        sha, author, email, time, subject, body = items[i : i + _FIELDS]
        sha = sha.strip()  # a newline between commits, from some git versions
        if not _SHA.fullmatch(sha) or not time.isdigit():
            raise GitError("git log gave commits in a form I cannot read")
        changes.append(parse_commit(sha, subject, body, author, email, float(time), risk_trailer))
    return changes


@_git_errors
def version_tags(path: Path, tag_prefix: str) -> dict[str, str]:
    """Every tag that may be of the bot's form, with the commit it points at, as last
    fetched: what the version index is rebuilt from."""
    glob = not any(c in tag_prefix for c in "*?[\\")
    return _tags_matching(path, (f"{tag_prefix}[0-9]*" if glob else "*",))


def _damage(path: Path) -> str | None:
    """What is wrong with the clone at `path`, or None (also when there is none yet)."""
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink() or not path.is_dir():
        return "a file stood where the clone should be"
    if not any(path.iterdir()):
        return None  # an empty folder: nothing cloned yet
    if not (path / ".git").is_dir():
        return "the folder was not a git clone"
    try:
        with _repo(path) as repo:
            repo.git.rev_parse("--git-dir")
    except Exception as exc:  # garbage in .git/HEAD, a broken config, missing objects…
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"git could not read it ({first[:200]})"
    return None


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


@_git_errors
def remove_tree(tree: Path) -> None:
    """Remove a tree made by `checkout` (the clone knows nothing of it)."""
    shutil.rmtree(tree, ignore_errors=True)


@_git_errors
def newest_branch(path: Path, remote: str, patterns: tuple[str, ...]) -> str | None:
    """The most recently committed remote branch matching any of `patterns` (hotfix/*), as
    last fetched."""
    with _locked(path), _repo(path) as repo:
        listing = str(
            repo.git.for_each_ref(
                f"refs/remotes/{remote}", "--sort=-committerdate", "--format=%(refname:strip=3)"
            )
        )
    for branch in listing.splitlines():
        if branch != "HEAD" and any(fnmatch.fnmatchcase(branch, p) for p in patterns):
            return branch
    return None


@_git_errors
def read_file(path: Path, ref: str, file: str) -> str | None:
    """`file` as it is at `ref` (a commit, tag or remote branch), None if it is not there."""
    with _locked(path), _repo(path) as repo:
        try:
            return str(repo.git.show(f"{ref}:{file}", strip_newline_in_stdout=False))
        except git.GitCommandError:
            return None


@_git_errors
def paths_named(path: Path, ref: str, name: str) -> list[str]:
    """Every file at `ref` whose name (the last part of its path) is `name`: where a file that
    moved between folders was then."""
    with _locked(path), _repo(path) as repo:
        try:
            listed = str(repo.git.ls_tree("-r", "--name-only", "-z", ref))
        except git.GitCommandError:
            return []
    return [p for p in listed.split("\0") if p and p.rsplit("/", 1)[-1] == name]


@_git_errors
def commit_file(
    path: Path,
    remote: str,
    branch: str,
    parent: str,
    file: str,
    content: str,
    message: str,
    author: tuple[str, str],
) -> str:
    """Commit `content` as `file` on top of `parent` and push it as the new head of `branch`.

    Made without a worktree (a temporary index), so nothing checked out is disturbed. The
    push is never forced: if someone pushed first it raises PushRejected and `branch` on the
    remote is as they left it. Returns the new commit's sha.
    """
    name, email = author
    with _locked(path), _repo(path) as repo, tempfile.TemporaryDirectory() as scratch:
        env = {
            "GIT_INDEX_FILE": str(Path(scratch) / "index"),
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": BOT_NAME,
            "GIT_COMMITTER_EMAIL": BOT_EMAIL,
        }
        try:
            with repo.git.custom_environment(**env):
                repo.git.read_tree(parent)
                staged = Path(scratch) / "content"
                staged.write_text(content, encoding="utf-8")
                blob = repo.git.hash_object("-w", str(staged))
                repo.git.update_index("--add", "--cacheinfo", f"100644,{blob},{file}")
                tree = repo.git.write_tree()
                sha = repo.git.commit_tree(tree, "-p", parent, "-m", message)
        except git.GitCommandError as exc:
            raise GitError(f"cannot commit {file}:\n{_clean(exc)}") from None
        try:
            repo.git.push(remote, f"{sha}:refs/heads/{branch}")
        except git.GitCommandError as exc:
            detail = _clean(exc)
            if any(word in detail for word in ("non-fast-forward", "fetch first", "rejected")):
                raise PushRejected(f"{remote} has newer commits on {branch}") from None
            raise GitError(f"cannot push to {branch}:\n{detail}") from None
    return str(sha)


@_git_errors
def checkout_with_file(
    url: str, path: Path, remote: str, ref: str, file: str, content: str, owner: str = ""
) -> Path:
    """A fresh tree of `ref` (a tag or sha) with `file` replaced by `content`: what runs, plus a
    flag change. Owned by `owner` if given."""
    sync_tags(url, path, remote)
    with _locked(path), _repo(path) as repo:
        target = _export(repo, ref, ref, "")
    destination = target / file
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(content, encoding="utf-8")
    if owner:
        _give(target, owner)
    return target


@dataclass(frozen=True)
class GitClone:
    """The bot's clone of the released repository, for async code (the `Repository` port):
    every call runs in a thread, so git never blocks the event loop."""

    url: str
    path: Path
    remote: str
    # Trees checked out for commands are handed to this user (worker.run_as), if set.
    owner: str = ""
    tag_prefix: str = ""  # the bot's tags are `{tag_prefix}X.Y.Z` (repository.tag_prefix)

    async def sync_tags(self) -> str | None:
        return await asyncio.to_thread(sync_tags, self.url, self.path, self.remote)

    async def sync(self, branch: str) -> Snapshot:
        return await asyncio.to_thread(
            sync, self.url, self.path, self.remote, branch, self.tag_prefix
        )

    async def fetch_branches(self) -> str | None:
        return await asyncio.to_thread(fetch_branches, self.url, self.path, self.remote)

    async def read_head(self, branch: str) -> Snapshot:
        return await asyncio.to_thread(read_head, self.url, self.path, self.remote, branch)

    async def in_history(self, head: str, commits: tuple[str, ...]) -> set[str]:
        return await asyncio.to_thread(in_history, self.path, head, commits)

    async def version_tags(self) -> dict[str, str]:
        return await asyncio.to_thread(version_tags, self.path, self.tag_prefix)

    async def commit_times(self, base: str, head: str) -> list[float]:
        """As last fetched: a caller asking for many versions syncs once first."""
        return await asyncio.to_thread(commit_times, self.path, base, head)

    async def changes_between(
        self,
        base: str,
        head: str,
        *,
        first_parent: bool = True,
        paths: tuple[str, ...] = (),
        limit: int = 500,
        risk_trailer: str = "Risk",
    ) -> Changeset:
        """As the blocking `changes_between`, on the clone as last fetched (no fetch here: the
        caller syncs first when the commits may be new)."""
        return await asyncio.to_thread(
            functools.partial(
                changes_between,
                self.path,
                base,
                head,
                first_parent=first_parent,
                paths=paths,
                limit=limit,
                risk_trailer=risk_trailer,
            )
        )

    async def read_branch(self, branch: str) -> Snapshot:
        return await asyncio.to_thread(
            read_branch, self.url, self.path, self.remote, branch, self.tag_prefix
        )

    async def tags_matching(self, patterns: tuple[str, ...]) -> dict[str, str]:
        return await asyncio.to_thread(tags_matching, self.path, patterns)

    async def newest_branch(self, patterns: tuple[str, ...]) -> str | None:
        return await asyncio.to_thread(newest_branch, self.path, self.remote, patterns)

    async def create_and_push_tag(self, tag: str, sha: str, message: str) -> None:
        await asyncio.to_thread(create_and_push_tag, self.path, self.remote, tag, sha, message)

    async def delete_remote_tag(self, tag: str) -> None:
        await asyncio.to_thread(delete_remote_tag, self.path, self.remote, tag)

    async def read_file(self, ref: str, file: str) -> str | None:
        return await asyncio.to_thread(read_file, self.path, ref, file)

    async def paths_named(self, ref: str, name: str) -> list[str]:
        return await asyncio.to_thread(paths_named, self.path, ref, name)

    async def commit_file(
        self,
        branch: str,
        parent: str,
        file: str,
        content: str,
        message: str,
        author: tuple[str, str],
    ) -> str:
        return await asyncio.to_thread(
            commit_file, self.path, self.remote, branch, parent, file, content, message, author
        )

    async def checkout(self, tag: str, sha: str) -> Path:
        return await asyncio.to_thread(
            checkout, self.url, self.path, self.remote, tag, sha, self.owner
        )

    async def checkout_with_file(self, ref: str, file: str, content: str) -> Path:
        return await asyncio.to_thread(
            checkout_with_file, self.url, self.path, self.remote, ref, file, content, self.owner
        )

    async def remove_tree(self, tree: Path) -> None:
        await asyncio.to_thread(remove_tree, tree)
