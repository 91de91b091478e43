"""`releasebot shell --demo`: a sample project in a temporary folder that the bot really runs.

A bare "remote" with a messy tag history, deploy and gate scripts that really run (each
environment is a folder the deploy writes the release into), and a config that uses them,
with a CI gate that waits for the team's CI on GitHub (the shell's GitHub stand-in, which
`ci pass CONTEXT` reports to). Two services share the bot (issue 18): the website, released in
#releases, and a small `api` beside it (its own remote, deploy script, health endpoint and CI,
under `api/`), released in #api-releases. Grows with the bot: every capability the bot gains
should be walkable here.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Demo Dev",
    "GIT_AUTHOR_EMAIL": "dev@demo.invalid",
    "GIT_COMMITTER_NAME": "Demo Dev",
    "GIT_COMMITTER_EMAIL": "dev@demo.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}

# Where the demo's CI reports: repositories of the shell's GitHub stand-in.
GITHUB_REPOSITORY = "acme/website"
API_GITHUB_REPOSITORY = "acme/api"
# The demo's second service lives in this folder of the demo, laid out as the website's is.
API = "api"

DEPLOY_SCRIPT = """\
#!/bin/sh
# Demo deploy: "releases" the checked-out site into the environment's folder.
set -eu
env_dir="$DEMO_DIR/environments/$RELEASE_ENV"
mkdir -p "$env_dir"
echo "building $RELEASE_TAG ($RELEASE_SHA) for $RELEASE_ENV"
cp index.html "$env_dir/index.html"
rm -f "$env_dir/FAULT"  # a new build replaces a broken one (see `site ENV down` in the shell)
if [ -f data/feature-flags.toml ]; then cp data/feature-flags.toml "$env_dir/flags.toml"; fi
printf '%s\\n' "$RELEASE_VERSION" > "$env_dir/VERSION"
printf '%s %s %s\\n' "$(date -u +%FT%TZ)" "$RELEASE_ENV" "$RELEASE_TAG" >> "$DEMO_DIR/deploys.log"
echo "deployed $RELEASE_TAG to $RELEASE_ENV"
"""

API_DEPLOY_SCRIPT = """\
#!/bin/sh
# Demo deploy of the api: "releases" its checked-out code into the environment's folder.
set -eu
env_dir="$DEMO_DIR/environments/$RELEASE_ENV"
mkdir -p "$env_dir"
cp api.py "$env_dir/api.py"
rm -f "$env_dir/FAULT"
printf '%s\\n' "$RELEASE_VERSION" > "$env_dir/VERSION"
printf '%s %s %s\\n' "$(date -u +%FT%TZ)" "$RELEASE_ENV" "$RELEASE_TAG" >> "$DEMO_DIR/deploys.log"
echo "deployed api $RELEASE_TAG to $RELEASE_ENV"
"""

GATE_SCRIPT = """\
#!/bin/sh
# Demo gate: asks the environment's health endpoints whether it is up and serves the version
# that was just deployed.
set -eu
echo "checking $RELEASE_ENV for $RELEASE_VERSION ($1)"
if [ -f "$DEMO_DIR/environments/$RELEASE_ENV/FAILING" ]; then
  echo "$1: 2 checks failed (the demo's site $RELEASE_ENV failing)" >&2
  exit 1
fi
"$DEMO_PYTHON" - "$DEMO_SITE/$RELEASE_ENV" "$RELEASE_VERSION" <<'PY'
import json, sys, urllib.request
base, want = sys.argv[1], sys.argv[2]
health = json.load(urllib.request.urlopen(base + "/health", timeout=5))
assert health["status"] == "UP", health
info = json.load(urllib.request.urlopen(base + "/build-info", timeout=5))
assert info["version"] == want, f"the site reports {info['version']}, expected {want}"
print("health UP; build-info reports", info["version"])
PY
echo "$1: all checks passed"
"""

CONFIG = """\
# releasebot demo config (made by `releasebot shell --demo`): two services from one bot, the
# website (in #releases) and the api beside it (in #api-releases). The tables before
# [services.website] are shared by both; each service's own tables are laid over them.
[repository]
branch = "main"
tag_prefix = "v"

