"""`releasebot shell`: the real bot in a terminal against the stand-in, scripted and live."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pexpect
import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from bot.devtools.demo import create_demo
from bot.devtools.embedded_redis import EmbeddedRedis
from bot.devtools.shell import Shell, plain, render
from bot.devtools.terminal import ShellCompleter
from bot.runtime.container import Services
from bot.runtime.web import Bot
from tests.helpers.bot import make_settings
from tests.helpers.config import make_config, worker_config_text, write_config
from tests.helpers.redis_server import REDIS_URL

ROOT = Path(__file__).parents[2]
WALKTHROUGH = ROOT / "examples" / "walkthrough.txt"


def run_shell(
    args: list[str], *, stdin: str | None = None, redis_url: str | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if redis_url:
        env["REDIS_URL"] = redis_url
    env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT on a hang prints every thread's stack
    command = [sys.executable, "-m", "bot.runtime.cli", "shell", *args]
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        out, err = process.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        # Say where it hung: what it printed last, what its tasks and threads wait for.
        process.send_signal(signal.SIGUSR1)
        time.sleep(2)
        process.send_signal(signal.SIGABRT)
        out, err = process.communicate(timeout=30)
        pytest.fail(
            f"the shell hung for {timeout:g} s\n--- stdout (end) ---\n"
            f"{out[-4000:]}\n--- stderr (end) ---\n{err[-8000:]}"
        )
    finally:
        if process.poll() is None:  # whatever stopped the test, the shell goes too
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(command, process.returncode, out, err)


@pytest.mark.timeout(300)  # the whole walkthrough: about 20 s alone, more on a busy machine
def test_the_scripted_walkthrough_runs_the_demo_for_real(tmp_path: Path):
    demo_dir = tmp_path / "demo"
    result = run_shell(["--demo-dir", str(demo_dir), "--script", str(WALKTHROUGH)], timeout=280)
    assert result.returncode == 0, result.stderr
    # Loud about the embedded Redis.
    assert "Nothing is kept across" in result.stderr and "REDIS_URL" in result.stderr
    # Outcomes, not wording: the tag is in the sample repository, on the head of main...
    from bot.devtools.demo import Demo

    demo = Demo(demo_dir)
    tags = demo.remote_tags()
    for tag in ("v0.15.0-rc.1", "v0.15.0", "v0.15.1-rc.1", "v0.15.1"):
        assert tag in tags, tag
    assert "v1.0.0-rc.1" not in tags  # nothing made by mistakes
    # ...the deploy scripts really ran: staging, production, the hotfix, then the rollback.
    deploys = [line.split()[1:] for line in demo.deploys()]
    assert deploys[:5] == [
        ["staging", "v0.15.0-rc.1"],
        ["production", "v0.15.0"],
        ["staging", "v0.15.1-rc.1"],
        ["production", "v0.15.1"],
        ["production", "v0.15.0"],
    ]
    # Then the flag deploys: production's own deploy of what it runs, with the new flags
    # (set, enable, two ramp steps, disable).
    assert deploys[5:10] == [["production", "v0.15.0"]] * 5
    # The next candidate, whose gates failed: one re-run, one waived, then it was cancelled.
    assert deploys[10:] == [["staging", "v0.16.0-rc.1"]]
    assert demo.deployed_version("production") == "0.15.0"
    out = result.stdout
    assert "✅ Automated tests passed" in out.split("re-runs *Automated tests*")[1]
    assert "Infrastructure validation — waived: Known flake" in out
    assert "(asked by @alice, approved by @bob)" in out
    assert "Delivery over" in out and "Change failure rate" in out  # /release report
    # What the first candidate brings, in Slack and in its final tag.
    assert "3 changes by 3 people · 1 risk" in out and "reading time on every post" in out
    annotation = subprocess.run(
        ["git", "tag", "-l", "--format=%(contents)", "v0.15.0"],
        cwd=demo.remote,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Changes since v0.14.1: 3 changes by 3 people · 1 risk" in annotation
    assert "== 🚫 v0.16.0-rc.1 · cancelled ==" in out
    # Approvals recorded, and the refusal of self-approval.
    assert "nobody approves their own release" in out
    assert "Manual QA — approved by @bob" in out
    assert (
        "Approved-by: bob"
        in subprocess.run(
            ["git", "for-each-ref", "refs/tags/v0.15.0", "--format=%(contents)"],
            cwd=demo.remote,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert "stays locked" in out and "is unlocked" in out
    # The year-end freeze: the hotfix's final was refused, saying when production opens in the
    # team's zone; it went out on an EMERGENCY override bob and carol approved, marked in its
    # header and its tag; the rollback went through the freeze, which alice then ended.
    refused = out.split("alice> /release final\n")[1].split("alice> ")[0]
    assert "*production* is closed for changes: frozen until" in refused
    assert "Europe/Berlin: Year-end freeze (by @alice). It opens" in refused
    assert "`v0.15.1-rc.1` was not promoted" in refused
    assert "== 🚑 EMERGENCY HOTFIX v0.15.1 · release (from v0.15.1-rc.1) ==" in out
    hotfix_tag = subprocess.run(
        ["git", "tag", "-l", "--format=%(contents)", "v0.15.1"],
        cwd=demo.remote,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "EMERGENCY" in hotfix_tag and "Footer links broken for every visitor" in hotfix_tag
    rollback = out.split('alice> /release rollback production --reason "5xx spike')[1]
    assert "🧊 *production* frozen until" in rollback.split("alice> /release unlock")[0]
    assert "*production* is unfrozen: Freeze moved to next week" in out
    assert "--bump major" in out  # the answer to a bad bump says what is right
    # Health: the broken site became one incident that paged carol, who acknowledged it; the
    # rollback's deploy mended the site and the incident resolved; the window summary said so.
    assert out.count("Acknowledged: not yet") == 1, out  # one incident, redrawn when acked
    assert "On call: @carol" in out and "@carol acknowledged" in out
    assert "*resolved* after" in out and "`0.15.1`: *rolled back*" in out
    assert "*production* · health — ✅ healthy" in out
    assert "site ENV down|slow|failing|up" not in out  # no usage error from `site`
    # CI: the first candidate's gate waited for both contexts, then passed once the shell
    # (playing GitHub) reported them; the last candidate's failed on `ci fail`.
    first = out.split("alice> ci pass ci/build")[0]
    assert "CI checks: waiting for ci/build, ci/e2e" in first
    assert "(CI checks of v0.15.0-rc.1: waiting for ci/e2e)" in out
    assert "✅ CI checks passed in" in out.split("alice> ci pass ci/e2e")[1].split("alice>")[0]
    assert "❌ CI checks failed after" in out and "ci/e2e: failure" in out
    assert "Usage: ci pass CONTEXT [VERSION], with CONTEXT one of ci/build, ci/e2e" in out
    # Flags: committed to the repository (comments kept), approved, ramped, switched off,
    # and each change reported by the site's /flags.
    flags = subprocess.run(
        ["git", "show", "main:data/feature-flags.toml"],
        cwd=demo.remote,
        capture_output=True,
        text=True,
    ).stdout
    assert "# Search v2 waits for the infrastructure." in flags
    assert "enabled = false" in flags.split("[flags.new_infrastructure]")[1].split("[")[0]
    assert "rollout_percentage = 100" in flags
    assert "/flags reports `new_infrastructure` on, 10%" in out  # after bob's approval
    assert "Ramp finished: `new_infrastructure` is on, 100%" in out
    assert "/flags reports `new_infrastructure` off, 100%" in out  # the kill switch
    # The second service: a candidate of the api from its own remote, deployed by its own
    # script, announced in its own channel; its CI passed on `ci pass ci/build api`.
    assert "v1.5.0-rc.1" in demo.api.remote_tags()
    assert [line.split()[1:] for line in demo.api.deploys()] == [["staging", "v1.5.0-rc.1"]]
    assert demo.api.deployed_version("staging") == "1.5.0-rc.1"
    api = out.split("alice> /release rc api\n")[1].split("alice> ")[0]
    assert "Follow along in #api-releases" in api and "[#api-releases] releasebot:" in api
    assert "v0.16.0" not in api  # nothing of the website's
    ci = out.split("alice> ci pass ci/build api\n")[1].split("alice> ")[0]
    assert "the commit of api v1.5.0-rc.1" in ci and "✅ CI checks passed in" in ci
    # Typed in a channel of no service, /release status lists both, a line each.
    status = out.split("alice> channel #dev\n")[1]
    assert "You type in #dev now (no service's channel)" in status
    assert "2 services" in status
    assert "*website* (#releases): staging `v0.16.0-rc.1` · production `v0.15.0`" in status
    assert "*api* (#api-releases): staging `v1.5.0-rc.1`" in status


def test_a_pipe_on_stdin_works_like_a_script(tmp_path: Path):
    result = run_shell(
        ["--demo-dir", str(tmp_path / "d")],
        stdin="/release help\nnonsense\n/as Bob Smith\nclick 7\nquit\n/release rc\n",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "/release rc [--description TEXT]" in out
    assert "I don't know `nonsense`" in out
    assert "Usage: /as NAME" in out
    assert "There is no button [7]" in out
    # quit stops the script: the rc after it never ran
    from bot.devtools.demo import Demo

    assert "v0.15.0-rc.1" not in Demo(tmp_path / "d").remote_tags()


def test_ci_in_the_shell_reports_to_github_and_the_gate_passes_at_once(tmp_path: Path):
    lines = [
        "ci",
        "ci pass ci/build",
        "ci frob",
        "/release rc",
        "ci",
        "ci pass",
        "ci pass ci/e2e v9.9.9",
        "ci pass build checks",
        'ci pass "ci/build',
        "ci pass ci/build",
        "ci pass ci/e2e",
        "ci",
    ]
    result = run_shell(["--demo-dir", str(tmp_path / "d")], stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    answers = answers_to(result.stdout, lines)
    # Before any candidate there is no commit to report on: said, with what makes one.
    assert "There is no open release candidate" in answers[0] and "/release rc" in answers[0]
    assert "There is no open release candidate" in answers[1]
    assert "I don't know `ci frob`. Usage: ci [pass|fail|pending CONTEXT [VERSION]]" in answers[2]
    # The candidate's CI gate waits for both contexts, in the checklist and its thread.
    assert "⏳ CI checks — waiting for ci/build, ci/e2e" in answers[3]
    assert "CI checks: waiting for ci/build, ci/e2e" in answers[3]
    assert "CI has reported nothing on" in answers[4] and "(v0.15.0-rc.1)" in answers[4]
    assert "Usage: ci pass CONTEXT [VERSION], with CONTEXT one of ci/build, ci/e2e" in answers[5]
    assert "There is no release `v9.9.9`" in answers[6]
    assert 'goes in quotes: ci pass "build checks"' in answers[7]
    assert "a CONTEXT with spaces goes in quotes" in answers[8]
    # One context reported: the gate still waits, for the other one only.
    assert "(CI reports ci/build: success on" in answers[9]
    assert "(CI checks of v0.15.0-rc.1: waiting for ci/e2e)" in answers[9]
    assert "CI checks passed" not in answers[9]
    # Both: the gate passes in that command's answer (the shell looks at once; the
    # scheduler looks only every 10 s).
    assert "✅ CI checks passed in" in answers[10] and "CI passed: ci/build, ci/e2e" in answers[10]
    assert "✅ CI checks — passed in" in answers[10]
    assert "✅ ci/build: success" in answers[11] and "✅ ci/e2e: success" in answers[11]
    assert "not reported yet" not in answers[11]


def answers_to(out: str, lines: list[str]) -> list[str]:
    """What the shell printed after each of `lines` (as alice), in order."""
    rest = out
    found: list[str] = []
    for line in lines:
        _, _, rest = rest.partition(f"alice> {line}\n")
        found.append(rest)
    return [answer.split("alice> ")[0] for answer in found]


def test_a_script_without_bot_commands_ends_at_once(tmp_path: Path):
    # Stopping the worker used to wait out its upkeep timers (a cancel lost in the embedded
    # Redis client): 11 s for `printf 'help\n' | releasebot shell --demo`.
    started = time.monotonic()
    result = run_shell(["--demo-dir", str(tmp_path / "d")], stdin="help\n", timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "click N" in result.stdout and "Traceback" not in result.stderr
    assert elapsed < 6, f"the shell took {elapsed:.1f} s to leave"


def spawn_terminal(tmp_path: Path, demo: str) -> pexpect.spawn:
    """The shell on a real pseudo-terminal, as a person runs it."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(XDG_STATE_HOME=str(tmp_path / "state"), TERM="xterm", PYTHONFAULTHANDLER="1")
    env["PROMPT_TOOLKIT_NO_CPR"] = "1"  # nobody answers "where is the cursor?" here
    child = pexpect.spawn(
        sys.executable,
        ["-m", "bot.runtime.cli", "shell", "--demo-dir", str(tmp_path / demo)],
        env=env,
        cwd=str(ROOT),
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 160),
    )
    child.logfile_read = io.StringIO()  # everything it showed, for the assertions
    return child


