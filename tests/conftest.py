"""Shared fixtures: real Redis (a key prefix per test), real git remotes, the Slack stand-in,
and the real bot serving signed HTTP requests."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis

from bot.devtools.slack_stand_in import SlackStandIn, validate_blocks
from bot.domain.config import Config, parse_config
from bot.runtime.container import Services
from bot.runtime.settings import Settings
from bot.runtime.web import Bot, Role

REDIS_URL = os.environ.get("RELEASEBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test"
SCRIPTS = Path(__file__).parent / "scripts"
GIT_ENV = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
           "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.com",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


# --- Redis -----------------------------------------------------------------------------------

@pytest.fixture
def prefix() -> str:
    return f"rbtest:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def redis(prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    # Our keys and saq's (whose queue name carries the prefix).
    for pattern in (f"{prefix}*", f"saq:*{prefix}*"):
        async for key in client.scan_iter(match=pattern, count=500):
            await client.delete(key)
    await client.aclose()


class RedisServer:
    """A redis-server of the test's own on a free port, for tests that stop, pause or restart
    Redis (the shared one on 6379 must keep serving every other test).

    With `persist`, it keeps an append-only file (fsync on every write) in `directory`, so a
    restart comes back with the data it had, as a production Redis would."""

    def __init__(self, directory: Path, *, password: str | None = None,
                 persist: bool = False) -> None:
        self.directory = directory
        self.password = password
        self.persist = persist
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--dir", str(self.directory),
                "--appendonly", "yes" if self.persist else "no"]
        if self.persist:
            args += ["--appendfsync", "always"]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not come up")

    def stop(self) -> None:
        """Stop it as a crash would: SIGKILL, nothing written on the way out."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused server cannot die otherwise
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        """Hang it: connections stay open, nothing is answered (SIGSTOP)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "own-redis")
    server.start()
    yield server
    server.stop()


# --- git -------------------------------------------------------------------------------------

def git(*args: str, cwd: Path) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                         env={**os.environ, **GIT_ENV})
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

    def tag(self, name: str, annotated: bool = False) -> None:
        if annotated:
            git("tag", "-a", name, "-m", name, cwd=self.work)
        else:
            git("tag", name, cwd=self.work)

    def push(self) -> None:
        git("push", "-q", "--tags", "origin", "main", cwd=self.work)

    def remote_tags(self) -> dict[str, str]:
        """tag -> commit on the bare remote."""
        out = git("for-each-ref", "refs/tags",
                  "--format=%(refname:strip=2) %(objectname) %(*objectname)", cwd=self.bare)
        tags = {}
        for line in out.splitlines():
            parts = line.split()
            tags[parts[0]] = parts[2] if len(parts) > 2 else parts[1]
        return tags

    def tag_message(self, tag: str) -> str:
        return git("for-each-ref", f"refs/tags/{tag}", "--format=%(contents)", cwd=self.bare)

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.work)


@pytest.fixture
def git_remote(tmp_path: Path) -> GitRemote:
    bare = tmp_path / "remote.git"
    work = tmp_path / "work"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    git("clone", "-q", str(bare), str(work), cwd=tmp_path)
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


# --- config ----------------------------------------------------------------------------------

def make_config(remote: GitRemote, tmp_path: Path, *, deploy_env: str = "",
                gate_env: str = "", lock_ttl: float = 3.0, extra: str = "",
                production_url: str = "") -> Config:
    import tomllib

    log = tmp_path / "deploys.log"
    text = f"""
[repository]
url = "{remote.bare}"
branch = "main"

[slack]
channel = "#releases"

[worker]
lock_ttl_seconds = {lock_ttl}
reap_interval_seconds = 0.5
concurrency = 2
shutdown_grace_seconds = 0

[[environments]]
name = "staging"
deploy_command = "DEPLOY_LOG={log} {deploy_env} sh {SCRIPTS}/deploy.sh"
url = "http://127.0.0.1:1/staging"
timeout_seconds = 20

[[environments]]
name = "production"
deploy_command = "DEPLOY_LOG={log} sh {SCRIPTS}/deploy.sh"
timeout_seconds = 20
{f'url = "{production_url}"' if production_url else ""}

[[gates]]
id = "e2e"
name = "Automated tests"
stage = "staging"
command = "{gate_env} sh {SCRIPTS}/gate.sh e2e"

[[gates]]
id = "infra"
name = "Infrastructure validation"
stage = "staging"
command = "{gate_env} sh {SCRIPTS}/gate.sh infra"