[worker]
lock_ttl_seconds = 10
reap_interval_seconds = 2
shutdown_grace_seconds = 0

# Into production: one approval per manual gate, from anyone but the requester.
[approvals.production]
required = 1
allow_self_approval = false

# A rollback needs one approval; whoever asks counts if they may approve.
[rollback]
required = 1

# Anyone may freeze an environment from Slack (`/release freeze`), at once; `--until` is read
# in the team's time zone. An EMERGENCY override of a freeze needs two approvals, never the
# asker's ([freeze.override] required = 2 by default).
[freeze]
timezone = "Europe/Berlin"

# Health checks, short intervals for the demo (production would use 30-60 s and a window of
# an hour after each production deploy). Carol is on call.
[monitoring]
tick_seconds = 0.5
failures_to_alert = 3
successes_to_resolve = 2
reminder_seconds = 300
oncall = ["U0CAROL"]
window_seconds = 60
window_interval_seconds = 1

# --- the website ---------------------------------------------------------------------------

[services.website]
repository = {{ url = "{remote}" }}
slack = {{ channel = "#releases" }}
github = {{ repository = "{github_repository}" }}

[[services.website.environments]]
name = "staging"
deploy_command = "DEMO_DIR={demo} sh {demo}/scripts/deploy.sh"
url = "{site}/staging"
timeout_seconds = 60
{checks}
[[services.website.environments]]
name = "production"
deploy_command = "DEMO_DIR={demo} sh {demo}/scripts/deploy.sh"
url = "{site}/production"
timeout_seconds = 60
{checks}
[[services.website.gates]]
id = "e2e"
name = "Automated tests"
stage = "staging"
command = "{gate_env} sh {demo}/scripts/gate.sh e2e"

[[services.website.gates]]
id = "infra"
name = "Infrastructure validation"
stage = "staging"
command = "{gate_env} sh {demo}/scripts/gate.sh infra"

# The team's CI reports on GitHub (in the shell, a local stand-in that `ci pass CONTEXT`
# reports to): the gate waits until both contexts passed on the candidate's commit.
[[services.website.gates]]
id = "ci"
name = "CI checks"
stage = "staging"
check = "github"
contexts = ["ci/build", "ci/e2e"]
timeout_seconds = 600

[[services.website.gates]]
id = "flags"
name = "Feature flags ready"
stage = "staging"
check = "flags-ready"

[[services.website.gates]]
id = "qa"
name = "Manual QA"
stage = "staging"
manual = true

[[services.website.gates]]
id = "perf"
name = "Performance acceptable"
stage = "staging"
manual = true

[[services.website.gates]]
id = "smoke"
name = "Smoke tests"
stage = "production"
command = "{gate_env} sh {demo}/scripts/gate.sh smoke"

# Hotfixes come from the newest hotfix/* branch, with fewer gates.
[services.website.hotfix]
branches = ["hotfix/*"]
gates = ["e2e", "qa", "smoke"]
required = 1

# Feature flags (data/feature-flags.toml): a change that shows a feature to more people needs
# one approval; switching off needs none.
[services.website.flags]
required = 1
verify_seconds = 10

# --- the api: a smaller service beside it, with its own repository, deploys and CI ------------

[services.api]
repository = {{ url = "{api_remote}" }}
slack = {{ channel = "#api-releases" }}
github = {{ repository = "{api_github_repository}" }}

[[services.api.environments]]
name = "staging"
deploy_command = "DEMO_DIR={api_demo} sh {demo}/scripts/deploy-api.sh"
url = "{site}/api/staging"
timeout_seconds = 60

[[services.api.environments]]
name = "production"
deploy_command = "DEMO_DIR={api_demo} sh {demo}/scripts/deploy-api.sh"
url = "{site}/api/production"
timeout_seconds = 60