def shown(child: pexpect.spawn) -> str:
    log = child.logfile_read
    assert isinstance(log, io.StringIO)
    return log.getvalue()


def leave(child: pexpect.spawn, key: str) -> float:
    """Press `key` at the prompt; how long the shell took to end."""
    started = time.monotonic()
    child.send(key)
    child.expect(pexpect.EOF, timeout=30)
    child.close()
    return time.monotonic() - started


@pytest.mark.timeout(120)
def test_the_terminal_prints_messages_as_they_arrive(tmp_path: Path):
    child = spawn_terminal(tmp_path, "d")
    try:
        child.expect("alice>")
        child.send("/as bob\r")
        child.expect("You are now bob")
        child.expect("bob>")  # the prompt follows /as
        child.send("site staging down\r")
        child.expect("answers 503 now")
        child.expect("bob>")
        # Nothing more is typed: the monitor's alert appears above the waiting prompt.
        child.expect(r"\[1\] Acknowledge", timeout=60)
        child.expect("bob>")  # and the prompt is drawn again under it
        child.send("cli\t")  # Tab completes the command, then the button's number
        child.expect("click")
        child.send(" \t")
        child.expect("1")
        child.send("\r")
        child.expect("acknowledged")
        child.expect("bob>")
        assert leave(child, "\x04") < 10  # Ctrl-D
    finally:
        if child.isalive():
            child.terminate(force=True)
    assert child.exitstatus == 0, shown(child)[-3000:]
    assert "Traceback" not in shown(child)
    assert "\033[1mCRITICAL" in shown(child)  # mrkdwn bold, shown bold


