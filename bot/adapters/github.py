"""GitHub's REST API for gates and deploys: commit checks, workflow runs, deployments.

:class:`GitHubClient` wraps gidgethub's aiohttp flavour.  What it adds is what a release gate
needs from a service it polls: an answer it can trust or a clear :class:`GitHubUnavailable`.

- Rate limits are waited out, within a bound: a spent primary budget
  (``x-ratelimit-remaining: 0``) until ``x-ratelimit-reset``, a secondary limit (403 or 429)
  for its ``retry-after`` (a minute without one, as GitHub asks); 5xx answers and connection
  errors are retried a few times with backoff.  Past the bound, :class:`GitHubUnavailable`:
  a gate then waits or fails, it never passes.
- Repeated GETs are conditional (gidgethub's cache keeps each URL's ETag and body): a poll
  that finds nothing new gets a 304, which GitHub does not count against the budget.
- Auth is a token (``GITHUB_TOKEN``) or a GitHub App: the app's installation for the
  repository is looked up once, and its installation token renewed before it expires.
- No token or key ever reaches a log line or an exception message, nor a host other than
  GitHub's API: a job's log is downloaded from where GitHub redirects, without the token.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import quote, urljoin

import aiohttp
import gidgethub
import gidgethub.apps
from gidgethub import sansio
from gidgethub.aiohttp import GitHubAPI

# Re-exported: the configuration lives in a module light enough for the settings to import.
from bot.adapters.github_config import DEFAULT_API_URL as DEFAULT_API_URL
from bot.adapters.github_config import GitHubConfig as GitHubConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

CheckStateName = Literal["pending", "success", "failure", "neutral", "skipped"]

# A log line as GitHub writes it: "2024-01-01T00:00:00.0000000Z " before the text, colour
# codes within it.  What job_log_tail keeps of a line: its first 300 characters, read from at
# most the first 4 KiB of it (a line of megabytes is not held whole).
_LOG_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z ?")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_LOG_LINE_CHARS = 300
_LOG_LINE_BYTES = 4096
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

# Reads the body of a 200 answer (the default: all of it).
_Reader = Callable[[aiohttp.ClientResponse], Awaitable[bytes]]

# Check-run conclusions a gate must not pass on, beyond a plain failure: each needs a person.
_FAILED_CONCLUSIONS = frozenset(
    {"failure", "timed_out", "cancelled", "action_required", "startup_failure", "stale"}
)


class GitHubError(Exception):
    """GitHub refused a request (a 4xx other than a rate limit): ``status`` and GitHub's
    ``message``.  Never carries a credential."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"GitHub answered {status}: {message}")
        self.status = status
        self.message = message


class GitHubUnavailable(Exception):
    """GitHub could not be asked now: rate limited past the wait allowed, answering 5xx, or
    unreachable.  ``reason`` says which; the caller decides to wait or fail."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CheckState:
    """One commit status or check run on a commit, as a gate reads it.

    ``state`` is normalised: pending (not finished), success, failure (error, failure,
    timed out, cancelled, action required, ...), neutral or skipped.  ``conclusion`` is
    GitHub's own word (a status's state, a check run's conclusion)."""

    kind: Literal["status", "check_run"]
    name: str
    state: CheckStateName
    conclusion: str | None
    link: str | None
    description: str | None = None


@dataclass(frozen=True)
class RunJob:
    """One job of a workflow run: ``status`` queued, in_progress, completed (or waiting,
    requested, pending); ``conclusion`` once completed (success, failure, cancelled,
    skipped, ...).  ``id`` is what :meth:`GitHubClient.job_log_tail` takes."""

    id: int
    name: str
    status: str
    conclusion: str | None
    html_url: str