[[services.api.gates]]
id = "contract"
name = "Contract tests"
stage = "staging"
command = "{api_gate_env} sh {demo}/scripts/gate.sh contract"

[[services.api.gates]]
id = "ci"
name = "CI checks"
stage = "staging"
check = "github"
contexts = ["ci/build"]
timeout_seconds = 600

# The shared [approvals.production] asks for an approval: here, of the api's manual gate.
[[services.api.gates]]
id = "qa"
name = "Manual QA"
stage = "staging"
manual = true

[[services.api.gates]]
id = "smoke"
name = "Smoke tests"
stage = "production"
command = "{api_gate_env} sh {demo}/scripts/gate.sh smoke"
"""

CHECKS = """
[[services.website.environments.checks]]
name = "health"
path = "/health"
interval_seconds = 2
timeout_seconds = 2
max_response_ms = 3000
json = {{ status = "UP" }}

[[services.website.environments.checks]]
name = "build-info"
path = "/build-info"
interval_seconds = 2
version_field = "version"
"""

FLAGS = """\
# Feature flags of the demo site. releasebot edits this file from Slack (/flag);
# comments like this one stay where they are.

[flags.new_infrastructure]
enabled = false
description = "The new CDN and load balancers"
rollout_percentage = 0

# Search v2 waits for the infrastructure.
[flags.search_v2]
enabled = false
description = "The new search page"
rollout_percentage = 0
"""

# The sample history, oldest first: (commit message, site heading, tags on that commit).
HISTORY: list[tuple[str, str, list[str]]] = [
    ("Initial site", "Hello", ["v0.8.1-bug-fixes"]),
    ("Blog section", "Hello, blog", ["v0.13.3-final", "bd-12", "20240315-1200"]),
    ("Dark mode", "Hello, dark mode", ["v0.14.0-rc.1", "v0.14.0"]),
    ("Fix footer links", "Hello, fixed footer", ["v0.14.1"]),
    # What the first candidate brings: Conventional Commits by several people, a pull
    # request number, a Risk: trailer (the release message and its thread list them).
    ("feat(blog): reading time on every post (#21)", "Hello, reading time", []),
    (
        "fix: contrast of links in dark mode\n\nRisk: link colours change for every reader",
        "Hello, readable links",
        [],
    ),
    ("Infrastructure changes", "Hello, new infrastructure", []),
]
# The api's history, as HISTORY: (commit message, its version string, tags on that commit).
API_HISTORY: list[tuple[str, str, list[str]]] = [
    ("Initial api", "1.3.0", ["v1.3.0"]),
    ("feat: /orders answers with the order's status", "1.4.0", ["v1.4.0-rc.1", "v1.4.0"]),
    ("feat: /orders pages its answers (#8)", "1.5.0-dev", []),
]
API_CODE = """\
# The demo's api: what its deploy copies into an environment ({version}).
ROUTES = ["/health", "/build-info", "/orders"]
"""

# Who wrote which of them (the rest: Demo Dev).
AUTHORS = {
    "feat(blog)": ("Ann Lee", "ann@demo.invalid"),
    "fix: contrast": ("Bo Chen", "bo@demo.invalid"),
}


@dataclass(frozen=True)
class Demo:
    root: Path

    @property
    def remote(self) -> Path:
        return self.root / "remote.git"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def config_path(self) -> Path:
        return self.root / "releasebot.toml"

    def deployed_version(self, environment: str) -> str | None:
        path = self.root / "environments" / environment / "VERSION"
        return path.read_text().strip() if path.exists() else None

    def remote_tags(self) -> list[str]:
        return _git(["tag"], self.remote).split()

    def deploys(self) -> list[str]:
        log = self.root / "deploys.log"
        return log.read_text().splitlines() if log.exists() else []

    @property
    def api(self) -> Demo:
        """The second service, laid out in a folder of its own as the website's is (its
        remote, its environments, its deploys.log)."""
        return Demo(self.root / API)


def _git(args: list[str], cwd: Path, author: tuple[str, str] | None = None) -> str:
    env = {**os.environ, **_GIT_ENV}
    if author is not None:
        env["GIT_AUTHOR_NAME"], env["GIT_AUTHOR_EMAIL"] = author
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return result.stdout.strip()


def create_demo(root: Path, site_port: int) -> Demo:
    """Lay out the demo project under `root` (which must be empty or missing); its site will
    be served on `site_port` (see DemoSite)."""
    demo = Demo(root)
    root.mkdir(parents=True, exist_ok=True)
    scripts = root / "scripts"
    scripts.mkdir()
    (scripts / "deploy.sh").write_text(DEPLOY_SCRIPT)
    (scripts / "gate.sh").write_text(GATE_SCRIPT)
    (scripts / "deploy-api.sh").write_text(API_DEPLOY_SCRIPT)
    (root / "environments").mkdir()

    _git(["init", "-q", "--bare", "-b", "main", str(demo.remote)], root)
    _git(["init", "-q", "-b", "main", str(demo.work)], root)
    _git(["remote", "add", "origin", str(demo.remote)], demo.work)
    (demo.work / "data").mkdir()
    (demo.work / "data" / "feature-flags.toml").write_text(FLAGS)
    for message, heading, tags in HISTORY:
        (demo.work / "index.html").write_text(
            f"<!doctype html>\n<title>Demo site</title>\n<h1>{heading}</h1>\n"
        )
        _git(["add", "index.html", "data"], demo.work)
        author = next((who for start, who in AUTHORS.items() if message.startswith(start)), None)
        _git(["commit", "-q", "-m", message], demo.work, author=author)
        for tag in tags:
            _git(["tag", "-a", tag, "-m", tag], demo.work)
    # A fix waiting on a hotfix branch, one commit past main's head.
    _git(["checkout", "-q", "-b", "hotfix/footer-links"], demo.work)
    (demo.work / "index.html").write_text(
        "<!doctype html>\n<title>Demo site</title>\n<h1>Hello, new infrastructure</h1>\n"
        '<footer><a href="/about">About</a></footer>\n'
    )
    _git(["commit", "-q", "-am", "Fix footer links"], demo.work)
    _git(["checkout", "-q", "main"], demo.work)
    _git(["push", "-q", "--tags", "origin", "main", "hotfix/footer-links"], demo.work)

    _create_api(demo.api)

    site = f"http://127.0.0.1:{site_port}"
    gate_env = f"DEMO_DIR={root} DEMO_SITE={site} DEMO_PYTHON={sys.executable}"
    api_gate_env = f"DEMO_DIR={demo.api.root} DEMO_SITE={site}/{API} DEMO_PYTHON={sys.executable}"
    demo.config_path.write_text(
        CONFIG.format(
            remote=demo.remote,
            demo=root,
            site=site,
            gate_env=gate_env,
            checks=CHECKS.format(),
            github_repository=GITHUB_REPOSITORY,
            api_remote=demo.api.remote,
            api_demo=demo.api.root,
            api_gate_env=api_gate_env,
            api_github_repository=API_GITHUB_REPOSITORY,
        )
    )
    # Both environments run v0.14.1 from before the bot, so their checks are green at first.
    for env in ("staging", "production"):
        (root / "environments" / env).mkdir()
        (root / "environments" / env / "index.html").write_text(
            "<!doctype html>\n<title>Demo site</title>\n<h1>Hello, fixed footer</h1>\n"
        )
        (root / "environments" / env / "VERSION").write_text("0.14.1\n")
        (root / "environments" / env / "flags.toml").write_text(FLAGS)
    return demo


def _create_api(api: Demo) -> None:
    """The api's remote, with a short history of its own and one change since v1.4.0, which
    both of its environments run."""
    api.root.mkdir()
    _git(["init", "-q", "--bare", "-b", "main", str(api.remote)], api.root)
    _git(["init", "-q", "-b", "main", str(api.work)], api.root)
    _git(["remote", "add", "origin", str(api.remote)], api.work)
    for message, version, tags in API_HISTORY:
        (api.work / "api.py").write_text(API_CODE.format(version=version))
        _git(["add", "api.py"], api.work)
        _git(["commit", "-q", "-m", message], api.work)
        for tag in tags:
            _git(["tag", "-a", tag, "-m", tag], api.work)
    _git(["push", "-q", "--tags", "origin", "main"], api.work)
    for env in ("staging", "production"):
        env_dir = api.root / "environments" / env
        env_dir.mkdir(parents=True)
        (env_dir / "api.py").write_text(API_CODE.format(version="1.4.0"))
        (env_dir / "VERSION").write_text("1.4.0\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DemoSite:
    """The demo's "website" on 127.0.0.1: per environment, the page the last deploy put there,
    `/health`, `/build-info` with the version deployed, and `/flags` with the flags it runs
    (what health checks and flag changes look at); and the api's `/api/ENV/health` and
    `/api/ENV/build-info`, from what its deploys put in its folder."""

    def __init__(self, demo: Demo, port: int) -> None:
        self.demo = demo
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{env}/health", self._health)
        app.router.add_get("/{env}/build-info", self._build_info)
        app.router.add_get("/{env}/flags", self._flags)
        app.router.add_get("/{env}/", self._page)
        app.router.add_get(f"/{API}/{{env}}/health", self._health)
        app.router.add_get(f"/{API}/{{env}}/build-info", self._build_info)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    SERVICES = ("website", API)

    def _service(self, service: str) -> Demo:
        return self.demo.api if service == API else self.demo

    def _env_dir(self, request: web.Request) -> Path:
        env = request.match_info["env"]
        if not env.isidentifier():
            raise web.HTTPNotFound()
        service = API if request.path.startswith(f"/{API}/") else "website"
        return self._service(service).root / "environments" / env

    FAULTS = ("down", "slow", "failing", "up")

    def fault(self, environment: str, mode: str, service: str = "website") -> None:
        """Break an environment's site (the website's, or the api's) on purpose (down: 503,
        slow: 1.5 s per answer) until `up` or the next deploy there; `failing` makes its gates
        fail (not its health) until `up`, through deploys."""
        env_dir = self._service(service).root / "environments" / environment
        env_dir.mkdir(parents=True, exist_ok=True)
        if mode == "up":
            (env_dir / "FAULT").unlink(missing_ok=True)
            (env_dir / "FAILING").unlink(missing_ok=True)
        elif mode == "failing":
            (env_dir / "FAILING").write_text(mode)
        else:
            (env_dir / "FAULT").write_text(mode)

    async def _health(self, request: web.Request) -> web.Response:
        env_dir = self._env_dir(request)
        fault = env_dir / "FAULT"
        mode = fault.read_text().strip() if fault.exists() else ""
        if mode == "slow":
            await asyncio.sleep(1.5)
        deployed = any((env_dir / name).exists() for name in ("index.html", "api.py"))
        up = deployed and mode != "down"
        return web.json_response({"status": "UP" if up else "DOWN"}, status=200 if up else 503)

    async def _build_info(self, request: web.Request) -> web.Response:
        path = self._env_dir(request) / "VERSION"
        if not path.exists():
            raise web.HTTPNotFound()
        return web.json_response({"version": path.read_text().strip()})

    async def _flags(self, request: web.Request) -> web.Response:
        path = self._env_dir(request) / "flags.toml"
        flags = tomllib.loads(path.read_text()).get("flags", {}) if path.exists() else {}
        return web.json_response({"flags": flags})

    async def _page(self, request: web.Request) -> web.Response:
        page = self._env_dir(request) / "index.html"
        if not page.exists():
            raise web.HTTPNotFound()
        return web.Response(text=page.read_text(), content_type="text/html")