@pytest.mark.timeout(120)
def test_ctrl_c_at_the_prompt_leaves_at_once_and_history_stays(tmp_path: Path):
    child = spawn_terminal(tmp_path, "d1")
    try:
        child.expect("alice>")
        child.send("/release help\r")
        child.expect("--description TEXT")
        child.expect("alice>")
        assert leave(child, "\x03") < 10  # Ctrl-C
    finally:
        if child.isalive():
            child.terminate(force=True)
    assert child.exitstatus == 0 and "Traceback" not in shown(child), shown(child)[-3000:]
    # The next run remembers what was typed: Up brings it back.
    assert "/release help" in (tmp_path / "state" / "releasebot" / "shell_history").read_text()
    child = spawn_terminal(tmp_path, "d2")
    try:
        child.expect("alice>")
        child.send("\x1b[A")
        child.expect("/release help")
        assert leave(child, "\x03") < 10
    finally:
        if child.isalive():
            child.terminate(force=True)
    assert child.exitstatus == 0 and "Traceback" not in shown(child), shown(child)[-3000:]


def test_shell_on_a_real_redis_leaves_no_keys(tmp_path: Path):
    import redis as sync_redis

    client = sync_redis.Redis.from_url(REDIS_URL)
    before = set(client.scan_iter(match="releasebot-shell:*"))
    result = run_shell(
        ["--demo-dir", str(tmp_path / "d")], stdin="/release rc\n", redis_url=REDIS_URL
    )
    assert result.returncode == 0, result.stderr
    assert "Nothing is kept" not in result.stderr
    assert "v0.15.0-rc.1" in result.stdout
    assert set(client.scan_iter(match="releasebot-shell:*")) == before
    assert not list(client.scan_iter(match="saq:*releasebot-shell*"))


