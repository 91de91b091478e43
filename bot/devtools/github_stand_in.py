"""A small local stand-in for GitHub's REST API: for the tests, and for the terminal demo.

GitHub cannot be reached from tests, so :class:`GitHubStandIn` runs an ``aiohttp.web`` server on
``127.0.0.1`` (a free port) that answers the endpoints releasebot's gates and deploys use, the
way GitHub documents them: the repository (with what the caller may do in it), commit
statuses (combined and listed), check runs for a ref,
workflows (and their files, through the contents API), workflow dispatches, workflow runs,
their cancelling, their jobs and the jobs' logs, deployments and deployment statuses, and a
GitHub App's installation and installation tokens.  As GitHub does, it

- wants ``Authorization: token|bearer <token>`` on every call and answers 401 otherwise;
- sends a classic token's scopes as ``x-oauth-scopes`` (:attr:`~GitHubStandIn.token_scopes`,
  None for a fine-grained token, which has none);
- sends ``x-ratelimit-limit|remaining|used|reset|resource`` on every answer, and once the
  budget is spent answers 403 with ``x-ratelimit-remaining: 0`` until the reset time;
- sends an ``ETag`` with every GET and answers 304 to a matching ``If-None-Match``, without
  counting it against the budget;
- pages lists with ``per_page`` (at most 100) and ``page`` and a ``Link`` header;
- answers errors as ``{"message": ..., "documentation_url": ...}``;
- answers a job's log with a redirect to a signed, short-lived URL on another origin
  (:attr:`GitHubStandIn.download_url`), whose requests are recorded too (``download``).

Every request is recorded in :attr:`GitHubStandIn.calls`.  Tests steer it with the methods in
"test controls": commit statuses and check runs per sha, workflows and how their runs go
(:meth:`~GitHubStandIn.advance`, or by a clock the test owns), deployment executors that
report on new deployments as they advance (:meth:`~GitHubStandIn.add_deployment_executor`),
what the token and the app's installation may do, faults
(:meth:`~GitHubStandIn.fail_next`) and the rate-limit budget.

Example::

    async with GitHubStandIn() as github:
        github.add_workflow("acme", "shop", "deploy.yml", inputs=("correlation_id",))
        ...  # point the client at github.base_url with github.token
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Self
from urllib.parse import urlencode

import jwt
from aiohttp import web

DOCS = "https://docs.github.com/rest"
DEFAULT_TOKEN = "ghp_standin0000000000000000000000000000"
DEFAULT_SHA = "0" * 40
PER_PAGE_DEFAULT = 30
PER_PAGE_MAX = 100
# A job log's download URL is good for a minute, as GitHub's are.
LOG_URL_TTL = 60.0
DEFAULT_LOG = (
    "Current runner version: '2.317.0'",
    "##[group]Run ./scripts/deploy.sh",
    "./scripts/deploy.sh",
    "##[endgroup]",
    "Deploying...",
    "Done.",
    "Cleaning up orphan processes",
)

Clock = Callable[[], float]
Json = dict[str, Any]
# Who made a request: the personal access token, an installation token, or the app (a JWT).
Caller = Literal["token", "installation", "app"]

# What a GitHub App's installation may do, as GitHub states it (the default stand-in app's).
DEFAULT_INSTALLATION_PERMISSIONS = {
    "actions": "write",
    "checks": "read",
    "statuses": "read",
    "deployments": "write",
    "contents": "read",
    "metadata": "read",
}


@dataclass
class RecordedCall:
    """One request that reached the stand-in; ``at`` is ``time.monotonic()`` on arrival and
    ``status`` the HTTP status it was answered with (0 until answered).  ``download`` marks
    a request to the download host (another origin) rather than to the API."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    at: float
    status: int = 0
    download: bool = False


@dataclass
class _Fault:
    prefix: str
    status: int
    retry_after: float | None
    times: int
    message: str
    after: bool = False  # the request is carried out first; only its answer is lost


@dataclass
class Workflow:
    """A workflow file that can be dispatched.  ``run_name`` is its ``run-name``: formatted
    with the dispatch's inputs, it becomes the run's ``display_title`` (how a caller finds
    its run again by a correlation id among the inputs)."""

    file: str
    id: int
    name: str
    inputs: tuple[str, ...]
    run_name: str
    outcome: str = "success"  # how the next runs end: success or failure
    starts: bool = True  # False: dispatches are accepted but no run ever appears
    jobs: tuple[tuple[str, tuple[str, ...]], ...] = (("deploy", ("Set up job", "Deploy")),)
    # "active", or "disabled_manually" (or another disabled_* state): a disabled workflow
    # is refused dispatches, as on GitHub.
    state: str = "active"
    created: float = field(default_factory=time.time)
    # The lines each job's log holds once the job is done (read when the log is asked for),
    # each written after a timestamp as GitHub writes them; logs_gone: they were deleted or
    # have expired (GitHub answers 410).
    log: tuple[str, ...] = DEFAULT_LOG
    logs_gone: bool = False


@dataclass
class DeploymentExecutor:
    """What carries out a repository's deployments, standing in for a workflow run on the
    ``deployment`` event (or a Heaven-style deployer): it reports on each new deployment to
    ``environment`` (None: to any) the statuses queued, in_progress, then ``outcome``
    (success, failure or error), each with ``log_url`` (``{deployment_id}`` in it is
    replaced) and as ``creator``.  With ``starts`` False, it never reports anything.  A
    deployment is taken by the first executor added that matches it; ``outcome`` and
    ``starts`` are read when the deployment is created."""

    owner: str
    repo: str
    environment: str | None
    outcome: str
    log_url: str
    starts: bool
    creator: str


@dataclass
class _Execution:
    """A deployment an executor is carrying out: ``reported`` statuses of its three."""

    executor: DeploymentExecutor
    repo: _Repo
    deployment: Json
    outcome: str
    born: float  # the stand-in's clock
    reported: int = 0

    def states(self) -> tuple[str, str, str]:
        return ("queued", "in_progress", self.outcome)