@dataclass(frozen=True)
class Run:
    """A workflow run: ``status`` queued, in_progress, completed (or waiting, requested,
    pending); ``conclusion`` once completed; the job and step running now (or last run), and
    every job, in GitHub's order."""

    id: int
    name: str
    display_title: str
    status: str
    conclusion: str | None
    html_url: str
    head_sha: str
    created_at: str
    job: str | None = None
    step: str | None = None
    jobs: tuple[RunJob, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status == "completed"

    @property
    def succeeded(self) -> bool:
        return self.status == "completed" and self.conclusion == "success"


@dataclass(frozen=True)
class WorkflowInfo:
    """A workflow: ``path`` is its file in the repository (``.github/workflows/deploy.yml``),
    ``state`` "active" or why it is not (disabled_manually, disabled_inactivity, ...)."""

    id: int
    name: str
    path: str
    state: str


@dataclass(frozen=True)
class Access:
    """What the bot's credential may do in a repository, as GitHub tells it.

    For a GitHub App (``kind`` "app"): its installation's ``permissions``, GitHub's names
    and levels ({"actions": "write", "statuses": "read", ...}); ``scopes`` None.
    For a token: ``permissions`` holds "contents", "write" or "read" as the repository's
    answer says its user may push or only pull (GitHub tells no more of a token: a
    fine-grained token's own permissions are not shown, only its user's); ``scopes`` a
    classic token's OAuth scopes (x-oauth-scopes), None for a fine-grained token, which has
    none."""

    kind: Literal["token", "app"]
    permissions: Mapping[str, str] = field(hash=False)
    scopes: tuple[str, ...] | None


@dataclass(frozen=True)
class Deployment:
    id: int
    sha: str
    ref: str
    environment: str
    task: str
    description: str | None
    created_at: str


@dataclass(frozen=True)
class DeploymentStatus:
    id: int
    state: str
    description: str
    environment: str
    log_url: str
    environment_url: str
    created_at: str


class _BoundedCache(MutableMapping[str, Any]):
    """gidgethub's ETag cache, bounded: a bot polls for months, each run adds URLs."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, Any] = OrderedDict()

    def __getitem__(self, key: str) -> Any:
        value = self._items[key]
        self._items.move_to_end(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def __delitem__(self, key: str) -> None:
        del self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


async def _read_all(response: aiohttp.ClientResponse) -> bytes:
    return await response.read()


class _API(GitHubAPI):
    """gidgethub's aiohttp client, with rate limits, 5xx and connection errors handled below
    gidgethub's parsing: every request it makes, page or token fetch, gets the same rules,
    and so do the requests the client makes itself through :meth:`send`."""

    def __init__(self, session: aiohttp.ClientSession, config: GitHubConfig) -> None:
        super().__init__(
            session,
            config.user_agent,
            cache=_BoundedCache(config.cache_size),
            base_url=config.api_url,
        )
        self._config = config

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        return await self.send(method, url, headers, body)

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        allow_redirects: bool = True,
        read: _Reader = _read_all,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request to ``url`` (absolute), exactly with ``headers``: its status, headers
        and body, ``read`` reading the body of a 200 answer.  A redirect is followed unless
        ``allow_redirects`` is False (aiohttp drops Authorization on the way to another
        origin)."""
        config = self._config
        deadline = time.monotonic() + config.max_wait
        failures = 0
        where = f"{method} {url.split('?', 1)[0]}"
        while True:
            try:
                async with self._session.request(
                    method, url, headers=headers, data=body, allow_redirects=allow_redirects
                ) as response:
                    status, answer = response.status, response.headers
                    data = await (read(response) if status == 200 else response.read())
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = f"could not reach GitHub ({type(exc).__name__}) for {where}"
                if not _safe_to_repeat(method, url):
                    raise GitHubUnavailable(f"{reason}; {_NOT_REPEATED}") from None
                failures += 1
                wait = self._retry_wait(failures, deadline, reason)
                log.warning("%s; retrying in %.1f s", reason, wait)
                await asyncio.sleep(wait)
                continue
            wait_for = _rate_limit_wait(status, answer, data)
            if wait_for is not None:
                wait, why = wait_for
                if time.monotonic() + wait > deadline:
                    raise GitHubUnavailable(
                        f"GitHub's {why} for {where}: it asks to wait {wait:.0f} s, more than "
                        f"the {config.max_wait:g} s allowed"
                    )
                log.warning("GitHub's %s for %s: waiting %.1f s", why, where, wait)
                await asyncio.sleep(wait)
                continue
            if status >= 500:
                if not _safe_to_repeat(method, url):
                    raise GitHubUnavailable(
                        f"GitHub answered {status} for {where}; {_NOT_REPEATED}"
                    )
                failures += 1
                wait = self._retry_wait(failures, deadline, f"GitHub answered {status} for {where}")
                log.warning("GitHub answered %s for %s; retrying in %.1f s", status, where, wait)
                await asyncio.sleep(wait)
                continue
            return status, answer, data

    def _retry_wait(self, failures: int, deadline: float, reason: str) -> float:
        if failures > self._config.retries:
            raise GitHubUnavailable(f"{reason}, {failures} times")
        wait: float = self._config.backoff * 2.0 ** (failures - 1)
        if time.monotonic() + wait > deadline:
            raise GitHubUnavailable(f"{reason}; no time left to retry")
        return wait


_NOT_REPEATED = "not sent again: GitHub may have acted on it"


def _safe_to_repeat(method: str, url: str) -> bool:
    """Whether a request whose answer was lost (a 5xx, a dropped connection) may be sent
    again. A read may; so may what does no harm twice (a token, a status, a cancel). A
    workflow dispatch or a Deployment may not: GitHub may have taken the first, and a second
    would be a second deploy. Rate-limit answers are always retried: GitHub refused those."""
    if method in ("GET", "HEAD"):
        return True
    path = url.split("?", 1)[0].rstrip("/")
    return path.endswith(("/access_tokens", "/statuses", "/cancel"))


def _rate_limit_wait(
    status: int, headers: Mapping[str, str], body: bytes
) -> tuple[float, str] | None:
    """How long GitHub asks to wait before a retry, and why; None when it is no rate limit."""
    if status not in (403, 429):
        return None
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after)), "secondary rate limit"
        except ValueError:
            pass
    if headers.get("x-ratelimit-remaining") == "0":
        try:
            reset = float(headers.get("x-ratelimit-reset", ""))
        except ValueError:
            reset = time.time() + 60
        # Its reset is in whole epoch seconds: a second more, so the retry is not early.
        return max(0.0, reset - time.time()) + 1.0, "rate limit is spent"
    if b"secondary rate limit" in body.lower() or status == 429:
        # GitHub's advice when it names no time: wait at least a minute.
        return 60.0, "secondary rate limit"
    return None