def test_bad_shell_arguments_are_named(tmp_path: Path):
    result = run_shell(["--demo", "--config", "x.toml"])
    assert result.returncode == 2 and "--config and --demo" in result.stderr
    result = run_shell(["--demo", "--script", str(tmp_path / "missing.txt")])
    assert result.returncode == 2 and "cannot read --script" in result.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    result = run_shell(["--demo-dir", str(tmp_path / "full")], stdin="")
    assert result.returncode == 2 and "not empty" in result.stderr


async def test_buttons_are_numbered_and_a_click_reaches_the_bot_signed(
    slack, prefix, redis, git_remote, tmp_path
):
    bot = Bot(
        Services.create(
            make_settings(prefix, slack, tmp_path / "s"), make_config(git_remote, tmp_path)
        ),
        "web",
    )
    await bot.start(port=0, host="127.0.0.1")
    out = io.StringIO()
    try:
        async with Shell(bot, slack, out=out) as shell, aiohttp.ClientSession() as http:
            async with http.post(
                f"{slack.base_url}chat.postMessage",
                json={
                    "channel": "#releases",
                    "text": "approve?",
                    "blocks": [
                        {"type": "section", "text": {"type": "mrkdwn", "text": "Ship <@U0ALICE>?"}},
                        {
                            "type": "actions",
                            "block_id": "b1",
                            "elements": [
                                {
                                    "type": "button",
                                    "action_id": "approve",
                                    "value": "v1",
                                    "text": {"type": "plain_text", "text": "Approve QA"},
                                    "confirm": {
                                        "title": {"type": "plain_text", "text": "Approve?"},
                                        "text": {"type": "mrkdwn", "text": "Really"},
                                        "confirm": {"type": "plain_text", "text": "Yes"},
                                        "deny": {"type": "plain_text", "text": "No"},
                                    },
                                },
                                {
                                    "type": "button",
                                    "action_id": "reject",
                                    "value": "v1",
                                    "text": {"type": "plain_text", "text": "Reject"},
                                },
                            ],
                        },
                    ],
                },
                headers={"Authorization": f"Bearer {slack.token}"},
            ) as resp:
                assert (await resp.json())["ok"]
            shell.flush()
            assert "[1] Approve QA" in out.getvalue() and "[2] Reject" in out.getvalue()
            assert "Ship @alice?" in out.getvalue()
            await shell.execute("click 1")
        # A button the bot does not know: the click arrived (signed, so not a 401), and the
        # bot answered it instead of dropping it.
        text = out.getvalue()
        assert "(Approve?: Really → Yes)" in text
        assert "I do not know this button, so nothing was done" in text
    finally:
        await bot.stop()