[[gates]]
id = "qa"
name = "Manual QA"
stage = "staging"
manual = true
{extra}
"""
    return parse_config(tomllib.loads(text))


def deploy_log(tmp_path: Path) -> list[str]:
    path = tmp_path / "deploys.log"
    return path.read_text().splitlines() if path.exists() else []


# --- Slack ----------------------------------------------------------------------------------

@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn(token=BOT_TOKEN) as stand_in:
        yield stand_in
    # Every message the bot sent must have been valid Block Kit.
    assert stand_in.invalid == [], stand_in.invalid


def sign(body: str, timestamp: int | None = None, secret: str = SIGNING_SECRET) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}",
            "Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class RunningBot:
    bot: Bot
    services: Services
    slack: SlackStandIn
    http: aiohttp.ClientSession
    sent: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.bot.port}"

    def command_body(self, text: str, *, user: str = "U0ALICE", user_name: str = "alice",
                     trigger_id: str | None = None) -> str:
        return urlencode({
            "token": "legacy", "team_id": "T0TEST", "team_domain": "acme",
            "channel_id": "C0DEV", "channel_name": "dev", "user_id": user,
            "user_name": user_name, "command": "/release", "text": text,
            "api_app_id": "A0TEST", "is_enterprise_install": "false",
            "response_url": self.slack.response_url(user),
            "trigger_id": trigger_id or f"{uuid.uuid4().int}.{time.time_ns()}",
        })

    async def post(self, body: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        async with self.http.post(f"{self.url}/slack/events", data=body,
                                  headers=headers) as resp:
            text = await resp.text()
            try:
                data = json.loads(text) if text else {}
            except json.JSONDecodeError:
                data = {"raw": text}
            return resp.status, data

    async def click(self, message: Any, action_id: str, *, user: str = "U0BOB",
                    user_name: str = "bob", gate: str | None = None) -> tuple[int, str]:
        """Press a button of a posted message, as Slack would send it (signed)."""
        for block in message.blocks:
            for element in block.get("elements", []) if block.get("type") == "actions" else []:
                if element.get("action_id") != action_id:
                    continue
                if gate and json.loads(element["value"])["g"] != gate:
                    continue
                payload = {
                    "type": "block_actions", "api_app_id": "A0TEST", "token": "legacy",
                    "team": {"id": "T0TEST", "domain": "acme"},
                    "user": {"id": user, "username": user_name, "name": user_name,
                             "team_id": "T0TEST"},
                    "container": {"type": "message", "message_ts": message.ts,
                                  "channel_id": message.channel},
                    "channel": {"id": message.channel, "name": "releases"},
                    "message": {"ts": message.ts, "blocks": message.blocks,
                                "text": message.text},
                    "trigger_id": f"{uuid.uuid4().int}.{time.time_ns()}",
                    "response_url": self.slack.response_url(user),
                    "actions": [{**element, "block_id": block.get("block_id"),
                                 "action_ts": str(time.time())}]}
                body = interaction_body(payload)
                async with self.http.post(f"{self.url}/slack/events", data=body,
                                          headers=sign(body)) as resp:
                    return resp.status, await resp.text()
        raise AssertionError(f"no {action_id} button for {gate} in the message")

    async def submit_view(self, view: dict[str, Any], values: dict[str, str], *,
                          user: str = "U0BOB", user_name: str = "bob") -> tuple[int, str]:
        state = {block_id: {block_id: {"type": "plain_text_input", "value": value}}
                 for block_id, value in values.items()}
        payload = {"type": "view_submission", "api_app_id": "A0TEST", "token": "legacy",
                   "team": {"id": "T0TEST", "domain": "acme"},
                   "user": {"id": user, "username": user_name, "name": user_name,
                            "team_id": "T0TEST"},
                   "trigger_id": f"{uuid.uuid4().int}.{time.time_ns()}",
                   "view": {**view, "id": "V0TEST", "state": {"values": state}}}
        body = interaction_body(payload)
        async with self.http.post(f"{self.url}/slack/events", data=body,
                                  headers=sign(body)) as resp:
            return resp.status, await resp.text()

    async def command(self, text: str, **kwargs: Any) -> dict[str, Any]:
        """Send a signed slash command; the ack must be valid Block Kit, like every message."""
        body = self.command_body(text, **kwargs)
        status, data = await self.post(body, sign(body))
        assert status == 200, (status, data)
        assert data.get("text"), data
        assert validate_blocks(data.get("blocks", []), where="ack") == [], data
        return data


def interaction_body(payload: dict[str, Any]) -> str:
    return urlencode({"payload": json.dumps(payload)})


def make_settings(prefix: str, slack: SlackStandIn, state_dir: Path,
                  redis_url: str = REDIS_URL) -> Settings:
    return Settings(bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, redis_url=redis_url,
                    slack_api_url=slack.base_url, state_dir=state_dir, redis_prefix=prefix,
                    update_delay=0.2)


@pytest.fixture
async def start_bot(prefix: str, redis: Redis, slack: SlackStandIn,
                    tmp_path: Path) -> AsyncIterator[Any]:
    bots: list[Bot] = []
    http = aiohttp.ClientSession()

    async def start(config: Config, role: Role = "all", name: str = "bot",
                    redis_url: str = REDIS_URL) -> RunningBot:
        """The real bot; `redis_url` points it at a Redis of the test's own (RedisServer)."""
        settings = make_settings(prefix, slack, tmp_path / f"state-{name}", redis_url)
        services = Services.create(settings, config)
        bot = Bot(services, role)
        await bot.start(port=0, host="127.0.0.1")
        bots.append(bot)
        return RunningBot(bot=bot, services=services, slack=slack, http=http)

    yield start
    for bot in bots:
        await bot.stop()
    await http.close()


@pytest.fixture
def subprocess_env(prefix: str, slack: SlackStandIn, tmp_path: Path) -> Iterator[dict[str, str]]:
    yield {**os.environ, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "REDIS_URL": REDIS_URL, "SLACK_API_URL": slack.base_url,
           "RELEASEBOT_REDIS_PREFIX": prefix, "RELEASEBOT_UPDATE_DELAY": "0.2",
           "RELEASEBOT_STATE_DIR": str(tmp_path / "state-subprocess")}


class LocalSite:
    """An HTTP server on 127.0.0.1 (a free port) for what the bot talks to; subclasses add
    their routes in `routes`."""

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