class GitHubClient:
    """The GitHub calls releasebot's gates and deploys make (see the module docstring).

    Use it as an async context manager, or call :meth:`close`; a session passed in stays the
    caller's to close."""

    def __init__(self, config: GitHubConfig, session: aiohttp.ClientSession | None = None) -> None:
        if not config.token and not (config.app_id and config.app_private_key):
            raise ValueError("GitHubConfig needs a token, or an app id and its private key")
        self._config = config
        self._own_session = session is None
        self._session = session or aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=config.timeout)
        )
        self._api = _API(self._session, config)
        self._installations: dict[tuple[str, str], str] = {}
        self._tokens: dict[str, tuple[str, float]] = {}  # installation -> (token, expiry)
        self._token_lock = asyncio.Lock()

    async def close(self) -> None:
        if self._own_session:
            await self._session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---- the calls -------------------------------------------------------------------------

    async def commit_checks(self, owner: str, repo: str, sha: str) -> list[CheckState]:
        """Every commit status (the latest per context) and check run (the latest per name)
        on ``sha``, all pages of both."""
        path = f"/repos/{owner}/{repo}/commits/{sha}"
        statuses = await self._list(f"{path}/status?per_page=100", owner, repo, "statuses")
        runs = await self._list(f"{path}/check-runs?per_page=100", owner, repo, "check_runs")
        found = [_status_check(s) for s in statuses]
        found += [_run_check(r) for r in runs]
        return found

    async def dispatch_workflow(
        self, owner: str, repo: str, workflow: str, ref: str, inputs: Mapping[str, str]
    ) -> None:
        """Starts ``workflow`` (its file name or id) on ``ref`` with ``inputs``.  GitHub
        answers no run id: put a correlation id among the inputs and the workflow's
        ``run-name``, and find the run with :meth:`find_run`."""
        await self._call(
            "POST",
            f"/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches",
            owner,
            repo,
            data={"ref": ref, "inputs": dict(inputs)},
        )

    async def find_run(
        self, owner: str, repo: str, workflow: str, correlation_id: str, since: datetime
    ) -> Run | None:
        """The run of ``workflow`` dispatched since ``since`` whose title (or name) holds
        ``correlation_id``, or None while it has not appeared (GitHub lists a dispatched run
        a few seconds after the dispatch: poll)."""
        # A minute earlier: the bot's clock and GitHub's may differ; the correlation id, not
        # the time, is what tells the run apart.
        after = (since.astimezone(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        runs = await self._list(
            f"/repos/{owner}/{repo}/actions/runs?event=workflow_dispatch"
            f"&created=%3E%3D{after}&per_page=100",
            owner,
            repo,
            "workflow_runs",
        )
        for found in runs:
            path = str(found.get("path") or "")
            if workflow not in (path.rsplit("/", 1)[-1], str(found.get("workflow_id"))):
                continue
            titles = (str(found.get("display_title") or ""), str(found.get("name") or ""))
            if any(correlation_id in title for title in titles):
                return await self.run(owner, repo, int(found["id"]))
        return None

    async def run(self, owner: str, repo: str, run_id: int) -> Run:
        """A workflow run now, with its jobs and the job and step it is at."""
        base = f"/repos/{owner}/{repo}/actions/runs/{run_id}"
        found = await self._call("GET", base, owner, repo)
        jobs = await self._list(f"{base}/jobs?per_page=100", owner, repo, "jobs")
        job, step = _current_step(jobs)
        return Run(
            id=int(found["id"]),
            name=str(found.get("name") or ""),
            display_title=str(found.get("display_title") or ""),
            status=str(found["status"]),
            conclusion=found.get("conclusion"),
            html_url=str(found.get("html_url") or ""),
            head_sha=str(found.get("head_sha") or ""),
            created_at=str(found.get("created_at") or ""),
            job=job,
            step=step,
            jobs=tuple(_run_job(j) for j in jobs),
        )

    async def cancel_run(self, owner: str, repo: str, run_id: int) -> None:
        """Asks GitHub to cancel a run (it answers 202 and cancels it shortly after).  A run
        already completed (409) is no error: whatever it ended with, it is not running."""
        try:
            await self._call(
                "POST", f"/repos/{owner}/{repo}/actions/runs/{run_id}/cancel", owner, repo
            )
        except GitHubError as exc:
            if exc.status != 409:
                raise
            log.info(
                "GitHub run %s of %s/%s had already completed: nothing to cancel",
                run_id,
                owner,
                repo,
            )

    async def job_log_tail(self, owner: str, repo: str, job_id: int, lines: int = 20) -> str:
        """The last ``lines`` non-empty lines of a job's log, one per line: each without
        GitHub's timestamp or colour codes, cut at 300 characters.  "" when GitHub has no
        log to give (404: the job has not finished, or is not this repository's; 410: its
        logs were deleted or have expired).

        GitHub answers with a redirect to a short-lived download URL on another host, signed
        in itself: it is fetched without the token, which is for GitHub's API only."""
        if lines <= 0:
            return ""
        api_url = sansio.format_url(
            f"/repos/{owner}/{repo}/actions/jobs/{job_id}/logs", None, base_url=self._config.api_url
        )

        async def read(response: aiohttp.ClientResponse) -> bytes:
            return "\n".join(await _log_tail(response, lines)).encode()

        async def fetch(token: str) -> str:
            headers = sansio.create_headers(self._config.user_agent, oauth_token=token)
            # The redirect is taken here rather than by aiohttp: whatever aiohttp's rules for
            # headers on a redirect, the download gets none but the user agent.
            status, answer, body = await self._api.send(
                "GET", api_url, headers, allow_redirects=False, read=read
            )
            if status in _REDIRECTS:
                location = answer.get("location")
                if not location:
                    raise GitHubUnavailable("GitHub's redirect to a job's log named no URL")
                status, answer, body = await self._api.send(
                    "GET",
                    urljoin(api_url, location),
                    {"user-agent": self._config.user_agent},
                    read=read,
                )
            if status in (404, 410):
                return ""
            if status == 200:
                return body.decode()
            sansio.decipher_response(status, answer, body)  # raises GitHub's error
            raise GitHubUnavailable(f"GitHub answered {status} to a request for a job's log")

        return self._scrub(await self._authorized(owner, repo, fetch))

    async def workflow(self, owner: str, repo: str, workflow: str) -> WorkflowInfo:
        """The workflow ``workflow`` (its file name or id): raises :class:`GitHubError` 404
        when the repository has no such workflow."""
        found = await self._call(
            "GET",
            f"/repos/{owner}/{repo}/actions/workflows/{quote(workflow, safe='')}",
            owner,
            repo,
        )
        return WorkflowInfo(
            id=int(found["id"]),
            name=str(found.get("name") or ""),
            path=str(found.get("path") or ""),
            state=str(found.get("state") or ""),
        )

    async def file_text(
        self, owner: str, repo: str, path: str, ref: str | None = None
    ) -> str | None:
        """The text of the file at ``path`` on ``ref`` (the default branch without one), or
        None when GitHub has no such file (404: no such path, or no such ref) or the path is
        not a file (a directory).  Bytes that are not UTF-8 read as U+FFFD."""
        url = f"/repos/{owner}/{repo}/contents/{quote(path.lstrip('/'), safe='/')}"
        if ref is not None:
            url += f"?ref={quote(ref, safe='')}"
        try:
            found = await self._call("GET", url, owner, repo)
        except GitHubError as exc:
            if exc.status == 404:
                return None
            raise
        if not isinstance(found, Mapping) or found.get("type") != "file":
            return None
        if found.get("encoding") != "base64":
            # Files over 1 MB come with encoding "none" and no content.
            raise GitHubError(413, f"{path} is larger than the contents API returns (1 MB)")
        # GitHub wraps the base64 in lines; b64decode skips the line breaks.
        return base64.b64decode(str(found.get("content") or "")).decode("utf-8", "replace")

    async def access(self, owner: str, repo: str) -> Access:
        """What the configured token or app may do in the repository (see :class:`Access`),
        asked of GitHub now: an app's permissions change when its owner accepts new ones."""
        config = self._config
        if config.token:
            url = sansio.format_url(f"/repos/{owner}/{repo}", None, base_url=config.api_url)
            headers = sansio.create_headers(config.user_agent, oauth_token=config.token)
            with self._errors():
                status, answer, body = await self._api.send("GET", url, headers)
                found, _, _ = sansio.decipher_response(status, answer, body)
            allowed = found.get("permissions") or {}
            permissions: dict[str, str] = {}
            if any(allowed.get(k) for k in ("admin", "maintain", "push")):
                permissions["contents"] = "write"
            elif any(allowed.get(k) for k in ("triage", "pull")):
                permissions["contents"] = "read"
            header = answer.get("x-oauth-scopes")
            scopes = (
                None if header is None else tuple(s.strip() for s in header.split(",") if s.strip())
            )
            return Access("token", MappingProxyType(permissions), scopes)
        installation = await self._installation(owner, repo)
        granted = installation.get("permissions") or {}
        permissions = {str(k): str(v) for k, v in granted.items()}
        return Access("app", MappingProxyType(permissions), None)

    async def create_deployment(
        self,
        owner: str,
        repo: str,
        ref: str,
        environment: str,
        *,
        task: str = "deploy",
        description: str | None = None,
        payload: Mapping[str, Any] | None = None,
        required_contexts: Sequence[str] = (),
        production: bool | None = None,
    ) -> Deployment:
        """Records a deployment of ``ref`` to ``environment``.  ``required_contexts`` is
        empty by default: the bot's own gates have decided; GitHub would otherwise check
        every status again.  ``auto_merge`` is off: a deploy never merges anything."""
        data: dict[str, Any] = {
            "ref": ref,
            "environment": environment,
            "task": task,
            "auto_merge": False,
            "required_contexts": list(required_contexts),
            "payload": dict(payload or {}),
        }
        if description is not None:
            data["description"] = description
        if production is not None:
            data["production_environment"] = production
        found = await self._call("POST", f"/repos/{owner}/{repo}/deployments", owner, repo, data)
        return _deployment(found)

    async def deployments(
        self, owner: str, repo: str, *, environment: str | None = None, sha: str | None = None
    ) -> list[Deployment]:
        """The repository's deployments, newest first (all pages), filtered as asked."""
        query = "".join(
            f"&{k}={v}" for k, v in (("environment", environment), ("sha", sha)) if v is not None
        )
        found = await self._list(
            f"/repos/{owner}/{repo}/deployments?per_page=100{query}", owner, repo, None
        )
        return [_deployment(d) for d in found]

    async def deployment_statuses(
        self, owner: str, repo: str, deployment_id: int
    ) -> list[DeploymentStatus]:
        """A deployment's statuses, newest first."""
        found = await self._list(
            f"/repos/{owner}/{repo}/deployments/{deployment_id}/statuses?per_page=100",
            owner,
            repo,
            None,
        )
        return [_deployment_status(s) for s in found]

    async def create_deployment_status(
        self,
        owner: str,
        repo: str,
        deployment_id: int,
        state: Literal[
            "error", "failure", "inactive", "in_progress", "queued", "pending", "success"
        ],
        *,
        description: str | None = None,
        log_url: str | None = None,
        environment_url: str | None = None,
    ) -> DeploymentStatus:
        data: dict[str, Any] = {"state": state}
        for key, value in (
            ("description", description),
            ("log_url", log_url),
            ("environment_url", environment_url),
        ):
            if value is not None:
                data[key] = value
        found = await self._call(
            "POST", f"/repos/{owner}/{repo}/deployments/{deployment_id}/statuses", owner, repo, data
        )
        return _deployment_status(found)

    # ---- the plumbing ----------------------------------------------------------------------

    async def _call(self, method: str, url: str, owner: str, repo: str, data: Any = b"") -> Any:
        async def call(token: str) -> Any:
            if method == "GET":
                return await self._api.getitem(url, oauth_token=token)
            return await self._api.post(url, data=data, oauth_token=token)

        return await self._authorized(owner, repo, call)

    async def _list(self, url: str, owner: str, repo: str, key: str | None) -> list[Any]:
        async def call(token: str) -> list[Any]:
            # gidgethub follows each page's Link rel="next"; `key` names the list inside an
            # answer that wraps it in an object (check runs, workflow runs, jobs).
            return [
                item async for item in self._api.getiter(url, oauth_token=token, iterable_key=key)
            ]

        return await self._authorized(owner, repo, call)

    async def _authorized(self, owner: str, repo: str, call: Callable[[str], Awaitable[T]]) -> T:
        """``call`` with the token for the repository, its errors translated.

        GitHub may refuse an installation token before the expiry it stated (the app's
        installation changed, the token was revoked): a 401 to a token issued before this
        call drops it and the call is made once more with a new one.  A second 401, or a
        401 to a token just issued, is GitHub's answer."""
        token, cached = await self._token_for(owner, repo)
        try:
            with self._errors():
                return await call(token)
        except GitHubError as exc:
            if exc.status != 401 or not cached:
                raise
        log.warning(
            "GitHub refused the installation token for %s/%s before its expiry; renewing it",
            owner,
            repo,
        )
        self._drop_token(token)
        token, _ = await self._token_for(owner, repo)
        with self._errors():
            return await call(token)

    def _drop_token(self, token: str) -> None:
        """The installation token is renewed on its next use (unless it already was)."""
        for installation, (known, _) in self._tokens.items():
            if known == token:
                # Kept until renewed, so that it is still scrubbed from errors until then.
                self._tokens[installation] = (known, 0.0)

    async def _installation(self, owner: str, repo: str) -> Mapping[str, Any]:
        """The app's installation on the repository, as GitHub answers it (asked with the
        app's JWT); its id is kept for the installation tokens."""
        config = self._config
        assert config.app_id and config.app_private_key
        jwt = gidgethub.apps.get_jwt(app_id=config.app_id, private_key=config.app_private_key)
        with self._errors():
            found: Mapping[str, Any] = await self._api.getitem(
                f"/repos/{owner}/{repo}/installation", jwt=jwt
            )
        self._installations[(owner.lower(), repo.lower())] = str(found["id"])
        return found

    def _errors(self) -> _Translate:
        return _Translate(self._config.secrets() + tuple(t for t, _ in self._tokens.values()))

    def _scrub(self, text: str) -> str:
        return self._errors().scrub(text)

    async def _token_for(self, owner: str, repo: str) -> tuple[str, bool]:
        """The token for a request to the repository, and whether it is an installation token
        issued before now (one GitHub may have revoked since)."""
        config = self._config
        if config.token:
            return config.token, False
        assert config.app_id and config.app_private_key
        async with self._token_lock:
            installation = self._installations.get((owner.lower(), repo.lower()))
            if installation is None:
                installation = str((await self._installation(owner, repo))["id"])
            token, expires = self._tokens.get(installation, ("", 0.0))
            if time.time() < expires - config.token_refresh_margin:
                return token, True
            with self._errors():
                answer = await gidgethub.apps.get_installation_access_token(
                    self._api,
                    installation_id=installation,
                    app_id=config.app_id,
                    private_key=config.app_private_key,
                )
            token = str(answer["token"])
            expires = datetime.fromisoformat(
                str(answer["expires_at"]).replace("Z", "+00:00")
            ).timestamp()
            self._tokens[installation] = (token, expires)
            log.info("GitHub App installation %s: new token until %s", installation, expires)
            return token, False


class _Translate:
    """Turns gidgethub's exceptions into this module's, with any secret scrubbed out (GitHub
    does not echo credentials, but a proxy's error page might)."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self._secrets = secrets

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> None:
        if exc is None:
            return
        if isinstance(exc, GitHubUnavailable):
            exc.reason = self.scrub(exc.reason)
            exc.args = (exc.reason,)
            return
        if isinstance(exc, gidgethub.RateLimitExceeded):
            raise GitHubUnavailable("GitHub's rate limit is spent") from None
        if isinstance(exc, gidgethub.GitHubBroken):
            raise GitHubUnavailable(f"GitHub answered {int(exc.status_code)}") from None
        if isinstance(exc, gidgethub.HTTPException):
            message = self.scrub(" ".join(str(a) for a in exc.args) or exc.status_code.phrase)
            raise GitHubError(int(exc.status_code), message) from None

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


async def _log_tail(response: aiohttp.ClientResponse, lines: int) -> list[str]:
    """The last ``lines`` non-empty lines of a log, read as it streams in (a log may be
    megabytes: only the tail and the line being read are held)."""
    tail: deque[str] = deque(maxlen=lines)
    partial = bytearray()

    def keep(piece: bytes) -> None:
        partial.extend(piece[: max(0, _LOG_LINE_BYTES - len(partial))])

    def push() -> None:
        text = _log_line(bytes(partial))
        partial.clear()
        if text:
            tail.append(text)

    async for chunk in response.content.iter_chunked(64 * 1024):
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            keep(chunk[start:end])
            push()
            start = end + 1
        keep(chunk[start:])
    if partial:
        push()
    return list(tail)


def _log_line(raw: bytes) -> str:
    """A log line without its timestamp, colour codes and trailing space, cut to length."""
    text = raw.decode("utf-8", "replace").lstrip("\ufeff")
    stamp = _LOG_TIMESTAMP.match(text)
    if stamp:
        text = text[stamp.end() :]
    return _ANSI_ESCAPE.sub("", text).rstrip()[:_LOG_LINE_CHARS]


def _status_check(status: Mapping[str, Any]) -> CheckState:
    raw = str(status.get("state"))
    state: CheckStateName = (
        "success" if raw == "success" else "pending" if raw == "pending" else "failure"
    )
    return CheckState(
        kind="status",
        name=str(status.get("context") or ""),
        state=state,
        conclusion=raw,
        link=status.get("target_url") or None,
        description=status.get("description") or None,
    )


def _run_check(run: Mapping[str, Any]) -> CheckState:
    conclusion = run.get("conclusion")
    state: CheckStateName
    if run.get("status") != "completed" or conclusion is None:
        state = "pending"
    elif conclusion in ("success", "neutral", "skipped"):
        state = conclusion
    else:
        # Unknown conclusions too: a gate must not pass on a word it does not know.
        state = "failure"
    return CheckState(
        kind="check_run",
        name=str(run.get("name") or ""),
        state=state,
        conclusion=conclusion,
        link=run.get("html_url") or run.get("details_url") or None,
    )


def _current_step(jobs: Sequence[Mapping[str, Any]]) -> tuple[str | None, str | None]:
    """The job running now (else the last one that ran) and its step running now (else its
    last finished step)."""
    if not jobs:
        return None, None
    running = [j for j in jobs if j.get("status") == "in_progress"]
    started = [j for j in jobs if j.get("status") != "queued"]
    job = (running or started or list(jobs))[-1 if not running else 0]
    steps = list(job.get("steps") or [])
    now = [s for s in steps if s.get("status") == "in_progress"]
    done = [s for s in steps if s.get("status") == "completed"]
    step = (now or done[-1:] or [None])[0]
    return str(job.get("name")), (str(step.get("name")) if step else None)


def _run_job(found: Mapping[str, Any]) -> RunJob:
    return RunJob(
        id=int(found["id"]),
        name=str(found.get("name") or ""),
        status=str(found.get("status") or ""),
        conclusion=found.get("conclusion"),
        html_url=str(found.get("html_url") or ""),
    )


def _deployment(found: Mapping[str, Any]) -> Deployment:
    return Deployment(
        id=int(found["id"]),
        sha=str(found.get("sha") or ""),
        ref=str(found.get("ref") or ""),
        environment=str(found.get("environment") or ""),
        task=str(found.get("task") or ""),
        description=found.get("description"),
        created_at=str(found.get("created_at") or ""),
    )


def _deployment_status(found: Mapping[str, Any]) -> DeploymentStatus:
    return DeploymentStatus(
        id=int(found["id"]),
        state=str(found["state"]),
        description=str(found.get("description") or ""),
        environment=str(found.get("environment") or ""),
        log_url=str(found.get("log_url") or ""),
        environment_url=str(found.get("environment_url") or ""),
        created_at=str(found.get("created_at") or ""),
    )