async def post(slack, http: aiohttp.ClientSession, method: str, body: dict[str, Any]) -> str:
    async with http.post(
        f"{slack.base_url}{method}",
        json=body,
        headers={"Authorization": f"Bearer {slack.token}"},
    ) as resp:
        data = await resp.json()
    assert data["ok"], data
    return str(data["ts"])


def gate_actions(gate: str) -> dict[str, Any]:
    value = json.dumps({"v": "1.0.0-rc.1", "g": gate})
    return {
        "type": "actions",
        "block_id": f"gate:{gate}",
        "elements": [
            {
                "type": "button",
                "action_id": "gate_approve",
                "value": value,
                "text": {"type": "plain_text", "text": "Approve Manual QA"},
            },
            {
                "type": "button",
                "action_id": "gate_reject",
                "value": value,
                "text": {"type": "plain_text", "text": "Reject"},
            },
        ],
    }


async def test_buttons_name_their_gate_and_go_with_it(slack, prefix, redis, git_remote, tmp_path):
    bot = Bot(
        Services.create(
            make_settings(prefix, slack, tmp_path / "s"), make_config(git_remote, tmp_path)
        ),
        "web",
    )
    await bot.start(port=0, host="127.0.0.1")
    out = io.StringIO()
    try:
        async with Shell(bot, slack, out=out) as shell, aiohttp.ClientSession() as http:
            line = {"type": "section", "text": {"type": "mrkdwn", "text": "⬜ Manual QA"}}
            ts = await post(
                slack,
                http,
                "chat.postMessage",
                {"channel": "#releases", "text": "rc", "blocks": [line, gate_actions("qa")]},
            )
            reply = await post(
                slack,
                http,
                "chat.postMessage",
                {"channel": "#releases", "thread_ts": ts, "text": "⏳ Deploying…"},
            )
            shell.flush()
            # "Reject" alone, in a list of numbered buttons, would not say what it rejects.
            assert "[2] Reject Manual QA" in out.getvalue()
            assert "[1] Approve Manual QA\n" in out.getvalue()  # no name twice
            event = CompleteEvent(completion_requested=True)
            offered = ShellCompleter(shell).get_completions(Document("click "), event)
            assert [(c.text, c.display_meta_text) for c in offered] == [
                ("1", "Approve Manual QA"),
                ("2", "Reject Manual QA"),
            ]
            # The gate is decided: the bot's update takes its buttons away, and an edited
            # thread reply says it was edited, as an edited channel message does.
            done = {"type": "section", "text": {"type": "mrkdwn", "text": "✅ Manual QA"}}
            await post(
                slack,
                http,
                "chat.update",
                {"channel": "#releases", "ts": ts, "text": "rc", "blocks": [done]},
            )
            await post(
                slack,
                http,
                "chat.update",
                {"channel": "#releases", "ts": reply, "text": "✅ Deployed"},
            )
            out.truncate(0)
            out.seek(0)
            shell.flush()
            text = out.getvalue()
            assert "releasebot (updated):" in text and "[1]" not in text
            assert "      (updated) ✅ Deployed" in text
            await shell.execute("click 2")
            assert "Button [2] (Reject Manual QA) is gone" in out.getvalue()
            offered = ShellCompleter(shell).get_completions(Document("click "), event)
            assert list(offered) == []
    finally:
        await bot.stop()


