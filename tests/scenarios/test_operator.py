"""What the operator of `releasebot serve` sees: its version, its help, its port from PORT,
and an idle bot's log (JSON lines, no third-party chatter, no warning at every start)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bot.devtools.demo import free_port
from bot.runtime.cli import main, serve_port
from bot.runtime.settings import Settings, SettingsError
from tests.helpers.config import make_config, worker_config_text, write_config
from tests.helpers.messages import wait_for_gates

RELEASEBOT = [sys.executable, "-m", "bot.runtime.cli"]


def test_version_and_the_help_of_serve(capsys):
    try:
        main(["--version"])
    except SystemExit as stop:
        assert stop.code == 0
    assert capsys.readouterr().out.startswith("releasebot ")
    try:
        main(["serve", "--help"])
    except SystemExit as stop:
        assert stop.code == 0
    text = capsys.readouterr().out
    for words in ("scheduler", "SLACK_SIGNING_SECRET", "PORT", "LOG_FORMAT", "Socket Mode"):
        assert words in text


def test_the_port_comes_from_port_unless_given():
    assert serve_port(None, {}) == 3000
    assert serve_port(None, {"PORT": "8080"}) == 8080
    assert serve_port(4000, {"PORT": "8080"}) == 4000
    for bad in ("http", "70000", "-1"):
        try:
            serve_port(None, {"PORT": bad})
        except SettingsError as exc:
            assert "PORT must be a TCP port number" in str(exc)
        else:
            raise AssertionError(bad)


def test_socket_mode_needs_no_signing_secret():
    env = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}
    assert Settings.from_env(env, role="web").signing_secret == ""
    try:
        Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1"}, role="web")
    except SettingsError as exc:
        assert "SLACK_SIGNING_SECRET" in str(exc) and "README: Environment" in str(exc)
    else:
        raise AssertionError("HTTP needs the signing secret")


def test_a_bad_log_setting_stops_start_up_naming_it(tmp_path: Path, subprocess_env, git_remote):
    path = write_config(tmp_path, worker_config_text(git_remote, tmp_path))
    done = subprocess.run(
        [*RELEASEBOT, "serve", "--config", str(path)],
        env={**subprocess_env, "LOG_LEVEL": "loud"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_idle_bot_logs_json_lines_and_no_chatter(tmp_path: Path, subprocess_env, git_remote):
    text = worker_config_text(git_remote, tmp_path) + "\n[monitoring]\ntick_seconds = 0.2\n"
    path = write_config(tmp_path, text)
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**subprocess_env, "PORT": str(port), "LOG_FORMAT": "json"}
    env.pop("LOG_LEVEL", None)
    with open(log, "wb") as out:
        bot = subprocess.Popen(
            [*RELEASEBOT, "serve", "--config", str(path), "--host", "127.0.0.1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 30
        while True:  # listening on $PORT
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        time.sleep(4.0)  # twenty monitoring ticks, flag-ramp runs, outbox sweeps
    finally:
        asked = time.monotonic()
        bot.send_signal(signal.SIGTERM)
        assert bot.wait(timeout=60) == 0
        stopped = time.monotonic() - asked
    # Idle, it stops well inside docker stop's 10 s (saq alone waited its 20 s grace). Alone
    # it takes some 0.03 s; a loaded machine once took 2.02 s (a tick in flight finishes
    # first), so the bound is half of docker's, not a guess at this machine's speed.
    assert stopped < 5.0, stopped
    lines = log.read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line is one JSON event
    assert all({"time", "level", "logger", "message"} <= set(e) for e in events)
    messages = [e["message"] for e in events]
    assert not [m for m in messages if "Running job" in m or "will be unused" in m], messages
    assert any("starting the all role" in m for m in messages)
    assert len(events) < 15, messages


async def test_work_queued_while_no_worker_runs_says_so(start_bot, git_remote, tmp_path: Path):
    web = await start_bot(make_config(git_remote, tmp_path), role="web")
    answer = await web.command("rc --description quiet")
    assert "no worker is running" in answer["text"]
    await start_bot(make_config(git_remote, tmp_path), role="worker", name="worker")
    await wait_for_gates(web.slack, "v0.15.0-rc.1", count=2)
    answer = await web.command("rollback staging --reason check")
    assert "no worker is running" not in str(answer)
