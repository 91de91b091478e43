"""Deploy and gate commands are the released repository's code, so they reach no bot secret:
not in their environment, not through /proc, not in the files they can read; they cannot sign
a click or write to Redis. The repro: a committer who is not an approver commits a gate script
that forges two approvals with the signing secret; it must end with production untouched.

Run as root (as these tests are), nothing stops a command of the same user from reading the
bot's /proc/<pid>/environ; that is why `worker.run_as` exists, and the end-to-end test uses it
with `nobody`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from bot.devtools.slack_stand_in import SlackStandIn
from bot.domain.config import Config, ConfigError, load_config
from bot.runtime.container import Services
from bot.runtime.settings import Settings
from bot.runtime.web import Bot
from tests.helpers.bot import RunningBot
from tests.helpers.config import (
    SCRIPTS,
    automatic_gate,
    build_config,
    config_text,
    environment,
    make_config,
    worker_config_text,
    write_config,
)
from tests.helpers.messages import release_message, wait_for_gates
from tests.helpers.processes import worker_command
from tests.helpers.redis_server import RedisServer
from tests.helpers.signing import SIGNING_SECRET

NOBODY = pwd.getpwnam("nobody")
PASSWORD = f"redis-password-{uuid.uuid4().hex}"
TOKEN = f"xoxb-{uuid.uuid4().hex}"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder outside pytest's (root-only) tmp tree that `nobody` can write to."""
    path = Path(tempfile.mkdtemp(prefix="releasebot-shared-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- the environment a command gets ----------------------------------------------------------

DUMP = 'env > "{out}/$1.env"'


async def test_commands_get_a_clean_environment_and_what_the_config_passes(
    start_bot, git_remote, tmp_path, monkeypatch, shared_dir
):
    secrets = {
        "SLACK_BOT_TOKEN": "xoxb-leaked",
        "SLACK_SIGNING_SECRET": "leaked-secret",
        "SLACK_APP_TOKEN": "xapp-leaked",
        "REDIS_URL": "redis://:pw-leaked@h:1/0",
        "RELEASEBOT_STATE_DIR": "/leaked/state",
        "RELEASEBOT_CONFIG": "/leaked.toml",
        "AWS_SECRET_ACCESS_KEY": "not-passed",
    }
    for name, value in {**secrets, "NPM_TOKEN": "npm-passed"}.items():
        monkeypatch.setenv(name, value)
    git_remote.commit_file("ci/dump.sh", DUMP.format(out=shared_dir) + "\n")
    path = write_config(
        tmp_path,
        config_text(
            url=str(git_remote.bare),
            worker={"lock_ttl_seconds": 3},
            environments=[
                environment(
                    "staging",
                    "sh ci/dump.sh deploy",
                    env={"DEPLOY_TARGET": "blue"},
                    pass_env=["NPM_TOKEN"],
                ),
                environment("production"),
            ],
            gates=[
                automatic_gate(
                    "e2e",
                    "Automated tests",
                    command="sh ci/dump.sh gate",
                    env={"GATE_ONLY": "yes", "DEPLOY_TARGET": "green"},
                )
            ],
        ),
    )
    bot = await start_bot(load_config(path))
    await bot.command("rc")
    await wait_for_gates(bot.slack, "v0.15.0-rc.1", count=1)
    for what in ("deploy", "gate"):
        dumped = dict(
            line.split("=", 1)
            for line in (shared_dir / f"{what}.env").read_text().splitlines()
            if "=" in line
        )
        for name, value in secrets.items():
            assert name not in dumped and value not in "\n".join(dumped.values()), (what, name)
        assert not [n for n in dumped if n.startswith(("SLACK_", "REDIS", "RELEASEBOT_"))]
        assert dumped["RELEASE_TAG"] == "v0.15.0-rc.1" and dumped["RELEASE_ENV"] == "staging"
        assert dumped["NPM_TOKEN"] == "npm-passed"  # passed by name, for both
        assert dumped["PATH"] == os.environ["PATH"]
        assert dumped["DEPLOY_TARGET"] == ("blue" if what == "deploy" else "green")
    assert "GATE_ONLY" not in (shared_dir / "deploy.env").read_text()
    # The tree the command ran in is the tag's files, without a way into the bot's clone.
    assert not git_remote.work.joinpath(".git").is_file()


async def test_the_tree_has_no_git_and_the_state_is_the_bots_alone(
    start_bot, git_remote, tmp_path, shared_dir
):
    git_remote.commit_file(
        "ci/look.sh",
        f'ls -a > "{shared_dir}/tree"; git rev-parse --git-dir > "{shared_dir}/git" 2>&1 || true\n',
    )
    config = make_config(git_remote, tmp_path)
    staging = dataclasses.replace(config.environments[0], deploy_command="sh ci/look.sh")
    config = dataclasses.replace(config, environments=(staging, *config.environments[1:]))
    bot = await start_bot(config)
    await bot.command("rc")
    await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    listing = (shared_dir / "tree").read_text().split()
    assert "app.txt" in listing and ".git" not in listing
    assert "not a git repository" in (shared_dir / "git").read_text()
    assert oct(bot.services.settings.state_dir.stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize(
    ("keys", "key", "message"),
    [
        ({"pass_env": ["SLACK_BOT_TOKEN"]}, "environments[0].pass_env[0]", "secret or setting"),
        ({"pass_env": ["REDIS_URL"]}, "environments[0].pass_env[0]", "secret or setting"),
        ({"pass_env": ["GITHUB_TOKEN"]}, "environments[0].pass_env[0]", "secret or setting"),
        (
            {"pass_env": ["GITHUB_APP_PRIVATE_KEY"]},
            "environments[0].pass_env[0]",
            "secret or setting",
        ),
        (
            {"pass_env": ["RELEASEBOT_STATE_DIR"]},
            "environments[0].pass_env[0]",
            "secret or setting",
        ),
        (
            {"env": {"SLACK_SIGNING_SECRET": "x"}},
            "environments[0].env.SLACK_SIGNING_SECRET",
            "secret or setting",
        ),
        ({"env": {"RELEASE_TAG": "v9"}}, "environments[0].env.RELEASE_TAG", "set by the bot"),
        ({"env": {"A B": "x"}}, "environments[0].env.A B", "not an environment variable"),
        ({"env": {"N": 1}}, "environments[0].env.N", "expected a string"),
        ({"pass_env": "NPM_TOKEN"}, "environments[0].pass_env", "expected a list"),
    ],
    ids=str,
)
def test_a_command_environment_never_names_a_bot_secret(keys: dict, key: str, message: str):
    with pytest.raises(ConfigError) as raised:
        build_config(environments=[environment("staging", **keys)])
    assert raised.value.key == key and message in raised.value.problem


@pytest.mark.parametrize(
    ("user", "message"),
    [("no-such-user-here", "there is no user"), ("root", "must not be root"), ("", "must name")],
)
def test_run_as_is_checked(user: str, message: str):
    with pytest.raises(ConfigError) as raised:
        build_config(worker={"run_as": user}, environments=[environment("staging")])
    assert raised.value.key == "worker.run_as" and message in raised.value.problem


# --- the bot's memory is closed to commands of its own user -------------------------------

PROBE = textwrap.dedent("""
    import ctypes, os, subprocess, sys
    sys.path.insert(0, sys.argv[1])
    from bot.adapters.process.runner import keep_memory_from_children
    # Become an ordinary user first (as a bot that is not root is). Changing uid makes a
    # process non-dumpable by itself; a bot exec'd as that user is dumpable, so start there.
    os.setgid(65534); os.setuid(65534)
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE, 1
    if sys.argv[2] == "closed":
        assert keep_memory_from_children()
    # A command of the same user tries to read our environment, as a deploy script would.
    out = subprocess.run(["/bin/sh", "-c", 'cat /proc/$PPID/environ'], capture_output=True,
                         env={"PATH": "/usr/bin:/bin"})
    print("READ" if b"THE_BOTS_SECRET" in out.stdout else "DENIED")
""")


@pytest.mark.parametrize(("mode", "expected"), [("closed", "DENIED"), ("open", "READ")])
def test_a_non_dumpable_bot_cannot_be_read_by_its_own_users_commands(mode: str, expected: str):
    """The mechanism, as it works for a bot that does not run as root: the process drops to
    `nobody` and calls the bot's own function; a child of the same user cannot read its
    /proc/<pid>/environ. Without the call (the "open" case) it can: the test can fail."""
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(
        [sys.executable, "-c", PROBE, root, mode],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "THE_BOTS_SECRET": "s3cr3t"},
    )
    assert out.stdout.strip() == expected, out.stderr


# --- roles hold only the secrets they use -------------------------------------------------


def test_a_worker_starts_without_the_signing_secret_and_warns_if_it_has_it(
    tmp_path, git_remote, subprocess_env
):
    path = write_config(tmp_path, worker_config_text(git_remote, tmp_path))
    without = {k: v for k, v in subprocess_env.items() if k != "SLACK_SIGNING_SECRET"}
    for env, warned in ((without, False), (subprocess_env, True)):
        worker = subprocess.Popen(
            worker_command(path),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert worker.stderr is not None
        lines: list[str] = []
        try:
            # Past its checks (however slow a loaded machine starts it), then still running.
            while not any("starting the worker role" in line for line in lines):
                line = worker.stderr.readline()
                assert line, f"the worker ended: {''.join(lines)}"
                lines.append(line)
            time.sleep(1)
            assert worker.poll() is None  # it runs
        finally:
            worker.terminate()
            _, rest = worker.communicate(timeout=30)
        err = "".join(lines) + (rest or "")
        assert (
            "SLACK_SIGNING_SECRET is set, but the worker role does not use it" in err
        ) is warned, err
    web = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.runtime.cli",
            "serve",
            "--role",
            "web",
            "--port",
            "0",
            "--config",
            str(path),
        ],
        env=without,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert web.returncode == 2 and "SLACK_SIGNING_SECRET" in web.stderr


# --- the repro, end to end ------------------------------------------------------------------

POLICY = """
[[gates]]
id = "qa"
name = "Manual QA"
stage = "staging"
manual = true

[approvals.production]
required = 2
approvers = ["U0BOB", "U0CAROL"]
"""


@pytest.fixture
async def unique_slack() -> AsyncIterator[SlackStandIn]:
    """Slack with a bot token found nowhere else (the shared fixture's token is in the bot's
    source, which a command may read: finding that would prove nothing)."""
    async with SlackStandIn(token=TOKEN) as stand_in:
        yield stand_in
    assert stand_in.invalid == []


async def test_a_gate_script_cannot_forge_approvals_or_reach_redis(
    git_remote, tmp_path, subprocess_env, shared_dir, unique_slack, prefix
):
    server = RedisServer(tmp_path / "redis", password=PASSWORD)
    server.start()
    worker = None
    bots: list[Bot] = []
    http = aiohttp.ClientSession()

    async def start_web(config: Config) -> RunningBot:
        settings = Settings(
            bot_token=TOKEN,
            signing_secret=SIGNING_SECRET,
            redis_url=server.url,
            slack_api_url=unique_slack.base_url,
            state_dir=tmp_path / "state-web",
            redis_prefix=prefix,
            update_delay=0.2,
        )
        services = Services.create(settings, config)
        bot = Bot(services, "web")
        await bot.start(port=0, host="127.0.0.1")
        bots.append(bot)
        return RunningBot(bot=bot, services=services, slack=unique_slack, http=http)

    try:
        shutil.copy(SCRIPTS / "deploy.sh", shared_dir / "deploy.sh")
        log = shared_dir / "deploys.log"
        git_remote.commit_file("attack.py", (SCRIPTS / "hostile_gate.py").read_text())
        git_remote.commit_file("ci/e2e.sh", '/usr/bin/python3 attack.py "$BOT_URL" "$REPORT_DIR"\n')
        # The web role is started first: its URL goes into the gate's environment.
        path = tmp_path / "releasebot.toml"

        def hostile_config(bot_url: str) -> str:
            deploy = f"DEPLOY_LOG={log} sh {shared_dir}/deploy.sh"
            return config_text(
                url=str(git_remote.bare),
                worker={"lock_ttl_seconds": 5, "run_as": "nobody"},
                environments=[environment("staging", deploy), environment("production", deploy)],
                gates=[
                    automatic_gate(
                        "e2e",
                        "Automated tests",
                        command="sh ci/e2e.sh",
                        env={"BOT_URL": bot_url, "REPORT_DIR": str(shared_dir)},
                    )
                ],
                extra=POLICY,
            )

        path.write_text(hostile_config("http://127.0.0.1:1"))
        web = await start_web(load_config(path))
        path.write_text(hostile_config(web.url))
        # The worker as many teams ran it: with every secret in its environment (values
        # found nowhere else, so finding one is a leak, not a read of the bot's source).
        worker_secrets = {"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET}
        env = {
            **subprocess_env,
            **worker_secrets,
            "REDIS_URL": server.url,
            "SLACK_API_URL": unique_slack.base_url,
        }
        with open(tmp_path / "worker.log", "ab") as worker_log:
            worker = subprocess.Popen(
                worker_command(path),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=worker_log,
            )

        # The committer, who is no approver, makes the candidate; its gate runs the script.
        await web.command("rc", user="U0MAL", user_name="mallory")
        message = await web.slack.wait_for(
            lambda: release_message(web.slack, "v0.15.0-rc.1"), timeout=30
        )
        (shared_dir / "target.json").write_text(
            json.dumps(
                {
                    "channel": message.channel,
                    "ts": message.ts,
                    "version": "0.15.0-rc.1",
                    "response_url": web.slack.response_url("mallory"),
                }
            )
        )
        await wait_for_gates(web.slack, "v0.15.0-rc.1", count=1)
        report = json.loads((shared_dir / "report.json").read_text())

        assert report["uid"] == NOBODY.pw_uid
        harvested = json.dumps(report["harvest"])
        for secret in (*worker_secrets.values(), PASSWORD):
            assert secret not in harvested
        # Whatever it took for a secret (source code mentions these names) was not one: every
        # click it signed was refused, and it wrote nothing into the bot's Redis.
        assert SIGNING_SECRET not in report["secrets"]
        assert not [u for u in report["redis_urls"] if PASSWORD in u]
        assert all(
            status == 401 for statuses in report["clicks"].values() for status in statuses
        ), report["clicks"]
        assert not await web.services.redis.exists("pwned-by-the-gate")
        release = await web.services.store.get_release("0.15.0-rc.1")
        assert release.gate("qa").approvals == []
        approvals = [
            e
            for e in await web.services.store.audit_entries()
            if e["action"] == "gate.approve" and e["outcome"] == "ok"
        ]
        assert approvals == []

        ack = web.slack.text_of(await web.command("final", user="U0MAL", user_name="mallory"))
        assert "is not ready" in ack and "Manual QA needs an approval" in ack
        await asyncio.sleep(1)
        assert "v0.15.0" not in git_remote.remote_tags()
        assert not [ln for ln in log.read_text().splitlines() if ln.startswith("production")]
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        for bot in bots:
            await bot.stop()
        await http.close()
        server.stop()