CI_GATE = """
[github]
repository = "acme/site"

[[gates]]
id = "ci"
name = "CI checks"
stage = "staging"
check = "github"
contexts = ["ci/build", "ci/e2e"]
allow_failures = ["lint"]
"""


async def test_ci_completes_its_verbs_and_contexts_and_needs_github(
    slack, prefix, redis, git_remote, tmp_path
):
    config = make_config(git_remote, tmp_path, extra=CI_GATE)
    bot = Bot(Services.create(make_settings(prefix, slack, tmp_path / "s"), config), "web")
    await bot.start(port=0, host="127.0.0.1")
    out = io.StringIO()
    try:
        async with Shell(bot, slack, out=out) as shell:
            event = CompleteEvent(completion_requested=True)

            def offered(text: str) -> list[str]:
                completer = ShellCompleter(shell)
                return [c.text for c in completer.get_completions(Document(text), event)]

            assert offered("c") == ["click", "cancel", "channel", "ci"]
            assert offered("channel ") == ["#releases", "#dev"]
            assert offered("ci ") == ["pass", "fail", "pending"]
            assert offered("ci pa") == ["pass"]
            assert offered("ci pass ") == ["ci/build", "ci/e2e", "lint"]
            assert offered("ci fail ci/e") == ["ci/e2e"]
            assert offered("ci frob ") == []
            # Without a GitHub stand-in (a Shell made without one), `ci` says what it needs.
            await shell.execute("ci pass ci/build")
        assert '[github] repository = "owner/name"' in out.getvalue()
    finally:
        await bot.stop()


def test_mrkdwn_is_styled_for_a_terminal():
    names = {"U0BOB": "bob"}
    text = "*v1.2* by <@U0BOB> in `staging` <https://x.test/a|the log> :white_check_mark: *"
    assert plain(text, names, styled=True) == (
        "\033[1mv1.2\033[22m by @bob in \033[36mstaging\033[39m "
        "\033[4mthe log\033[24m \033[2m(https://x.test/a)\033[22m ✅ *"
    )
    # Inside code, and inside words, the markers are literal.
    assert plain("`a*b*c` snake_case_name", styled=True) == "\033[36ma*b*c\033[39m snake_case_name"
    # A transcript keeps the mrkdwn; only emoji names, which no terminal shows, are replaced.
    assert plain(text, names) == "*v1.2* by @bob in `staging` the log ✅ *"


def test_block_kit_as_text():
    names = {"U0ALICE": "alice"}
    assert (
        plain(
            "<@U0ALICE> at <!date^1700000000^{time}|12:00 UTC> in <#C1|releases> "
            "&lt;b&gt; <https://x.test|link>",
            names,
        )
        == "@alice at 12:00 UTC in #releases <b> link"
    )
    lines = render(
        [
            {"type": "header", "text": {"type": "plain_text", "text": "Hi"}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": "*A*\n1"},
                    {"type": "mrkdwn", "text": "*B*\n2"},
                ],
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "small"}]},
        ]
    )
    assert lines == ["== Hi ==", "A: 1 · B: 2", "(small)"]
    assert render([], fallback="just text") == ["just text"]