@dataclass
class _Run:
    id: int
    owner: str
    repo: str
    workflow: Workflow
    ref: str
    sha: str
    title: str
    created: float  # epoch seconds
    born: float  # the stand-in's clock, for runs advanced by time
    outcome: str
    stage: int = 0  # 0 queued, 1 in progress (first job, first step), ... , last completed
    cancelled_at: int | None = None  # the stage it was at when cancelled

    def stages(self) -> int:
        return 2 + sum(len(steps) for _, steps in self.workflow.jobs)


@dataclass
class _Repo:
    id: int
    default_branch: str = "main"
    refs: dict[str, str] = field(default_factory=lambda: {"main": DEFAULT_SHA})
    statuses: dict[str, list[Json]] = field(default_factory=dict)  # sha -> oldest first
    check_runs: dict[str, list[Json]] = field(default_factory=dict)
    workflows: dict[str, Workflow] = field(default_factory=dict)
    deployments: list[Json] = field(default_factory=list)
    deployment_statuses: dict[int, list[Json]] = field(default_factory=dict)
    installation_id: int | None = None


class _Answer(Exception):
    """Raised by a handler to answer at once with an error as GitHub words it."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: Json = {"message": message, "documentation_url": DOCS, **extra}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def workflow_yaml(flow: Workflow) -> str:
    """The text of a workflow's file, as the repository would hold it: its name, its
    ``run-name`` (the dispatch's inputs as ``${{ inputs.x }}``), a ``workflow_dispatch``
    trigger taking its inputs, and its jobs' steps (less "Set up job", which GitHub adds).
    Strings are written as JSON strings, which YAML reads as double-quoted scalars."""
    run_name = re.sub(r"\{(\w+)\}", r"${{ inputs.\1 }}", flow.run_name)
    lines = [f"name: {json.dumps(flow.name)}", f"run-name: {json.dumps(run_name)}", ""]
    lines += ["on:", "  workflow_dispatch:"]
    if flow.inputs:
        lines.append("    inputs:")
        for key in flow.inputs:
            lines += [
                f"      {key}:",
                f"        description: {json.dumps(key)}",
                "        required: false",
                "        type: string",
            ]
    lines += ["", "jobs:"]
    for job, steps in flow.jobs:
        lines += [f"  {job}:", "    runs-on: ubuntu-latest", "    steps:"]
        for step in steps:
            if step != "Set up job":
                lines += [
                    f"      - name: {json.dumps(step)}",
                    f"        run: echo {json.dumps(step)}",
                ]
    return "\n".join(lines) + "\n"


class GitHubStandIn:
    """Local stand-in for GitHub's REST API (see the module docstring).

    ``token`` is the personal access token accepted.  With ``app_id`` and ``app_public_key``
    (PEM) it also plays a GitHub App: app JWTs are checked (RS256, ``iss`` = the app id) and
    installation tokens issued, each valid for ``installation_token_ttl`` seconds.
    ``clock`` drives runs advanced by time (:attr:`seconds_per_stage`); wall time drives the
    rate-limit reset and token expiry, which GitHub states in epoch seconds.
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        app_id: int | None = None,
        app_public_key: str | bytes | None = None,
        installation_token_ttl: float = 3600.0,
        rate_limit: int = 5000,
        clock: Clock = time.monotonic,
    ) -> None:
        self.token = token
        self.app_id = app_id
        self.app_public_key = app_public_key
        self.installation_token_ttl = installation_token_ttl
        self.clock = clock
        # None: runs move only on advance(); a number: one stage per that many clock seconds.
        self.seconds_per_stage: float | None = None
        # Where refs not set with set_ref are looked up (ref -> sha, None: no such ref): a
        # test points it at its git remote, so GitHub has the tags the bot pushes there.
        self.ref_source: Callable[[str], str | None] | None = None
        self.calls: list[RecordedCall] = []
        # The personal access token's access to every repository (GitHub's repository
        # "permissions"), and its scopes, sent as x-oauth-scopes as GitHub does for a classic
        # token; None: a fine-grained token, for which GitHub sends no scopes.
        self.token_permissions: dict[str, bool] = {
            "admin": False,
            "maintain": False,
            "push": True,
            "triage": True,
            "pull": True,
        }
        self.token_scopes: tuple[str, ...] | None = ("repo",)
        # What the app's installation may do, in its installation's and its tokens' answers.
        self.installation_permissions: dict[str, str] = dict(DEFAULT_INSTALLATION_PERMISSIONS)
        self.issued_tokens: list[str] = []
        self._installation_tokens: dict[str, float] = {}  # token -> expiry (epoch)
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._runs: dict[int, _Run] = {}
        self._executors: list[DeploymentExecutor] = []
        self._executions: list[_Execution] = []
        self._faults: list[_Fault] = []
        self._ids = itertools.count(1001)
        self._repo_ids = itertools.count(700001)
        self._limit = rate_limit
        self._remaining = rate_limit
        self._reset = time.time() + 3600
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._download_runner: web.AppRunner | None = None
        self._download_port: int | None = None
        self._log_links: dict[str, tuple[str, float]] = {}  # signature -> (text, expiry)

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        # Downloads (job logs) come from another origin, as GitHub's come from its storage's
        # hosts: another port is another origin, to which a client must not send its token.
        downloads = web.Application()
        downloads.router.add_route("*", "/{tail:.*}", self._handle_download)
        download_runner = web.AppRunner(downloads, access_log=None)
        await download_runner.setup()
        await web.TCPSite(download_runner, "127.0.0.1", 0).start()
        self._download_runner = download_runner
        self._download_port = int(download_runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._download_runner is not None:
            runner, self._download_runner = self._download_runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("GitHubStandIn is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def download_url(self) -> str:
        """The origin of download URLs (job logs): not the API's."""
        if self._download_port is None:
            raise RuntimeError("GitHubStandIn is not started")
        return f"http://127.0.0.1:{self._download_port}"

    # ---- test controls ---------------------------------------------------------------------

    def repo(self, owner: str, repo: str) -> _Repo:
        key = (owner.lower(), repo.lower())
        found = self._repos.get(key)
        if found is None:
            found = self._repos[key] = _Repo(id=next(self._repo_ids))
        return found

    def set_ref(self, owner: str, repo: str, ref: str, sha: str) -> None:
        """A branch or tag of the repository, which dispatches and deployments may name."""
        self.repo(owner, repo).refs[ref] = sha

    def set_status(
        self,
        owner: str,
        repo: str,
        sha: str,
        context: str,
        state: str,
        *,
        target_url: str | None = None,
        description: str | None = None,
    ) -> None:
        """A commit status (error, failure, pending or success); a later one of the same
        context supersedes the earlier in the combined status, as on GitHub."""
        now = time.time()
        self.repo(owner, repo).statuses.setdefault(sha, []).append(
            {
                "id": next(self._ids),
                "state": state,
                "context": context,
                "description": description,
                "target_url": target_url,
                "created_at": _iso(now),
                "updated_at": _iso(now),
            }
        )

    def add_check_run(
        self,
        owner: str,
        repo: str,
        sha: str,
        name: str,
        *,
        status: str = "completed",
        conclusion: str | None = "success",
    ) -> int:
        """A check run on ``sha`` (status queued, in_progress or completed; a conclusion
        when completed); returns its id."""
        run_id = next(self._ids)
        self.repo(owner, repo).check_runs.setdefault(sha, []).append(
            {
                "id": run_id,
                "name": name,
                "head_sha": sha,
                "status": status,
                "conclusion": conclusion if status == "completed" else None,
                "html_url": f"https://github.com/{owner}/{repo}/runs/{run_id}",
                "details_url": f"https://ci.example/{run_id}",
                "started_at": _iso(time.time()),
                "completed_at": _iso(time.time()) if status == "completed" else None,
                "app": {"slug": "stand-in-ci"},
            }
        )
        return run_id

    def add_workflow(
        self,
        owner: str,
        repo: str,
        file: str,
        *,
        inputs: Iterable[str] = ("correlation_id",),
        name: str | None = None,
        run_name: str | None = None,
    ) -> Workflow:
        """A dispatchable workflow (``.github/workflows/<file>``) taking ``inputs``."""
        keys = tuple(inputs)
        title = name or file.rsplit(".", 1)[0]
        workflow = Workflow(
            file=file,
            id=next(self._ids),
            name=title,
            inputs=keys,
            run_name=run_name or " ".join([title, *(f"{{{k}}}" for k in keys)]),
        )
        self.repo(owner, repo).workflows[file] = workflow
        return workflow

    def add_deployment_executor(
        self,
        owner: str,
        repo: str,
        environment: str | None = None,
        outcome: str = "success",
        log_url: str = "https://ci.example/deployments/{deployment_id}",
        starts: bool = True,
        *,
        creator: str = "github-actions[bot]",
    ) -> DeploymentExecutor:
        """Something that carries out the repository's new deployments (to ``environment``,
        or to any) and reports their statuses as they advance: see
        :class:`DeploymentExecutor`."""
        if outcome not in ("success", "failure", "error"):
            raise ValueError(f"a deployment ends in success, failure or error, not {outcome!r}")
        self.repo(owner, repo)
        executor = DeploymentExecutor(
            owner=owner,
            repo=repo,
            environment=environment,
            outcome=outcome,
            log_url=log_url,
            starts=starts,
            creator=creator,
        )
        self._executors.append(executor)
        return executor

    def advance(self, run_id: int | None = None) -> None:
        """Moves one run (or every unfinished run) one stage on: queued, then each step of
        each job in progress, then completed with its workflow's outcome.  Without a run id,
        every deployment an executor is carrying out reports its next status too."""
        for run in self._runs.values():
            if (run_id is None or run.id == run_id) and run.stage < run.stages() - 1:
                run.stage += 1
        if run_id is None:
            for execution in self._executions:
                self._report(execution, execution.reported + 1)

    def run_ids(self) -> list[int]:
        return list(self._runs)

    def fail_next(
        self,
        path_prefix: str,
        status: int = 403,
        *,
        retry_after: float | None = None,
        times: int = 1,
        message: str | None = None,
        after_handling: bool = False,
    ) -> None:
        """The next ``times`` requests whose path starts with ``path_prefix`` are answered
        with ``status``: 403/429 as a secondary rate limit (with ``retry-after`` when given),
        5xx as GitHub's server errors. With ``after_handling`` the request is carried out
        first and only its answer is a 5xx (a gateway that timed out on a request GitHub
        did take)."""
        if message is None:
            message = (
                "You have exceeded a secondary rate limit. Please wait a few minutes "
                "before you try again."
                if status in (403, 429)
                else "Server Error"
            )
        self._faults.append(
            _Fault(path_prefix, status, retry_after, times, message, after=after_handling)
        )

    def exhaust_rate_limit(self, reset_in: float) -> None:
        """Spends the primary budget; it comes back ``reset_in`` seconds from now."""
        self._remaining = 0
        self._reset = time.time() + reset_in

    @property
    def rate_limit_remaining(self) -> int:
        return self._remaining

    def expire_installation_tokens(self) -> None:
        for token in self._installation_tokens:
            self._installation_tokens[token] = 0.0

    def requests(self, method: str, path_prefix: str = "") -> list[RecordedCall]:
        return [c for c in self.calls if c.method == method and c.path.startswith(path_prefix)]

    @property
    def downloads(self) -> list[RecordedCall]:
        """The requests that reached the download host."""
        return [c for c in self.calls if c.download]

    # ---- the server ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body: Any = None
        raw = await request.read()
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        call = RecordedCall(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            json=body,
            at=time.monotonic(),
        )
        self.calls.append(call)
        response = self._answer(request, body)
        call.status = response.status
        return response

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        """A download by a signed URL: the signature is the credential, none other needed."""
        call = RecordedCall(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            json=None,
            at=time.monotonic(),
            download=True,
        )
        self.calls.append(call)
        link = self._log_links.get(request.query.get("sig", ""))
        if request.method != "GET" or link is None or link[1] <= time.time():
            response = web.Response(
                status=403,
                text="Server failed to authenticate the request.",
                content_type="text/plain",
            )
        else:
            response = web.Response(text=link[0], content_type="text/plain", charset="utf-8")
        call.status = response.status
        return response

    def _answer(self, request: web.Request, body: Any) -> web.Response:
        callers: list[Caller] = []
        response = self._answer_api(request, body, callers)
        if callers == ["token"] and self.token_scopes is not None:
            response.headers["x-oauth-scopes"] = ", ".join(self.token_scopes)
        return response

    def _answer_api(self, request: web.Request, body: Any, callers: list[Caller]) -> web.Response:
        """The answer to an API request; ``callers`` gets who made it, once known."""
        self._refill()
        try:
            caller = self._authenticate(request)
            callers.append(caller)
            fault = self._fault(request.path)
            if fault is not None and fault.after:
                self._route(request, body, caller)
            if fault is not None:
                headers = self._limit_headers()
                if fault.retry_after is not None:
                    headers["retry-after"] = f"{fault.retry_after:g}"
                return self._json(
                    fault.status, {"message": fault.message, "documentation_url": DOCS}, headers
                )
            if self._remaining <= 0:
                raise _Answer(
                    403,
                    "API rate limit exceeded for user. (But here's the good news: "
                    "Authenticated requests get a higher rate limit.)",
                )
            status, data, extra = self._route(request, body, caller)
        except _Answer as answer:
            return self._json(answer.status, answer.body, self._limit_headers())
        headers = dict(extra)
        if request.method == "GET" and status == 200:
            text = json.dumps(data, sort_keys=True)
            etag = 'W/"' + hashlib.sha256(text.encode()).hexdigest()[:40] + '"'
            headers["etag"] = etag
            if etag in request.headers.get("if-none-match", ""):
                # GitHub does not count a 304 against the budget.
                return web.Response(status=304, headers=self._limit_headers() | {"etag": etag})
        self._remaining -= 1
        headers.update(self._limit_headers())
        if status in (204, 302):
            return web.Response(status=status, headers=headers)
        return self._json(status, data, headers)

    def _json(self, status: int, data: Any, headers: dict[str, str]) -> web.Response:
        return web.Response(
            status=status,
            text=json.dumps(data),
            content_type="application/json",
            charset="utf-8",
            headers=headers,
        )

    def _refill(self) -> None:
        if time.time() >= self._reset:
            self._remaining = self._limit
            self._reset = time.time() + 3600

    def _limit_headers(self) -> dict[str, str]:
        remaining = max(0, self._remaining)
        return {
            "x-ratelimit-limit": str(self._limit),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-used": str(self._limit - remaining),
            "x-ratelimit-reset": str(int(self._reset)),
            "x-ratelimit-resource": "core",
        }

    def _fault(self, path: str) -> _Fault | None:
        for fault in self._faults:
            if path.startswith(fault.prefix) and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def _authenticate(self, request: web.Request) -> Caller:
        """Who is calling; raises 401 unless a known token came."""
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("token", "bearer") or not credential:
            raise _Answer(401, "Requires authentication")
        credential = credential.strip()
        if credential == self.token:
            return "token"
        expiry = self._installation_tokens.get(credential)
        if expiry is not None:
            if expiry <= time.time():
                raise _Answer(401, "Bad credentials")
            return "installation"
        if credential.count(".") == 2 and self.app_public_key is not None:
            self._check_jwt(credential)
            return "app"
        raise _Answer(401, "Bad credentials")

    def _check_jwt(self, token: str) -> None:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "RS256":
                raise _Answer(401, "'Expiration time' claim ('exp') is too far in the future")
            claims = jwt.decode(
                token,
                self.app_public_key or "",
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
            )
        except jwt.PyJWTError as exc:
            raise _Answer(
                401, f"A JSON web token could not be decoded ({type(exc).__name__})"
            ) from None
        if str(claims["iss"]) != str(self.app_id):
            raise _Answer(401, "Integration not found")
        # GitHub refuses an app JWT that lives longer than ten minutes.
        if claims["exp"] - claims["iat"] > 11 * 60:
            raise _Answer(401, "'Expiration time' claim ('exp') is too far in the future")

    # ---- endpoints -------------------------------------------------------------------------

    def _route(
        self, request: web.Request, body: Any, caller: Caller
    ) -> tuple[int, Any, dict[str, str]]:
        method, path, query = request.method, request.path.rstrip("/"), request.query
        app_jwt = caller == "app"
        match = re.fullmatch(r"/app/installations/(\d+)/access_tokens", path)
        if match and method == "POST":
            return 201, self._issue_token(int(match[1]), app_jwt), {}
        match = re.fullmatch(r"/repos/([^/]+)/([^/]+)(/.*)?", path)
        if not match:
            raise _Answer(404, "Not Found")
        owner, name, rest = match[1], match[2], match[3] or ""
        repo = self._repos.get((owner.lower(), name.lower()))
        if repo is None:
            raise _Answer(404, "Not Found")
        if app_jwt and rest != "/installation":
            # An app JWT is for the app's own endpoints only, as on GitHub.
            raise _Answer(401, "A JSON web token could not be decoded")
        self._tick()
        if (method, rest) == ("GET", ""):
            return self._repository(owner, name, repo, caller)
        routes: list[tuple[str, str, Callable[..., tuple[int, Any, dict[str, str]]]]] = [
            ("GET", r"/installation", self._installation),
            ("GET", r"/commits/(?P<ref>[^/]+)/status", self._combined_status),
            ("GET", r"/commits/(?P<ref>[^/]+)/statuses", self._statuses),
            ("GET", r"/commits/(?P<ref>[^/]+)/check-runs", self._check_runs),
            ("GET", r"/actions/workflows/(?P<workflow>[^/]+)", self._workflow_info),
            ("POST", r"/actions/workflows/(?P<workflow>[^/]+)/dispatches", self._dispatch),
            ("GET", r"/actions/workflows/(?P<workflow>[^/]+)/runs", self._runs_list),
            ("GET", r"/actions/runs", self._runs_list),
            ("GET", r"/actions/runs/(?P<run_id>\d+)", self._run),
            ("GET", r"/actions/runs/(?P<run_id>\d+)/jobs", self._jobs),
            ("POST", r"/actions/runs/(?P<run_id>\d+)/cancel", self._cancel),
            ("GET", r"/actions/jobs/(?P<job_id>\d+)/logs", self._job_logs),
            ("GET", r"/contents/(?P<path>.+)", self._contents),
            ("POST", r"/deployments", self._create_deployment),
            ("GET", r"/deployments", self._deployments),
            ("POST", r"/deployments/(?P<deployment_id>\d+)/statuses", self._create_dstatus),
            ("GET", r"/deployments/(?P<deployment_id>\d+)/statuses", self._dstatuses),
        ]
        for verb, pattern, handler in routes:
            found = re.fullmatch(pattern, rest)
            if found and verb == method:
                return handler(request, owner, name, repo, body, query, **found.groupdict())
        raise _Answer(404, "Not Found")

    def _issue_token(self, installation_id: int, app_jwt: bool) -> Json:
        if not app_jwt:
            raise _Answer(401, "A JSON web token could not be decoded")
        if installation_id not in {r.installation_id for r in self._repos.values()}:
            raise _Answer(404, "Not Found")
        token = f"ghs_standin{next(self._ids):030d}"
        expires = time.time() + self.installation_token_ttl
        self._installation_tokens[token] = expires
        self.issued_tokens.append(token)
        return {
            "token": token,
            "expires_at": _iso(expires),
            "permissions": dict(self.installation_permissions),
            "repository_selection": "selected",
        }

    def _installation(
        self, _r: web.Request, owner: str, name: str, repo: _Repo, *_: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if repo.installation_id is None:
            repo.installation_id = next(self._ids)
        return (
            200,
            {
                "id": repo.installation_id,
                "app_id": self.app_id,
                "account": {"login": owner},
                "target_type": "Organization",
                "repository_selection": "selected",
                "permissions": dict(self.installation_permissions),
            },
            {},
        )

    def _repository(
        self, owner: str, name: str, repo: _Repo, caller: Caller
    ) -> tuple[int, Any, dict[str, str]]:
        """The repository, with what the caller may do in it: the token's
        :attr:`token_permissions`, or for an installation token what its contents
        permission allows."""
        if caller == "token":
            permissions = dict(self.token_permissions)
        else:
            contents = self.installation_permissions.get("contents")
            readable = contents is not None or "metadata" in self.installation_permissions
            permissions = {
                "admin": False,
                "maintain": False,
                "push": contents == "write",
                "triage": False,
                "pull": readable,
            }
        return (
            200,
            {
                "id": repo.id,
                "node_id": f"R_kgDOstandin{repo.id}",
                "name": name,
                "full_name": f"{owner}/{name}",
                "private": True,
                "visibility": "private",
                "owner": {"login": owner, "type": "Organization"},
                "html_url": f"https://github.com/{owner}/{name}",
                "url": f"{self.base_url}/repos/{owner}/{name}",
                "default_branch": repo.default_branch,
                "permissions": permissions,
            },
            {},
        )

    def _page(self, request: web.Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        """One page of ``items`` and the ``Link`` header to the others, as GitHub pages."""
        try:
            per_page = min(
                PER_PAGE_MAX, max(1, int(request.query.get("per_page", PER_PAGE_DEFAULT)))
            )
            page = max(1, int(request.query.get("page", "1")))
        except ValueError:
            raise _Answer(422, "Invalid request.") from None
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]

        def url(number: int) -> str:
            query = {**request.query, "per_page": str(per_page), "page": str(number)}
            return f"{self.base_url}{request.path}?{urlencode(query)}"

        links = []
        if page < last:
            links += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
        if page > 1:
            links += [f'<{url(page - 1)}>; rel="prev"', f'<{url(1)}>; rel="first"']
        return chunk, ({"link": ", ".join(links)} if links else {})

    def _known_ref(self, repo: _Repo, ref: str) -> str | None:
        if ref in repo.refs:
            return repo.refs[ref]
        return self.ref_source(ref) if self.ref_source is not None else None

    def _sha(self, repo: _Repo, ref: str) -> str:
        if (sha := self._known_ref(repo, ref)) is not None:
            return sha
        if re.fullmatch(r"[0-9a-f]{7,40}", ref):
            return ref
        raise _Answer(422, f"No commit found for SHA: {ref}")

    def _latest_statuses(self, repo: _Repo, sha: str) -> list[Json]:
        latest: dict[str, Json] = {}
        for status in repo.statuses.get(sha, []):
            latest[status["context"]] = status
        return list(latest.values())

    def _combined_status(
        self, request: web.Request, owner: str, name: str, repo: _Repo, _b: Any, _q: Any, ref: str
    ) -> tuple[int, Any, dict[str, str]]:
        sha = self._sha(repo, ref)
        statuses = self._latest_statuses(repo, sha)
        states = {s["state"] for s in statuses}
        if states & {"error", "failure"}:
            state = "failure"
        elif not statuses or "pending" in states:
            state = "pending"
        else:
            state = "success"
        chunk, headers = self._page(request, statuses)
        return (
            200,
            {
                "state": state,
                "sha": sha,
                "total_count": len(statuses),
                "statuses": chunk,
                "repository": {"full_name": f"{owner}/{name}"},
            },
            headers,
        )

    def _statuses(
        self, request: web.Request, _o: str, _n: str, repo: _Repo, _b: Any, _q: Any, ref: str
    ) -> tuple[int, Any, dict[str, str]]:
        chunk, headers = self._page(
            request, list(reversed(repo.statuses.get(self._sha(repo, ref), [])))
        )
        return 200, chunk, headers

    def _check_runs(
        self, request: web.Request, _o: str, _n: str, repo: _Repo, _b: Any, query: Any, ref: str
    ) -> tuple[int, Any, dict[str, str]]:
        runs = repo.check_runs.get(self._sha(repo, ref), [])
        if query.get("filter", "latest") == "latest":
            latest: dict[str, Json] = {}
            for run in runs:
                latest[run["name"]] = run
            runs = list(latest.values())
        chunk, headers = self._page(request, runs)
        return 200, {"total_count": len(runs), "check_runs": chunk}, headers

    def _dispatch(
        self, _r: web.Request, owner: str, name: str, repo: _Repo, body: Any, _q: Any, workflow: str
    ) -> tuple[int, Any, dict[str, str]]:
        flow = self._workflow(repo, workflow)
        if flow.state != "active":
            raise _Answer(422, "Cannot trigger a 'workflow_dispatch' on a disabled workflow")
        if not isinstance(body, dict) or not isinstance(body.get("ref"), str):
            raise _Answer(422, 'Invalid request.\n\n"ref" wasn\'t supplied.')
        ref = body["ref"]
        sha = self._known_ref(repo, ref)
        if sha is None:
            raise _Answer(422, f"No ref found for: {ref}")
        inputs = body.get("inputs") or {}
        unknown = sorted(set(inputs) - set(flow.inputs))
        if unknown:
            raise _Answer(422, f"Unexpected inputs provided: {json.dumps(unknown)}")
        if flow.starts:
            values = {k: str(inputs.get(k, "")) for k in flow.inputs}
            run = _Run(
                id=next(self._ids),
                owner=owner,
                repo=name,
                workflow=flow,
                ref=ref,
                sha=sha,
                title=flow.run_name.format_map(values),
                created=time.time(),
                born=self.clock(),
                outcome=flow.outcome,
            )
            self._runs[run.id] = run
        return 204, None, {}

    @staticmethod
    def _workflow(repo: _Repo, workflow: str) -> Workflow:
        """A workflow by its file name or its id, as GitHub's workflow endpoints take it."""
        flow = repo.workflows.get(workflow) or next(
            (w for w in repo.workflows.values() if str(w.id) == workflow), None
        )
        if flow is None:
            raise _Answer(404, "Not Found")
        return flow

    def _workflow_info(
        self, _r: web.Request, owner: str, name: str, repo: _Repo, _b: Any, _q: Any, workflow: str
    ) -> tuple[int, Any, dict[str, str]]:
        flow = self._workflow(repo, workflow)
        path = f".github/workflows/{flow.file}"
        return (
            200,
            {
                "id": flow.id,
                "node_id": f"W_kwDOstandin{flow.id}",
                "name": flow.name,
                "path": path,
                "state": flow.state,
                "created_at": _iso(flow.created),
                "updated_at": _iso(flow.created),
                "url": f"{self.base_url}/repos/{owner}/{name}/actions/workflows/{flow.id}",
                "html_url": f"https://github.com/{owner}/{name}/blob/main/{path}",
                "badge_url": f"https://github.com/{owner}/{name}/workflows/{flow.name}/badge.svg",
            },
            {},
        )

    def _contents(
        self, _r: web.Request, owner: str, name: str, repo: _Repo, _b: Any, query: Any, path: str
    ) -> tuple[int, Any, dict[str, str]]:
        """A file's contents, base64 in lines of 60 as GitHub sends them: the workflow files
        of the registered workflows (the same on every ref)."""
        ref = query.get("ref")
        if ref is not None and ref not in repo.refs and not re.fullmatch(r"[0-9a-f]{7,40}", ref):
            raise _Answer(404, f"No commit found for the ref {ref}")
        folder, _, file = path.rpartition("/")
        flow = repo.workflows.get(file) if folder == ".github/workflows" else None
        if flow is None:
            raise _Answer(404, "Not Found")
        data = workflow_yaml(flow).encode()
        encoded = base64.b64encode(data).decode()
        content = "".join(encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60))
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
        at = ref or "main"
        url = f"{self.base_url}/repos/{owner}/{name}/contents/{path}?ref={at}"
        git_url = f"{self.base_url}/repos/{owner}/{name}/git/blobs/{blob}"
        html_url = f"https://github.com/{owner}/{name}/blob/{at}/{path}"
        return (
            200,
            {
                "type": "file",
                "encoding": "base64",
                "size": len(data),
                "name": file,
                "path": path,
                "content": content,
                "sha": blob,
                "url": url,
                "git_url": git_url,
                "html_url": html_url,
                "download_url": f"https://raw.githubusercontent.com/{owner}/{name}/{at}/{path}",
                "_links": {"self": url, "git": git_url, "html": html_url},
            },
            {},
        )

    def _tick(self) -> None:
        if self.seconds_per_stage is None:
            return
        now = self.clock()
        for run in self._runs.values():
            due = int((now - run.born) / self.seconds_per_stage)
            run.stage = max(run.stage, min(due, run.stages() - 1))
        for execution in self._executions:
            self._report(execution, int((now - execution.born) / self.seconds_per_stage))

    def _report(self, execution: _Execution, upto: int) -> None:
        """The execution's statuses up to the ``upto``-th (of three), those not yet given."""
        states = execution.states()
        deployment = execution.deployment
        log_url = execution.executor.log_url.replace("{deployment_id}", str(deployment["id"]))
        descriptions = {
            "queued": "Deployment queued",
            "in_progress": "Deployment in progress",
            "success": "Deployment succeeded",
            "failure": "Deployment failed",
            "error": "Deployment errored",
        }
        while execution.reported < min(upto, len(states)):
            state = states[execution.reported]
            execution.reported += 1
            self._add_dstatus(
                execution.repo,
                deployment,
                state,
                description=descriptions[state],
                log_url=log_url,
                creator=execution.executor.creator,
            )

    def _execute(self, owner: str, name: str, repo: _Repo, deployment: Json) -> None:
        """Hands a new deployment to the first executor that takes it, if any."""
        for executor in self._executors:
            if (executor.owner.lower(), executor.repo.lower()) != (owner.lower(), name.lower()):
                continue
            if executor.environment not in (None, deployment["environment"]):
                continue
            if executor.starts:
                self._executions.append(
                    _Execution(
                        executor=executor,
                        repo=repo,
                        deployment=deployment,
                        outcome=executor.outcome,
                        born=self.clock(),
                    )
                )
            return

    def _run_json(self, run: _Run) -> Json:
        last = run.stage == run.stages() - 1
        status = "completed" if last else "in_progress" if run.stage else "queued"
        base = f"{self.base_url}/repos/{run.owner}/{run.repo}/actions/runs/{run.id}"
        return {
            "id": run.id,
            "name": run.workflow.name,
            "display_title": run.title,
            "event": "workflow_dispatch",
            "status": status,
            "conclusion": run.outcome if last else None,
            "head_branch": run.ref,
            "head_sha": run.sha,
            "path": f".github/workflows/{run.workflow.file}",
            "workflow_id": run.workflow.id,
            "run_attempt": 1,
            "html_url": f"https://github.com/{run.owner}/{run.repo}/actions/runs/{run.id}",
            "jobs_url": f"{base}/jobs",
            "created_at": _iso(run.created),
            "updated_at": _iso(time.time()),
            "run_started_at": _iso(run.created),
        }

    def _runs_list(
        self,
        request: web.Request,
        owner: str,
        name: str,
        repo: _Repo,
        _b: Any,
        query: Any,
        workflow: str | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        runs = [
            r
            for r in self._runs.values()
            if (r.owner.lower(), r.repo.lower()) == (owner.lower(), name.lower())
            and (workflow is None or workflow in (r.workflow.file, str(r.workflow.id)))
            and query.get("event", "workflow_dispatch") == "workflow_dispatch"
            and query.get("branch", r.ref) == r.ref
            and self._created_matches(query.get("created"), r.created)
        ]
        runs.sort(key=lambda r: r.id, reverse=True)  # newest first, as GitHub lists them
        chunk, headers = self._page(request, runs)
        return (
            200,
            {"total_count": len(runs), "workflow_runs": [self._run_json(r) for r in chunk]},
            headers,
        )

    @staticmethod
    def _created_matches(created: str | None, at: float) -> bool:
        """GitHub's date search syntax, the forms a poller uses: >=, >, <=, <, a..b."""
        if not created:
            return True
        try:
            if ".." in created:
                low, high = created.split("..", 1)
                return (low == "*" or at >= _parse_iso(low)) and (
                    high == "*" or at <= _parse_iso(high)
                )
            for op, test in (
                (">=", at.__ge__),
                ("<=", at.__le__),
                (">", at.__gt__),
                ("<", at.__lt__),
            ):
                if created.startswith(op):
                    return bool(test(_parse_iso(created[len(op) :])))
            day = _parse_iso(created)
            return day <= at < day + 86400
        except ValueError:
            raise _Answer(422, f"Invalid created: {created}") from None

    def _find_run(self, repo_key: tuple[str, str], run_id: str) -> _Run:
        run = self._runs.get(int(run_id))
        if run is None or (run.owner.lower(), run.repo.lower()) != repo_key:
            raise _Answer(404, "Not Found")
        return run

    def _run(
        self, _r: web.Request, owner: str, name: str, _repo: _Repo, _b: Any, _q: Any, run_id: str
    ) -> tuple[int, Any, dict[str, str]]:
        return 200, self._run_json(self._find_run((owner.lower(), name.lower()), run_id)), {}

    def _cancel(
        self, _r: web.Request, owner: str, name: str, _repo: _Repo, _b: Any, _q: Any, run_id: str
    ) -> tuple[int, Any, dict[str, str]]:
        run = self._find_run((owner.lower(), name.lower()), run_id)
        if run.stage == run.stages() - 1:
            raise _Answer(409, "Cannot cancel a workflow run that is completed.")
        run.cancelled_at, run.stage, run.outcome = run.stage, run.stages() - 1, "cancelled"
        return 202, {}, {}

    def _jobs(
        self,
        request: web.Request,
        owner: str,
        name: str,
        _repo: _Repo,
        _b: Any,
        _q: Any,
        run_id: str,
    ) -> tuple[int, Any, dict[str, str]]:
        run = self._find_run((owner.lower(), name.lower()), run_id)
        jobs = self._job_list(run)
        chunk, headers = self._page(request, jobs)
        return 200, {"total_count": len(jobs), "jobs": chunk}, headers

    def _job_logs(
        self, _r: web.Request, owner: str, name: str, _repo: _Repo, _b: Any, _q: Any, job_id: str
    ) -> tuple[int, Any, dict[str, str]]:
        """A redirect to the job's log, plain text on the download host; 404 until the job
        is done (GitHub has no log of a running job to give), 410 once its logs are gone."""
        run_id, index = divmod(int(job_id), 100)
        run = self._find_run((owner.lower(), name.lower()), str(run_id))
        jobs = self._job_list(run)
        if index >= len(jobs) or jobs[index]["status"] != "completed":
            raise _Answer(404, "Not Found")
        if run.workflow.logs_gone:
            raise _Answer(410, "Gone")
        started = datetime.fromtimestamp(run.created, UTC)
        lines = []
        for number, line in enumerate(run.workflow.log):
            at = started + timedelta(seconds=number)
            # GitHub's stamps have seven fractional digits.
            lines.append(f"{at.strftime('%Y-%m-%dT%H:%M:%S.%f')}0Z {line}\n")
        # GitHub's log downloads often begin with a byte order mark.
        text = "\ufeff" + "".join(lines)
        now = time.time()
        self._log_links = {k: v for k, v in self._log_links.items() if v[1] > now}
        signature = secrets.token_urlsafe(16)
        self._log_links[signature] = (text, now + LOG_URL_TTL)
        location = f"{self.download_url}/logs/{owner}/{name}/jobs/{job_id}.txt?sig={signature}"
        return 302, None, {"location": location}

    def _job_list(self, run: _Run) -> list[Json]:
        """The run's jobs now.  Stage 1 is the first step of the first job, each stage after
        it the next step; the last stage completes everything (the last step ends as the run
        does)."""
        owner, name = run.owner, run.repo
        done = run.stage == run.stages() - 1
        current = run.stage - 1
        jobs: list[Json] = []
        counter = itertools.count()
        for index, (job_name, steps) in enumerate(run.workflow.jobs):
            step_list = []
            for number, step in enumerate(steps, 1):
                at = next(counter)
                if run.cancelled_at is not None:
                    # The step running when the run was cancelled is cancelled, those after it
                    # never run.
                    state = "completed"
                    running = run.cancelled_at - 1
                    conclusion = (
                        "success" if at < running else "cancelled" if at == running else "skipped"
                    )
                elif done:
                    last = number == len(steps)
                    state, conclusion = "completed", run.outcome if last else "success"
                elif run.stage == 0 or at > current:
                    state, conclusion = "queued", None
                elif at == current:
                    state, conclusion = "in_progress", None
                else:
                    state, conclusion = "completed", "success"
                step_list.append(
                    {"name": step, "status": state, "conclusion": conclusion, "number": number}
                )
            job_id = run.id * 100 + index
            statuses = {s["status"] for s in step_list}
            job_status = (
                "completed"
                if statuses == {"completed"}
                else "in_progress"
                if statuses & {"in_progress", "completed"}
                else "queued"
            )
            jobs.append(
                {
                    "id": job_id,
                    "run_id": run.id,
                    "name": job_name,
                    "status": job_status,
                    "conclusion": self._job_conclusion(run, job_status, step_list),
                    "html_url": f"https://github.com/{owner}/{name}/actions/runs/{run.id}/job/{job_id}",
                    "steps": step_list,
                }
            )
        return jobs

    @staticmethod
    def _job_conclusion(run: _Run, job_status: str, steps: list[Json]) -> str | None:
        if job_status != "completed":
            return None
        if run.cancelled_at is not None:
            # A job done before the cancel keeps its success.
            return "success" if all(s["conclusion"] == "success" for s in steps) else "cancelled"
        # A job finished before the run did ran every step to success.
        return run.outcome if run.stage == run.stages() - 1 else "success"

    def _create_deployment(
        self, _r: web.Request, owner: str, name: str, repo: _Repo, body: Any, *_: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if not isinstance(body, dict) or not isinstance(body.get("ref"), str):
            raise _Answer(422, 'Invalid request.\n\n"ref" wasn\'t supplied.')
        ref = body["ref"]
        try:
            sha = self._sha(repo, ref)
        except _Answer:
            raise _Answer(422, f"No ref found for: {ref}") from None
        deployment_id = next(self._ids)
        now = _iso(time.time())
        url = f"{self.base_url}/repos/{owner}/{name}/deployments/{deployment_id}"
        environment = body.get("environment", "production")
        deployment = {
            "id": deployment_id,
            "url": url,
            "sha": sha,
            "ref": ref,
            "task": body.get("task", "deploy"),
            "payload": body.get("payload", {}),
            "environment": environment,
            "original_environment": environment,
            "description": body.get("description"),
            "production_environment": body.get(
                "production_environment", environment == "production"
            ),
            "transient_environment": body.get("transient_environment", False),
            "creator": {"login": "releasebot"},
            "created_at": now,
            "updated_at": now,
            "statuses_url": f"{url}/statuses",
        }
        repo.deployments.append(deployment)
        repo.deployment_statuses[deployment_id] = []
        self._execute(owner, name, repo, deployment)
        return 201, deployment, {}

    def _deployments(
        self, request: web.Request, _o: str, _n: str, repo: _Repo, _b: Any, query: Any
    ) -> tuple[int, Any, dict[str, str]]:
        found = [
            d
            for d in reversed(repo.deployments)
            if all(query.get(k, d[k]) == d[k] for k in ("sha", "ref", "task", "environment"))
        ]
        chunk, headers = self._page(request, found)
        return 200, chunk, headers

    def _deployment(self, repo: _Repo, deployment_id: str) -> Json:
        for deployment in repo.deployments:
            if deployment["id"] == int(deployment_id):
                return deployment
        raise _Answer(404, "Not Found")

    def _create_dstatus(
        self, _r: web.Request, _o: str, _n: str, repo: _Repo, body: Any, _q: Any, deployment_id: str
    ) -> tuple[int, Any, dict[str, str]]:
        deployment = self._deployment(repo, deployment_id)
        states = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
        if not isinstance(body, dict) or body.get("state") not in states:
            raise _Answer(
                422,
                "Validation Failed",
                errors=[{"resource": "DeploymentStatus", "field": "state", "code": "invalid"}],
            )
        status = self._add_dstatus(
            repo,
            deployment,
            body["state"],
            description=body.get("description", ""),
            log_url=body.get("log_url", ""),
            environment_url=body.get("environment_url", ""),
            environment=body.get("environment", deployment["environment"]),
            auto_inactive=body.get("auto_inactive", True),
        )
        return 201, status, {}

    def _add_dstatus(
        self,
        repo: _Repo,
        deployment: Json,
        state: str,
        *,
        description: str,
        log_url: str,
        environment_url: str = "",
        environment: str | None = None,
        auto_inactive: bool = True,
        creator: str = "releasebot",
    ) -> Json:
        now = _iso(time.time())
        status = {
            "id": next(self._ids),
            "state": state,
            "description": description,
            "environment": deployment["environment"] if environment is None else environment,
            "log_url": log_url,
            "target_url": log_url,
            "environment_url": environment_url,
            "deployment_url": deployment["url"],
            "creator": {"login": creator},
            "created_at": now,
            "updated_at": now,
        }
        history = repo.deployment_statuses[deployment["id"]]
        # GitHub marks earlier non-transient deployments of the environment inactive when one
        # succeeds (auto_inactive defaults to true).
        if state == "success" and auto_inactive:
            for other in repo.deployments:
                if (
                    other["id"] != deployment["id"]
                    and other["environment"] == status["environment"]
                ):
                    previous = repo.deployment_statuses.get(other["id"]) or []
                    if previous and previous[-1]["state"] == "success":
                        previous.append(
                            {**previous[-1], "id": next(self._ids), "state": "inactive"}
                        )
        history.append(status)
        return status

    def _dstatuses(
        self,
        request: web.Request,
        _o: str,
        _n: str,
        repo: _Repo,
        _b: Any,
        _q: Any,
        deployment_id: str,
    ) -> tuple[int, Any, dict[str, str]]:
        deployment = self._deployment(repo, deployment_id)
        chunk, headers = self._page(
            request, list(reversed(repo.deployment_statuses[deployment["id"]]))
        )
        return 200, chunk, headers
