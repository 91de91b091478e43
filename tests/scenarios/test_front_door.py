"""Untrusted input before the signature is checked, the log it leaves, and Redis faults at the
front: through the real aiohttp server, real Redis (a server of the test's own where it is
stopped) and real processes."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest

from bot.runtime.logs import FORMAT, OneLineFormatter, loggable
from tests.helpers.config import make_config, worker_config_text, write_config
from tests.helpers.processes import worker_command
from tests.helpers.redis_server import RedisServer
from tests.helpers.signing import sign, signature
from tests.helpers.slack_requests import interaction_body

FORM = "application/x-www-form-urlencoded"


def unsigned_requests(valid_body: str) -> list[tuple[str, bytes, dict[str, str]]]:
    """(what, body, headers) of requests that are not Slack's: each must get 401 unparsed."""
    now = str(int(time.time()))
    body = valid_body.encode()
    good = signature(body, now)
    forged_line = b"text=x\nCRITICAL bot.services.decide: gate qa approved by UAPPR1\n"
    big = b"payload=" + b"A" * 900_000 + b"\nCRITICAL approved by UAPPR1"
    cases = [
        ("no headers", body, {}),
        ("no timestamp", body, {"X-Slack-Signature": good}),
        ("no signature", body, {"X-Slack-Request-Timestamp": now}),
        ("blank timestamp", body, {"X-Slack-Request-Timestamp": "", "X-Slack-Signature": good}),
        (
            "non-integer timestamp",
            body,
            {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": good},
        ),
        (
            "float timestamp",
            body,
            {
                "X-Slack-Request-Timestamp": f"{now}.5",
                "X-Slack-Signature": signature(body, f"{now}.5"),
            },
        ),
        (
            "negative timestamp",
            body,
            {"X-Slack-Request-Timestamp": "-1", "X-Slack-Signature": signature(body, "-1")},
        ),
        (
            "huge timestamp",
            body,
            {"X-Slack-Request-Timestamp": "9" * 40, "X-Slack-Signature": signature(body, "9" * 40)},
        ),
        (
            "stale timestamp",
            body,
            {
                "X-Slack-Request-Timestamp": str(int(now) - 310),
                "X-Slack-Signature": signature(body, str(int(now) - 310)),
            },
        ),
        (
            "future timestamp",
            body,
            {
                "X-Slack-Request-Timestamp": str(int(now) + 310),
                "X-Slack-Signature": signature(body, str(int(now) + 310)),
            },
        ),
        (
            "garbage signature",
            body,
            {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "garbage"},
        ),
        (
            "other version",
            body,
            {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v1=" + good[3:]},
        ),
        (
            "uppercase hex",
            body,
            {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=" + good[3:].upper()},
        ),
        (
            "wrong secret",
            body,
            {
                "X-Slack-Request-Timestamp": now,
                "X-Slack-Signature": signature(body, now, "not-the-secret"),
            },
        ),
        (
            "signature of another body",
            body + b"&extra=1",
            {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": good},
        ),
        (
            "signature of another time",
            body,
            {"X-Slack-Request-Timestamp": str(int(now) - 1), "X-Slack-Signature": good},
        ),
        (
            "non-UTF-8 body",
            b"text=\xff\xfe\xfa",
            {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": good},
        ),
        (
            "JSON instead of a form",
            json.dumps({"command": "/release"}).encode(),
            {
                "X-Slack-Request-Timestamp": now,
                "X-Slack-Signature": good,
                "Content-Type": "application/json",
            },
        ),
        (
            "payload= not JSON",
            b"payload=%7Bnot-json",
            {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": good},
        ),
        ("empty body", b"", {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": good}),
        (
            "raw newlines in the body",
            forged_line,
            {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": good},
        ),
        (
            "900 KB body with a forged log line",
            big,
            {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": good},
        ),
        (
            "control characters in the body",
            b"text=\x1b[31mred\x00",
            {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": good},
        ),
        (
            "non-ASCII timestamp",
            body,
            {"X-Slack-Request-Timestamp": "\u0661\u0667" + "\u0660" * 8, "X-Slack-Signature": good},
        ),
        (
            "truncated signature",
            body,
            {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": good[:-1]},
        ),
        (
            "two signatures",
            body,
            {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": f"{good},{good}"},
        ),
    ]
    return [(what, data, {"Content-Type": FORM, **headers}) for what, data, headers in cases]


async def test_unsigned_requests_get_401_and_are_never_parsed(
    start_bot, git_remote, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    bot = await start_bot(make_config(git_remote, tmp_path))
    cases = unsigned_requests(bot.command_body("rc --description hello"))
    assert len(cases) >= 24
    async with aiohttp.ClientSession() as http:
        for what, body, headers in cases:
            async with http.post(f"{bot.url}/slack/events", data=body, headers=headers) as resp:
                text = await resp.text()
                assert resp.status in (401, 413), (what, resp.status, text)
                assert "Traceback" not in text, what
    # Nothing was parsed or handled: no command reached the bot, nothing was started.
    assert await bot.services.store.audit_entries() == []
    assert bot.slack.calls_to("chat.postMessage") == []
    # Every rejection is one short line; none is a traceback, none carries the body.
    formatter = OneLineFormatter(FORMAT)
    lines = [formatter.format(r) for r in caplog.records]
    rejections = [line for line in lines if "rejected POST /slack/events" in line]
    assert len(rejections) == len(cases)
    for line in lines:
        assert "\n" not in line and len(line) < 2500, line[:300]
        assert "Traceback" not in line and "UAPPR1" not in line
    assert not any(r.exc_info for r in caplog.records)


async def test_signed_but_malformed_requests_get_400_without_a_traceback(
    start_bot, git_remote, tmp_path, caplog
):
    bot = await start_bot(make_config(git_remote, tmp_path))
    bodies = [
        (b"payload=%7Bnot-json", FORM),
        (b"payload=%5B1%2C2%5D", FORM),
        (b"text=\xff\xfe", FORM),
        (b'{"type": ', "application/json"),
        (b"[1, 2]", "application/json"),
        (b"<xml/>", "text/xml"),
    ]
    async with aiohttp.ClientSession() as http:
        for body, content_type in bodies:
            ts = str(int(time.time()))
            headers = {
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": signature(body, ts),
                "Content-Type": content_type,
            }
            async with http.post(f"{bot.url}/slack/events", data=body, headers=headers) as resp:
                text = await resp.text()
                assert resp.status == 400, (body, resp.status, text)
                assert "Traceback" not in text
    assert not any(r.exc_info for r in caplog.records)
    # A well-formed signed request still works.
    assert "/release rc" in bot.slack.text_of(await bot.command("help"))
    # Payloads of shapes Slack never sends, which Bolt would index into and fail on.
    for payload in (
        {"type": "block_actions", "user": {"id": "U0BOB"}, "actions": []},
        {"type": "block_actions", "actions": ["x"]},
        {"type": "view_submission", "view": "x"},
    ):
        body = interaction_body(payload)
        status, _ = await bot.post(body, sign(body))
        assert status == 400, payload
    assert not any(r.exc_info for r in caplog.records)


def test_log_lines_are_one_bounded_line_with_control_characters_escaped():
    record = logging.LogRecord(
        "bot",
        logging.WARNING,
        __file__,
        1,
        "/release %s failed",
        ("x\nCRITICAL bot: approved by UAPPR1\r\x1b[2J\u2028" + "A" * 5000,),
        None,
    )
    line = OneLineFormatter(FORMAT).format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u2028" not in line
    assert "\\nCRITICAL bot: approved by UAPPR1\\r\\x1b[2J\\u2028" in line
    assert len(line) < 2200 and line.endswith("characters)")
    assert loggable("café ✅ 日本語") == "café ✅ 日本語"  # readable text stays readable


def test_serve_refuses_blank_secrets(tmp_path: Path, git_remote, subprocess_env):
    path = write_config(tmp_path, worker_config_text(git_remote, tmp_path))
    for name in ("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN"):
        env = {**subprocess_env, name: "   "}
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bot.runtime.cli",
                "serve",
                "--port",
                "0",
                "--config",
                str(path),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2, out.stderr
        assert f"{name} is blank" in out.stderr and "Traceback" not in out.stderr


async def test_unicode_digits_get_an_answer_not_a_500(start_bot, git_remote, tmp_path):
    bot = await start_bot(make_config(git_remote, tmp_path))
    for text in ("set new_search ²", "set new_search ①", "ramp new_search 10,²0 --every 1h"):
        body = bot.command_body(text, command="/flag")
        status, data = await bot.post(body, sign(body))
        assert status == 200, (text, status, data)
        assert "is not a percentage" in bot.slack.text_of(data)


async def test_the_first_command_after_a_redis_restart_works(start_bot, git_remote, tmp_path):
    server = RedisServer(tmp_path / "redis", persist=True)
    server.start()
    try:
        bot = await start_bot(make_config(git_remote, tmp_path), redis_url=server.url)
        assert "nothing deployed yet" in bot.slack.text_of(await bot.command("status"))
        server.stop()
        server.start()
        # The answer must come from the restarted Redis, not from the status snapshot.
        bot.services.status.invalidate()
        # The pooled connections died with the old server; the command still gets its answer.
        text = bot.slack.text_of(await bot.command("status"))
        assert "nothing deployed yet" in text and "cannot reach" not in text
    finally:
        server.stop()


async def test_a_redis_outage_is_two_log_lines_not_a_flood(
    git_remote, tmp_path: Path, subprocess_env
):
    """The repro: a worker logged over 1,000 tracebacks (3 MB) in 2 s of outage."""
    server = RedisServer(tmp_path / "redis", persist=True)
    server.start()
    path = write_config(tmp_path, worker_config_text(git_remote, tmp_path))
    log_file = tmp_path / "worker.log"
    with open(log_file, "wb") as stderr:
        worker = subprocess.Popen(
            worker_command(path),
            env={**subprocess_env, "REDIS_URL": server.url},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 30
        # saq's own "Worker starting" is library chatter, not logged at INFO any more.
        while "(role worker)" not in log_file.read_text(errors="replace"):
            assert worker.poll() is None and time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.1)
        time.sleep(1)
        before = len(log_file.read_bytes())
        cpu_before = sum(
            float(x)
            for x in Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]
        )
        server.stop()
        time.sleep(2)
        cpu = (
            sum(
                float(x)
                for x in Path(f"/proc/{worker.pid}/stat")
                .read_text()
                .rsplit(")", 1)[1]
                .split()[11:13]
            )
            - cpu_before
        )
        server.start()
        deadline = time.monotonic() + 15
        while "reachable again" not in log_file.read_text(errors="replace"):
            assert time.monotonic() < deadline, log_file.read_text()[-3000:]
            time.sleep(0.1)
        outage = log_file.read_bytes()[before:].decode(errors="replace")
        lines = outage.splitlines()
        assert len(lines) <= 6, outage
        assert len(outage) < 2000
        assert "Traceback" not in outage
        assert sum("Redis unreachable" in line for line in lines) == 1
        assert "reachable again after" in outage
        # No busy loop: well under half a core over the two seconds (clock ticks of 10 ms).
        assert cpu < 100, cpu
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        server.stop()


@pytest.mark.parametrize("secret", ["   ", ""])
def test_settings_refuse_blank_or_missing_secrets(secret: str):
    from bot.runtime.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="SLACK_SIGNING_SECRET"):
        Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": secret})


def test_form_bodies_are_what_slack_sends():
    body = urlencode(
        {"payload": json.dumps({"type": "block_actions", "actions": [{"action_id": "x"}]})}
    ).encode()
    from bot.runtime.web import check_form

    assert json.loads(check_form(body, FORM)) == {
        "type": "block_actions",
        "actions": [{"action_id": "x"}],
    }
    command = urlencode({"command": "/release", "text": "payload=1"}).encode()
    assert json.loads(check_form(command, FORM)) == {"command": "/release", "text": "payload=1"}


async def test_a_command_that_mentions_payload_reaches_the_bot(start_bot, git_remote, tmp_path):
    """Bolt takes any form that contains "payload" for an interaction: this was dropped."""
    bot = await start_bot(make_config(git_remote, tmp_path))
    ack = bot.slack.text_of(await bot.command('rc --description "payload sizes are down"'))
    assert "Creating a release candidate" in ack
    await bot.slack.wait_for(lambda: bot.slack.calls_to("chat.postMessage"), timeout=20)
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release.description == "payload sizes are down"


async def test_compressed_and_broken_bodies_are_refused_without_a_traceback(
    start_bot, git_remote, tmp_path, caplog
):
    import gzip

    bot = await start_bot(make_config(git_remote, tmp_path))
    body = bot.command_body("status").encode()
    ts = str(int(time.time()))
    headers = {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature(body, ts),
        "Content-Type": FORM,
    }
    async with aiohttp.ClientSession() as http:
        for data, extra in (
            (gzip.compress(body), {"Content-Encoding": "gzip"}),
            (b"not gzip at all", {"Content-Encoding": "gzip"}),
        ):
            async with http.post(
                f"{bot.url}/slack/events", data=data, headers={**headers, **extra}
            ) as resp:
                assert resp.status == 401, extra
    # HTTP that aiohttp's own parser refuses (a control character in a header): one line.
    reader, writer = await asyncio.open_connection("127.0.0.1", bot.bot.port)
    writer.write(
        b"POST /slack/events HTTP/1.1\r\nHost: x\r\nX-Evil: a\x01b\r\nContent-Length: 0\r\n\r\n"
    )
    await writer.drain()
    assert b" 400 " in (await reader.read(100)).split(b"\r\n")[0]
    writer.close()
    assert not any(r.exc_info for r in caplog.records)
    assert any("refused a malformed HTTP request" in r.getMessage() for r in caplog.records)