def test_the_demo_is_a_real_repository(tmp_path: Path):
    demo = create_demo(tmp_path / "d", 1)
    tags = demo.remote_tags()
    for tag in ("v0.14.1", "v0.13.3-final", "bd-12", "v0.8.1-bug-fixes"):
        assert tag in tags
    from bot.domain.fleet import load_services

    config, api = load_services(demo.config_path)
    assert (config.service, config.slack.channel) == ("website", "#releases")
    assert [e.name for e in config.environments] == ["staging", "production"]
    # Its CI gate waits for the shell's GitHub stand-in (`ci pass CONTEXT`).
    assert config.github.repository == "acme/website"
    ci = next(g for g in config.gates if g.check == "github")
    assert (ci.stage, ci.contexts) == ("staging", ("ci/build", "ci/e2e"))
    # The second service: its own repository, channel and CI; the shared defaults are its too.
    assert (api.service, api.slack.channel) == ("api", "#api-releases")
    assert api.repository.url == str(demo.api.remote) and api.repository.tag_prefix == "v"
    assert "v1.4.0" in demo.api.remote_tags()
    assert api.github.repository == "acme/api"
    assert api.monitoring.oncall == config.monitoring.oncall == ("U0CAROL",)
    assert [g.id for g in api.gates] == ["contract", "ci", "qa", "smoke"]


async def test_embedded_redis_serves_the_worker_queue_and_lua():
    from bot.devtools.embedded_redis import client

    embedded = EmbeddedRedis()
    url = embedded.start()
    one, two = client(url), client(url)
    try:
        assert await one.ping()
        script = one.register_script("return redis.call('INCR', KEYS[1])")
        await one.script_flush()  # the NOSCRIPT fallback works
        assert await script(keys=["n"]) == 1
        assert await script(keys=["n"]) == 2
        assert await two.get("n") == b"2"  # clients of one embedded Redis share its data
    finally:
        await one.aclose()
        await two.aclose()
        embedded.stop()
    with pytest.raises(ValueError, match="no embedded Redis"):
        client(url)


def port_outside_the_ephemeral_range(socket: Any) -> int:
    """A free port the embedded Redis cannot take: it binds port 0, which the kernel serves
    from the ephemeral range, so a port picked the same way could be handed out twice."""
    import random

    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = random.randrange(10000, max(10001, low))
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError("no free port below the ephemeral range")


async def test_serve_without_redis_url_starts_the_embedded_redis(tmp_path: Path, git_remote):
    import asyncio
    import socket

    path = write_config(tmp_path, worker_config_text(git_remote, tmp_path))
    port = port_outside_the_ephemeral_range(socket)
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        SLACK_BOT_TOKEN="xoxb-x",
        SLACK_SIGNING_SECRET="s",
        SLACK_API_URL="http://127.0.0.1:9/api/",
        RELEASEBOT_STATE_DIR=str(tmp_path),
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.runtime.cli",
            "serve",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--config",
            str(path),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        assert resp.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("serve did not come up")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "Nothing is kept across" in err


async def test_the_demo_site_serves_health_and_the_deployed_version(tmp_path: Path):
    from bot.devtools.demo import DemoSite, free_port

    port = free_port()
    demo = create_demo(tmp_path / "d", port)
    site = DemoSite(demo, port)
    await site.start()
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{port}/staging"
            # Before the bot, the demo's environments run v0.14.1.
            async with http.get(f"{base}/health") as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "UP"
            async with http.get(f"{base}/build-info") as resp:
                assert (await resp.json())["version"] == "0.14.1"
            site.fault("staging", "down")  # what `site staging down` does in the shell
            async with http.get(f"{base}/health") as resp:
                assert resp.status == 503 and (await resp.json())["status"] == "DOWN"
            site.fault("staging", "up")
            env_dir = demo.root / "environments" / "staging"
            (env_dir / "index.html").write_text("<h1>hi</h1>")
            (env_dir / "VERSION").write_text("1.2.3\n")
            async with http.get(f"{base}/health") as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "UP"
            async with http.get(f"{base}/build-info") as resp:
                assert (await resp.json())["version"] == "1.2.3"
            async with http.get(f"{base}/") as resp:
                assert "<h1>hi</h1>" in await resp.text()
            # The api's, beside it: what its own environments run.
            api = f"http://127.0.0.1:{port}/api/production"
            async with http.get(f"{api}/build-info") as resp:
                assert (await resp.json())["version"] == "1.4.0"
            site.fault("production", "down", "api")
            async with http.get(f"{api}/health") as resp:
                assert resp.status == 503
            async with http.get(f"{base}/health") as resp:
                assert resp.status == 200  # the website's is another site
    finally:
        await site.stop()
