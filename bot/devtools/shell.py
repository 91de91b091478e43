"""`releasebot shell`: the real bot in a terminal, with a local stand-in for Slack.

The same handlers, worker and scheduler run as in production; the person at the terminal
types slash commands, which reach the bot as signed HTTP requests, and the bot's messages (as
posted to the stand-in) are printed as text, buttons numbered so `click N` presses one. When
the config's CI gates read GitHub, a local GitHub stand-in plays the team's CI too: `ci pass
CONTEXT` reports a commit status to it. With several services (`[services.NAME]`), the bot is
a fleet and the shell types in a channel, as a person in Slack does: the first service's at
first, another one's (or one of no service, where `/release status` lists them all) after
`channel #NAME`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from redis.exceptions import RedisError

from bot.adapters.github import GitHubConfig
from bot.adapters.redis.connect import RedisTarget, connect
from bot.devtools import payloads
from bot.devtools.demo import DemoSite
from bot.devtools.embedded_redis import WARNING, EmbeddedRedis
from bot.devtools.github_stand_in import GitHubStandIn
from bot.devtools.slack_stand_in import Message, SlackStandIn
from bot.domain import approvals
from bot.domain.ci_checks import ALL, latest
from bot.domain.config import Config
from bot.domain.releases import Release
from bot.runtime.container import Services
from bot.runtime.fleet import Fleet
from bot.runtime.settings import Settings
from bot.runtime.web import Bot
from bot.services import ci_gates
from bot.services.ports import CiUnavailable

# A channel of no service: with several, a command typed there names its service, and
# `/release status` there lists them all.
OUTSIDE = "#dev"
TEAM_ID = "T0SHELL"
WORKSPACE = payloads.Workspace(
    team_id=TEAM_ID, team_domain="shell", app_id="A0SHELL", token="shell"
)
HELP = """\
Type what you would type in Slack, plus a few shell commands:
  /release help            the bot's own help (also /release rc, /release status, ...)
  click N                  press button [N] of a message
  submit TEXT              fill in and send the form a button opened (e.g. a reason)
  cancel                   close that form
  /as NAME                 act as another person (e.g. /as bob)
  channel [#NAME]          type in another channel (e.g. #api-releases, or #dev, where no
                           service posts); alone: where you type and each service's channel
  wait [SECONDS]           wait until the bot is idle (or for SECONDS)
  site [SERVICE] ENV down|slow|failing|up  (demo) break the demo site of ENV (failing: its
                           gates fail), or mend it; the website's, or the api's: site api ...
  ci [SERVICE]             what the team's CI reported on the newest candidate's commit
  ci pass|fail|pending CONTEXT [VERSION] [SERVICE]
                           play the team's CI: report CONTEXT (e.g. ci/build) on the newest
                           candidate's commit (or VERSION's); CI gates look again at once
  With several services, `site` and `ci` act on the service of the channel you type in (the
  first service outside them), or on the SERVICE named; so do /release commands, which may
  name it after the sub-command: /release rc api.
  help                     this help
  quit                     leave (Ctrl-D works too)"""

CI_USAGE = "ci [pass|fail|pending CONTEXT [VERSION]]"
# What `ci pass|fail|pending` reports: a commit status in GitHub's words.
CI_STATES = {"pass": "success", "fail": "failure", "pending": "pending"}
CI_ICONS = {"success": "✅", "failure": "❌", "pending": "⏳"}
_VERSION_LIKE = re.compile(r"[^\s/]*\d+\.\d+\.\d+\S*")  # v0.15.0-rc.1, 0.15.0

_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")
_CHANNEL = re.compile(r"<#([A-Z0-9]+)(?:\|([^>]*))?>")
_DATE = re.compile(r"<!date\^[^|>]*\|([^>]*)>")
_LINK = re.compile(r"<([^|>]+)\|([^>]+)>")
_SPECIAL = re.compile(r"<!(here|channel|everyone)>")
_EMOJI_NAME = re.compile(r":([a-z0-9_+-]+):")
# Slack's emphasis: a marker next to a word on the inside and to no word on the outside.
_BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
_STRIKE = re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])")
_CODE = re.compile(r"`([^`\n]+)`")
# The emoji names the bot and its people write, as the terminal can show them (Slack
# renders them; a terminal would print `:warning:` as it is).
EMOJI = {
    "warning": "⚠️",
    "white_check_mark": "✅",
    "heavy_check_mark": "✔️",
    "x": "❌",
    "no_entry": "⛔",
    "no_entry_sign": "🚫",
    "rocket": "🚀",
    "hourglass_flowing_sand": "⏳",
    "rotating_light": "🚨",
    "rewind": "⏪",
    "lock": "🔒",
    "unlock": "🔓",
    "white_large_square": "⬜",
    "large_green_circle": "🟢",
    "red_circle": "🔴",
    "bust_in_silhouette": "👤",
    "tada": "🎉",
    "fire": "🔥",
    "eyes": "👀",
}
# ANSI styles for a terminal (the shell's transcripts of scripts stay plain text).
_ON = {"bold": "\033[1m", "italic": "\033[3m", "strike": "\033[9m", "code": "\033[36m"}
_OFF = {"bold": "\033[22m", "italic": "\033[23m", "strike": "\033[29m", "code": "\033[39m"}
_UNDERLINE, _NO_UNDERLINE, _DIM, _NO_DIM = "\033[4m", "\033[24m", "\033[2m", "\033[22m"


def user_id_for(name: str) -> str:
    return "U0" + re.sub(r"[^A-Z0-9]", "", name.upper())[:9]


@dataclass
class Button:
    number: int
    channel: str
    ts: str
    block_id: str
    action: dict[str, Any]
    subject: str = ""  # what it acts on, when its own text does not say (Reject → Manual QA)
    gone: bool = False  # its message no longer has it (a decided gate, a release moved on)

    @property
    def label(self) -> str:
        text = str(self.action.get("text", {}).get("text", "button"))
        return f"{text} {self.subject}" if self.subject and self.subject not in text else text


@dataclass
class Shell:
    bot: Bot
    slack: SlackStandIn
    out: TextIO = sys.stdout
    live: bool = False  # print changes as they happen (interactive) or once settled (script)
    styled: bool = False  # mrkdwn as ANSI styles (a terminal) or as it is (a transcript)
    echo: bool = True  # repeat each line after the prompt (a terminal's prompt shows it)
    user: str = "alice"
    channel: str = ""  # where commands are typed ("#releases"); the first service's at first
    site: DemoSite | None = None  # the demo's site, which `site ENV down` breaks
    github: GitHubStandIn | None = None  # the team's CI, which `ci pass CONTEXT` reports to
    _http: aiohttp.ClientSession | None = None
    _shown: dict[str, int] = field(default_factory=dict)  # ts -> updates shown
    _calls_seen: int = 0
    _buttons: dict[tuple[str, str, str, str], Button] = field(default_factory=dict)
    _last_thread: str | None = None  # consecutive replies of one thread share a heading
    _view: dict[str, Any] | None = None  # the form (modal) open now, if any

    # --- plumbing -----------------------------------------------------------------------------

    @property
    def user_id(self) -> str:
        return user_id_for(self.user)

    @property
    def person(self) -> payloads.Person:
        return payloads.Person(self.user_id, self.user)

    def _meet(self, name: str) -> None:
        self.slack.users[user_id_for(name)] = {"name": name, "real_name": name.title()}

    @property
    def fleet(self) -> Fleet:
        return self.bot.fleet

    @property
    def services(self) -> Services:
        """The service the shell acts on: the one of the channel typed in, else the first."""
        return self._service_in(self.slack.channel_id(self.channel)) or self.fleet.first

    def _service_in(self, channel_id: str) -> Services | None:
        return self.fleet.for_channel(channel_id, self.slack.channel_name(channel_id))

    def _service_named(self, word: str) -> Services | None:
        """The service `word` names exactly (the shell's own commands take no prefixes: a
        word may be a context or an environment)."""
        return next((s for s in self.fleet.services if s.config.service == word), None)

    async def __aenter__(self) -> Shell:
        # Slack gives up after 3 s; the shell waits longer (a busy laptop), but never forever.
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        self._meet(self.user)
        self.channel = self.channel or self.fleet.first.config.slack.channel
        # On-call people named like the shell's users (U0CAROL is carol) show by name.
        for services in self.fleet.services:
            for who in services.config.monitoring.oncall:
                if who.startswith("U0"):
                    self._meet(who[2:].lower())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    async def _post(self, body: str) -> tuple[int, dict[str, Any]]:
        assert self._http is not None
        url = f"http://127.0.0.1:{self.bot.port}/slack/events"
        headers = payloads.signed_headers(body, self.fleet.first.settings.signing_secret)
        try:
            async with self._http.post(url, data=body, headers=headers) as resp:
                text = await resp.text()
                status = resp.status
        except TimeoutError:
            return 504, {}  # what Slack shows as "operation_timeout"
        try:
            data = json.loads(text) if text else {}
        except json.JSONDecodeError:
            data = {"text": text}
        return status, data

    # --- commands -----------------------------------------------------------------------------

    async def run_lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            if not await self.execute(line):
                return

    async def execute(self, line: str) -> bool:
        """Run one line; False when the person wants to leave."""
        line = line.strip()
        if not line:
            return True
        if line.startswith("#"):
            self.say(line)
            return True
        if self.echo:
            self.say(f"{self.user}> {line}")
        self._last_thread = None
        word, _, rest = line.partition(" ")
        if word in ("quit", "exit"):
            return False
        if word == "help":
            self.say(HELP)
        elif word == "/as":
            self._switch_user(rest.strip())
        elif word == "channel":
            self._switch_channel(rest.strip())
        elif word == "click":
            await self._click(rest.strip())
        elif word == "submit":
            await self._submit(rest.strip())
        elif word == "cancel":
            self._view = None
            self.say("  (form closed)")
        elif word == "wait":
            await self._wait(rest.strip())
        elif word == "site":
            self._site(rest.split())
        elif word == "ci":
            await self._ci(rest)
        elif word.startswith("/") and word != "/":
            await self._slash_command(word, rest)
        else:
            self.say(f"  I don't know `{word}`. Type `help` for what the shell understands.")
        return True

    def _switch_user(self, name: str) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9._-]{0,20}", name):
            self.say("  Usage: /as NAME, with a lowercase name like `bob`.")
            return
        self.user = name
        self._meet(name)
        self.say(f"  You are now {name} ({self.user_id}).")

    def _switch_channel(self, name: str) -> None:
        """Type in another channel: a service's (its commands and clicks are that service's)
        or one of none (#dev), where a fleet's `/release status` lists every service."""
        where = {s.config.slack.channel: s.config.service for s in self.fleet.services}
        if not name:
            self.say(f"  You type in {self.channel}.")
        elif not re.fullmatch(r"#?[a-z0-9][a-z0-9._-]{0,79}", name):
            self.say("  Usage: channel #NAME, with a lowercase channel name like #api-releases.")
            return
        else:
            self.channel = "#" + name.lstrip("#")
            service = self._service_in(self.slack.channel_id(self.channel))
            whose = f"{service.config.service}'s channel" if service else "no service's channel"
            self.say(f"  You type in {self.channel} now ({whose}).")
        self.say(
            "  (channels: "
            + ", ".join(f"{channel} ({service})" for channel, service in where.items())
            + f"; {OUTSIDE} is no service's)"
        )

    def _site(self, args: list[str]) -> None:
        if self.site is None:
            self.say("  `site` works in the demo only (`releasebot shell --demo`).")
            return
        named = self._service_named(args[0]) if args else None
        services = named or self.services
        if named is not None:
            args = args[1:]
        names = [e.name for e in services.config.environments]
        if (
            len(args) != 2
            or args[0] not in names
            or args[1] not in self.site.FAULTS
            or services.config.service not in self.site.SERVICES
        ):
            self.say(
                f"  Usage: site [SERVICE] ENV down|slow|failing|up, with ENV one of "
                f"{', '.join(names)}."
            )
            return
        self.site.fault(args[0], args[1], services.config.service)
        what = {
            "down": "answers 503 now",
            "slow": "takes 1.5 s per answer now",
            "failing": "fails its gates now",
            "up": "is healthy again",
        }[args[1]]
        whose = "" if services is self.fleet.first else f"{services.config.service} "
        self.say(f"  (the demo {whose}site of {args[0]} {what})")

    # --- the team's CI (`ci`) ---------------------------------------------------------------

    def ci_contexts(self, services: Services | None = None) -> list[str]:
        """The contexts the CI gates of a service (the shell's, by default) name (those that
        must pass, then those allowed to fail), for help and completion."""
        names: list[str] = []
        for gate in (services or self.services).config.gates:
            if gate.check == "github":
                names += [c for c in (*gate.contexts, *gate.allow_failures) if c != ALL]
        return list(dict.fromkeys(names))

    def _ci_usage(self) -> str:
        return CI_USAGE + (" [SERVICE]" if len(self.fleet.services) > 1 else "")

    def _label(self, services: Services, release: Release) -> str:
        """A release's tag as the shell says it: with its service's name when that is not the
        first one (two services may have one version)."""
        if services is self.fleet.first:
            return release.tag
        return f"{services.config.service} {release.tag}"

    async def _ci(self, rest: str) -> None:
        if self.github is None:
            self.say(
                "  `ci` plays the team's CI when the config's CI gates read GitHub "
                '([github] repository = "owner/name"), as the demo\'s do.'
            )
            return
        try:
            args = shlex.split(rest)
        except ValueError:
            self.say(f"  Usage: {self._ci_usage()} (a CONTEXT with spaces goes in quotes).")
            return
        # With several services, a word naming one (anywhere) says which service's CI.
        services = self.services
        if len(self.fleet.services) > 1:
            for arg in args:
                named = self._service_named(arg)
                if named is not None:
                    services = named
                    args.remove(arg)
                    break
        try:
            if not args or (len(args) == 1 and _VERSION_LIKE.fullmatch(args[0])):
                await self._ci_list(services, args[0] if args else None)
            elif args[0] not in CI_STATES:
                self.say(f"  I don't know `ci {args[0]}`. Usage: {self._ci_usage()}")
            elif len(args) == 1 or len(args) > 3:
                self.say(
                    f"  Usage: ci {args[0]} CONTEXT [VERSION], "
                    f"{self._contexts_hint(services, args[0])}."
                )
            elif len(args) == 3 and not _VERSION_LIKE.fullmatch(args[2]):
                self.say(
                    f"  `{args[2]}` is not a version like v0.15.0-rc.1; a CONTEXT with spaces "
                    f'goes in quotes: ci {args[0]} "{args[1]} {args[2]}"'
                )
            else:
                version = args[2] if len(args) == 3 else None
                await self._ci_report(services, args[0], args[1], version)
        except RedisError:
            self.say("  Redis did not answer, so the shell cannot tell which commit; try again.")
        except CiUnavailable as exc:
            self.say(f"  The bot could not read CI: {exc}")

    def _contexts_hint(self, services: Services, verb: str = "pass") -> str:
        contexts = self.ci_contexts(services)
        if not contexts:
            return f"with CONTEXT the name CI reports, like `ci {verb} ci/build`"
        return (
            f"with CONTEXT one of {', '.join(contexts)} (what the CI gates wait for), "
            f"like `ci {verb} {contexts[0]}`"
        )

    async def _ci_release(self, services: Services, version: str | None) -> Release | None:
        """The release whose commit `ci` reports on: VERSION's, or the newest open candidate
        (what `/release final` would promote); None, said why, when there is none."""
        store = services.store
        whose = "" if services is self.fleet.first else f" of {services.config.service}"
        if version is None:
            candidates = [
                r for r in await store.releases_in_flight() if approvals.is_open_candidate(r)
            ]
            if not candidates:
                self.say(
                    f"  There is no open release candidate{whose}, so no commit for CI to "
                    "report on: `/release rc` makes one (or name a release: `ci pass CONTEXT "
                    "VERSION`)."
                )
                return None
            return candidates[-1]
        prefix = services.config.repository.tag_prefix
        bare = version[len(prefix) :] if prefix and version.startswith(prefix) else version
        release = await store.get_release(bare)
        if release is None:  # a final version names its candidate's commit
            candidate = await store.release_by_final_version(bare)
            release = await store.get_release(candidate) if candidate else None
        if release is None:
            self.say(
                f"  There is no release `{version}`{whose}; `/release status` lists those in "
                "flight."
            )
        return release

    async def _ci_report(
        self, services: Services, verb: str, context: str, version: str | None
    ) -> None:
        """A commit status on the release's commit, then the CI gates' look at once (the
        scheduler's comes only every few seconds)."""
        assert self.github is not None
        release = await self._ci_release(services, version)
        if release is None:
            return
        state = CI_STATES[verb]
        owner, name = services.config.github.owner_and_name
        self.github.set_status(
            owner, name, release.sha, context, state, description="reported in releasebot shell"
        )
        self.say(
            f"  (CI reports {context}: {state} on `{release.sha[:10]}`, the commit of "
            f"{self._label(services, release)})"
        )
        contexts = self.ci_contexts(services)
        if contexts and context not in contexts:
            self.say(f"  (no CI gate waits for {context}; they wait for {', '.join(contexts)})")
        await ci_gates.recheck_waiting(services)
        await self.settle()
        await self._ci_still_waiting(services, release.version)

    async def _ci_still_waiting(self, services: Services, version: str) -> None:
        """Say what a CI gate of the release still waits for (its decision is in the thread)."""
        release = await services.store.get_release(version)
        if release is None:
            return
        configs = {g.id: g for g in services.config.gates if g.check == "github"}
        for gate in release.gates:
            cfg = configs.get(gate.id)
            if cfg is None or gate.status != "running":
                continue
            verdict = await ci_gates.look(services, release, gate, cfg)
            if verdict.outcome == "waiting":
                self.say(f"  ({gate.name} of {self._label(services, release)}: {verdict.detail})")

    async def _ci_list(self, services: Services, version: str | None) -> None:
        release = await self._ci_release(services, version)
        if release is None:
            return
        ci = services.ci
        if ci is None:
            self.say("  The bot has no GitHub access in this shell, so it reads no CI.")
            return
        reported = latest(await ci.checks(release.sha))
        where = f"`{release.sha[:10]}` ({self._label(services, release)})"
        missing = [c for c in self.ci_contexts(services) if c not in reported]
        if not reported:
            self.say(f"  CI has reported nothing on {where} yet; {self._contexts_hint(services)}.")
            return
        self.say(f"  CI on {where}:")
        for check in reported.values():
            self.say(f"    {CI_ICONS.get(check.state, '·')} {check.name}: {check.state}")
        if missing:
            self.say(f"    not reported yet: {', '.join(missing)}")

    async def _wait(self, arg: str) -> None:
        if not arg:
            await self.settle()
            return
        try:
            seconds = float(arg)
        except ValueError:
            self.say("  Usage: wait [SECONDS]")
            return
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            if self.live:
                self.flush()
        self.flush()

    async def _slash_command(self, command: str, text: str) -> None:
        body = payloads.form_body(
            payloads.slash_command(
                WORKSPACE,
                self.person,
                command=command,
                text=text.strip(),
                channel_id=self.slack.channel_id(self.channel),
                channel_name=self.channel.lstrip("#"),
                response_url=self.slack.response_url(self.user),
            )
        )
        status, data = await self._post(body)
        if status == 404:
            self.say(f"  The bot has no {command} command.")
        elif status == 504:
            self.say('  The bot did not answer in time (Slack would show "operation_timeout").')
        elif status != 200:
            self.say(f"  The bot answered HTTP {status}.")
        elif data:
            self._print_private(data)
        await self.settle()

    async def _click(self, arg: str) -> None:
        if not re.fullmatch(r"[0-9]{1,4}", arg):
            self.say("  Usage: click N, with the number shown in [N].")
            return
        button = next((b for b in self._buttons.values() if b.number == int(arg)), None)
        if button is None:
            self.say(f"  There is no button [{arg}].")
            return
        if button.gone:
            # Slack takes a button away with its message's update; so does the shell.
            self.say(f"  Button [{arg}] ({button.label}) is gone: its message no longer has it.")
            return
        confirm = button.action.get("confirm")
        if confirm:
            title = confirm.get("title", {}).get("text", "Are you sure?")
            self.say(
                f"  ({title}: {plain(confirm.get('text', {}).get('text', ''))} "
                f"→ {confirm.get('confirm', {}).get('text', 'Confirm')})"
            )
        message = self.slack.messages().get(button.ts)
        shown = {
            "ts": button.ts,
            "text": message.text if message else "",
            "blocks": message.blocks if message else [],
        }
        payload = payloads.block_actions(
            WORKSPACE,
            self.person,
            channel_id=button.channel,
            channel_name=self.slack.channel_name(button.channel) or button.channel,
            message=shown,
            block_id=button.block_id,
            action=button.action,
            response_url=self.slack.response_url(self.user),
        )
        status, data = await self._post(payloads.interaction_body(payload))
        if status == 404:
            self.say(f"  (the bot does not handle “{button.label}” yet)")
        elif status == 504:
            self.say('  The bot did not answer in time (Slack would show "operation_timeout").')
        elif status != 200:
            self.say(f"  The bot answered HTTP {status}.")
        elif data.get("text") or data.get("blocks"):
            self._print_private(data)
        await self.settle()

    async def _submit(self, text: str) -> None:
        view = self._view
        if view is None:
            self.say("  No form is open; a button such as Reject opens one.")
            return
        # `submit TEXT` fills in the form's first box (the shell's forms have one).
        inputs = [b for b in view.get("blocks", []) if b.get("type") == "input"]
        payload = payloads.view_submission(
            WORKSPACE,
            self.person,
            view=view,
            values={b["block_id"]: text for b in inputs[:1]},
            view_id="V0SHELL",
        )
        status, data = await self._post(payloads.interaction_body(payload))
        if status != 200:
            self.say(f"  The bot answered HTTP {status}.")
        elif data.get("response_action") == "errors":
            for problem in (data.get("errors") or {}).values():
                self.say(f"  (the form says: {problem})")
            return  # the form stays open
        self._view = None
        await self.settle()

    # --- waiting and printing -----------------------------------------------------------------

    async def _busy(self) -> bool:
        for services in self.fleet.services:
            queued = await services.queue.count("queued") + await services.queue.count("active")
            if queued > 0 or not services.notifier.idle:
                return True
        return False

    async def _still_busy(self) -> bool:
        try:
            return await asyncio.wait_for(self._busy(), timeout=5)
        except (TimeoutError, OSError, RedisError):
            return True  # cannot tell: keep waiting, up to settle's own limit

    async def settle(self, timeout: float = 120.0) -> None:
        """Wait until the bot is idle: no jobs, no pending updates, Slack quiet for a moment."""
        started = time.monotonic()
        calls, quiet_since = len(self.slack.calls), time.monotonic()
        while time.monotonic() - started < timeout:
            await asyncio.sleep(0.1)
            if len(self.slack.calls) != calls:
                calls, quiet_since = len(self.slack.calls), time.monotonic()
            if self.live:
                self.flush()
            if time.monotonic() - quiet_since > 0.5 and not await self._still_busy():
                break
        else:
            self.say("  (still working; `wait` to see more)")
        self.flush()

    def flush(self) -> None:
        """Print private answers and every message that is new or changed since last time."""
        for call in self.slack.calls[self._calls_seen :]:
            if call.method in ("response_url", "chat.postEphemeral") and call.ok:
                self._print_private(call.params)
            elif call.method == "views.open" and call.ok:
                self._open_form(call.params.get("view") or {})
        self._calls_seen = len(self.slack.calls)
        messages = self.slack.messages()
        for message in messages.values():
            shown = self._shown.get(message.ts)
            if shown is not None and shown == message.updates:
                continue
            self._shown[message.ts] = message.updates
            parent = messages.get(message.thread_ts) if message.thread_ts else None
            self._print_message(message, parent, updated=shown is not None)

    def live_buttons(self) -> list[Button]:
        """The buttons that can be clicked now, by number (for tab completion)."""
        return sorted((b for b in self._buttons.values() if not b.gone), key=lambda b: b.number)

    def _open_form(self, view: dict[str, Any]) -> None:
        self._view = view
        self._last_thread = None
        title = view.get("title", {}).get("text", "Form")
        self.say(f"  ┌ form “{title}”")
        for line in render(
            [b for b in view.get("blocks", []) if b.get("type") != "input"],
            names=self._names(),
            styled=self.styled,
        ):
            self.say(f"  │ {line}")
        for block in view.get("blocks", []):
            if block.get("type") == "input":
                self.say(f"  │ {block['label']['text']}: (type `submit …` or `cancel`)")
        self.say("  └")

    def _print_private(self, data: dict[str, Any]) -> None:
        self._last_thread = None
        lines = render(
            data.get("blocks") or [],
            fallback=str(data.get("text", "")),
            names=self._names(),
            styled=self.styled,
        )
        self.say("  (only you) " + lines[0] if lines else "  (only you)")
        for line in lines[1:]:
            self.say("             " + line)

    def _names(self) -> dict[str, str]:
        return {uid: str(info.get("name", uid)) for uid, info in self.slack.users.items()}

    def _print_message(self, message: Message, parent: Message | None, updated: bool) -> None:
        name = self.slack.channel_name(message.channel)
        where = f"#{name}" if name and message.channel.startswith("C") else message.channel
        lines = render(
            message.blocks, fallback=message.text, names=self._names(), styled=self.styled
        )
        if message.thread_ts:
            if self._last_thread != message.thread_ts:
                about = first_line(parent, self._names()) if parent else message.thread_ts
                self.say(f"  ↳ in the thread of “{about}”:")
            self._last_thread = message.thread_ts
            indent = "      "
            if updated and lines:  # a reply edited in place (a deploy's progress) says so
                lines[0] = f"(updated) {lines[0]}"
        else:
            self._last_thread = None
            self.say(f"[{where}] releasebot{' (updated)' if updated else ''}:")
            indent = "  │ "
        for line in lines:
            self.say(indent + line)
        shown: set[int] = set()
        for block in message.blocks:
            for element in _buttons_of(block):
                button = self._number(message, block, element)
                shown.add(button.number)
                self.say(f"{indent}[{button.number}] {button.label}")
        for button in self._buttons.values():
            if button.ts == message.ts:
                button.gone = button.number not in shown

    def _number(self, message: Message, block: dict[str, Any], element: dict[str, Any]) -> Button:
        key = (
            message.ts,
            str(block.get("block_id", "")),
            str(element.get("action_id", "")),
            str(element.get("value", "")),
        )
        if key not in self._buttons:
            self._buttons[key] = Button(
                number=len(self._buttons) + 1,
                channel=message.channel,
                ts=message.ts,
                block_id=key[1],
                action=element,
                subject=self._subject(message.channel, element),
            )
        else:
            self._buttons[key].action = element
        return self._buttons[key]

    def _subject(self, channel_id: str, element: dict[str, Any]) -> str:
        """The gate a button acts on, from its value (`{"v": …, "g": gate id}`): the bot's
        message shows a plain "Reject" under the gate's line, which the terminal's list of
        numbered buttons loses."""
        try:
            value = json.loads(str(element.get("value", "")))
        except json.JSONDecodeError:
            return ""
        gate_id = value.get("g") if isinstance(value, dict) else None
        services = self._service_in(channel_id) or self.fleet.first
        names = {g.id: g.name for g in services.config.gates}
        return names.get(gate_id, "") if isinstance(gate_id, str) else ""


# --- Block Kit as text -----------------------------------------------------------------------


def plain(text: str, names: dict[str, str] | None = None, styled: bool = False) -> str:
    """mrkdwn as a terminal shows it: mentions as @name, dates and links as their text,
    emoji names as emoji. `styled`: bold, italics, strike-through and code as ANSI styles,
    and a link's address after its text (a transcript keeps the mrkdwn as it is)."""
    names = names or {}
    text = _MENTION.sub(lambda m: "@" + names.get(m.group(1), m.group(1)), text)
    text = _CHANNEL.sub(lambda m: "#" + (m.group(2) or m.group(1)), text)
    text = _DATE.sub(lambda m: m.group(1), text)
    text = _LINK.sub(_link_styled if styled else lambda m: m.group(2), text)
    text = _SPECIAL.sub(lambda m: "@" + m.group(1), text)
    text = _EMOJI_NAME.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)
    if styled:
        text = _emphasis(text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _link_styled(match: re.Match[str]) -> str:
    url, label = match.group(1), match.group(2)
    shown = f"{_UNDERLINE}{label}{_NO_UNDERLINE}"
    return shown if label == url else f"{shown} {_DIM}({url}){_NO_DIM}"


def _emphasis(text: str) -> str:
    """Code spans as code, and emphasis only outside them (`*` in code is literal)."""
    out: list[str] = []
    last = 0
    for match in _CODE.finditer(text):
        out.append(_emphasis_outside_code(text[last : match.start()]))
        out.append(f"{_ON['code']}{match.group(1)}{_OFF['code']}")
        last = match.end()
    out.append(_emphasis_outside_code(text[last:]))
    return "".join(out)


def _emphasis_outside_code(text: str) -> str:
    for style, pattern in (("bold", _BOLD), ("italic", _ITALIC), ("strike", _STRIKE)):
        text = pattern.sub(f"{_ON[style]}\\1{_OFF[style]}", text)
    return text


def _buttons_of(block: dict[str, Any]) -> list[dict[str, Any]]:
    if block.get("type") == "actions":
        return [e for e in block.get("elements", []) if e.get("type") == "button"]
    accessory = block.get("accessory")
    if isinstance(accessory, dict) and accessory.get("type") == "button":
        return [accessory]
    return []


def render(
    blocks: list[dict[str, Any]],
    fallback: str = "",
    names: dict[str, str] | None = None,
    styled: bool = False,
) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            title = plain(block["text"]["text"], names)
            lines.append(f"{_ON['bold']}{title}{_OFF['bold']}" if styled else f"== {title} ==")
        elif kind == "section":
            if block.get("text"):
                text = block["text"]["text"].replace("```", "")
                lines.extend(plain(text, names, styled).splitlines() or [""])
            if block.get("fields"):
                parts = [_field(f["text"], names, styled) for f in block["fields"]]
                lines.append(" · ".join(parts))
        elif kind == "context":
            texts = [
                plain(e.get("text", ""), names, styled)
                for e in block.get("elements", [])
                if "text" in e
            ]
            line = "(" + " ".join(texts) + ")"
            lines.append(f"{_DIM}{line}{_NO_DIM}" if styled else line)
        elif kind == "divider":
            lines.append("─" * 20)
    if not lines and fallback:
        lines = plain(fallback, names, styled).splitlines()
    return lines


def _field(text: str, names: dict[str, str] | None, styled: bool) -> str:
    """A field is a bold name over its value: `Name: value` on one line."""
    if not styled:
        return plain(text, names).replace("*", "").replace("\n", ": ", 1)
    name, _, value = text.partition("\n")
    name = f"{_ON['bold']}{plain(name, names).replace('*', '')}{_OFF['bold']}"
    return f"{name}: {plain(value, names, styled)}" if value else name


def first_line(message: Message, names: dict[str, str]) -> str:
    lines = render(message.blocks, fallback=message.text, names=names)
    return lines[0].strip("= ") if lines else message.ts


# --- running it --------------------------------------------------------------------------------


async def run_shell(
    configs: Sequence[Config],
    *,
    state_dir: Path,
    redis_url: str | None,
    lines: Iterable[str] | None,
    out: TextIO = sys.stdout,
    live: bool = False,
    site: DemoSite | None = None,
) -> None:
    """Start the bot (all roles, every service of `configs` in one fleet) against the
    stand-in and play `lines`, or read the terminal."""
    # `kill -USR1` prints what every task is waiting for: the way to see why a shell hangs.
    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_tasks)
    if site is not None:
        await site.start()
    embedded = None
    if redis_url is None:
        embedded = EmbeddedRedis()
        redis_url = embedded.start()
        print(WARNING, file=sys.stderr)
    prefix = f"releasebot-shell:{secrets.token_hex(4)}:"
    try:
        async with SlackStandIn(token="xoxb-shell") as slack, _github_for(configs) as github:
            settings = Settings(
                bot_token=slack.token,
                signing_secret=secrets.token_hex(16),
                redis_url=redis_url,
                slack_api_url=slack.base_url,
                state_dir=state_dir,
                redis_prefix=prefix,
                update_delay=0.3,
                embedded_redis=embedded is not None,
                github=(
                    GitHubConfig(api_url=github.base_url, token=github.token)
                    if github is not None
                    else None
                ),
            )
            bot = Bot(Fleet.create(settings, configs), "all")
            try:
                await bot.start(port=0, host="127.0.0.1")
                async with Shell(bot, slack, out=out, live=live, site=site, github=github) as shell:
                    if lines is None:
                        await _converse(shell)
                    else:
                        await shell.run_lines(lines)
            finally:
                await bot.stop()
                if embedded is None:
                    await _forget(redis_url, prefix)
    finally:
        if embedded is not None:
            embedded.stop()
        if site is not None:
            await site.stop()


@contextlib.asynccontextmanager
async def _github_for(configs: Sequence[Config]) -> AsyncIterator[GitHubStandIn | None]:
    """The team's CI, when a service's CI gates read GitHub: a local GitHub stand-in with
    every configured repository on it, nothing reported yet (`ci pass CONTEXT` reports). The
    shell never reaches the real GitHub, as it never reaches the real Slack."""
    named = [c for c in configs if c.github.repository]
    if not named:
        yield None
        return
    async with GitHubStandIn() as github:
        for config in named:
            github.repo(*config.github.owner_and_name)
        yield github


def _dump_tasks() -> None:
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}: {task.get_coro()!r}", file=sys.stderr)
        task.print_stack(limit=12, file=sys.stderr)
    sys.stderr.flush()


async def _forget(redis_url: str, prefix: str) -> None:
    """A shell session on a real Redis leaves nothing behind."""
    client = connect(RedisTarget(url=redis_url))
    try:
        for pattern in (f"{prefix}*", f"saq:*{prefix}*"):
            async for key in client.scan_iter(match=pattern, count=500):
                await client.delete(key)
    finally:
        await client.aclose()


async def _converse(shell: Shell) -> None:
    """A person at a terminal: a prompt with history and completion when the output is a
    terminal too, plain lines otherwise; the bot's messages shown as they arrive."""
    # Imported here: scripts and pipes run without prompt_toolkit.
    from bot.devtools import terminal

    if sys.stdout.isatty():
        shell.say("releasebot shell: `help` for help, Tab completes, `quit` or Ctrl-D leaves.")
        shell.styled, shell.echo = True, False  # the prompt line stays on screen as typed
        await terminal.run_prompt(shell, terminal.open_history(terminal.history_path()))
        return
    shell.say("releasebot shell: `help` for help, `quit` or Ctrl-D leaves.")
    watcher = asyncio.create_task(terminal.watch(shell))
    try:
        async for line in terminal.read_lines():
            if not await shell.execute(line):
                break
    finally:
        watcher.cancel()
