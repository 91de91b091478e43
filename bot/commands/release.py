"""Parsing of `/release` command text into typed requests, with messages that say what to type."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.commands.words import UnclosedQuote, split_words
from bot.domain.versions import BUMPS, Bump
from bot.domain.windows import zone

MAX_DESCRIPTION = 1000
MAX_REASON = 500
MAX_FREEZE = timedelta(days=90)  # longer ones belong in the config's [[freezes]]
VERSION_WORD = re.compile(r"^[A-Za-z0-9._/+-]{1,60}$")
ISSUE_ID = re.compile(r"^[A-Za-z0-9#][A-Za-z0-9._#/:-]{0,63}$")

USAGE = """\
*`/release rc [--description TEXT] [--issue ID] [--bump major|minor|patch] [--dry-run]`*
(`--allow-empty`: even with no change since production)
Tag a release candidate from the release branch and deploy it to the first environment.
*`/release hotfix --description TEXT [--issue ID]`*
The emergency path: a patch of what runs in production, with the hotfix gates and approvals.
*`/release final [--description TEXT] [--issue ID] [--when-open]`*
Promote the newest candidate, once its gates passed and its approvals are complete
(`--when-open`: while the last environment is closed, at its next opening;
`--emergency --reason TEXT`: through the closure, once the override's approvals are in).
*`/release status`* Versions in each environment, releases in flight, locks held.
*`/release health [ENV]`* Every health check: its state, latency and last failure.
*`/release rollback [ENV] [--to VERSION] --reason TEXT`*
Redeploy the previous good version (or VERSION); ENV stays locked afterwards.
*`/release cancel [VERSION] --reason TEXT`*
Stop an open candidate (the newest, or VERSION): it can no longer be promoted.
*`/release audit [VERSION]`* Who did what to a release, and when (or the latest entries).
*`/release changes [VERSION]`* What a release brings: its changes, authors and risks.
*`/release report [--since 30d]`*
Deploys a day, lead time for changes, change failure rate, time to restore.
*`/release adopt ENV VERSION --reason TEXT`*
Tell the bot what ENV runs when it did not deploy it (VERSION must be a tag).
*`/release lock ENV --reason TEXT [--force]`* Stop deploys to ENV until it is unlocked.
*`/release unlock ENV [--force]`* Allow deploys to ENV again.
*`/release freeze ENV --until WHEN --reason TEXT`*
No promotion, deploy or flag rollout to ENV until WHEN ("2026-12-27 09:00", "3h", "2d").
*`/release unfreeze ENV [--reason TEXT]`* End the freezes set on ENV from Slack.
*`/release help`* This help."""


class CommandError(Exception):
    """The command text is wrong; the message says what was wrong and what would be right."""


# Text people give becomes data: a tag's annotation (one `Description:` line; a newline would
# let it forge an `Approved-by:` line), the audit trail, Slack messages, log lines. So it is
# plain text on one line: no control characters (NUL, ESC, CR, LF, TAB…), no line or
# paragraph separators, no bidi controls (they make text read differently than it is).
_UNSAFE_TEXT = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069"
    # Lone surrogates: not text at all, and Redis (UTF-8) cannot store them.
    "\ud800-\udfff]"
)


def check_text(what: str, text: str) -> str:
    """`text` if it is plain text on one line; else CommandError naming what and where."""
    found = _UNSAFE_TEXT.search(text)
    if found is not None:
        raise CommandError(
            f"The {what} has a control character (U+{ord(found.group()):04X}) "
            f"at position {found.start() + 1}; use plain text on one line."
        )
    return text


@dataclass(frozen=True)
class RcCommand:
    description: str = ""
    issue: str | None = None
    bump: Bump | None = None
    dry_run: bool = False
    allow_empty: bool = False  # a candidate with no change since production


@dataclass(frozen=True)
class HotfixCommand:
    description: str
    issue: str | None = None


@dataclass(frozen=True)
class FinalCommand:
    description: str = ""
    issue: str | None = None
    when_open: bool = False  # a closed last environment: promote at its next opening
    emergency: str = ""  # why: an EMERGENCY override of a closed last environment


@dataclass(frozen=True)
class RollbackCommand:
    reason: str
    environment: str | None = None
    to: str | None = None


@dataclass(frozen=True)
class CancelCommand:
    reason: str
    version: str | None = None  # None: the newest open candidate


@dataclass(frozen=True)
class AdoptCommand:
    environment: str
    version: str
    reason: str


@dataclass(frozen=True)
class AuditCommand:
    version: str | None = None


@dataclass(frozen=True)
class StatusCommand:
    pass


@dataclass(frozen=True)
class ChangesCommand:
    version: str | None = None


@dataclass(frozen=True)
class ReportCommand:
    since: str | None = None  # as `releasebot report --since` takes it: 30d, 2026-11-01…


@dataclass(frozen=True)
class HealthCommand:
    environment: str | None = None


@dataclass(frozen=True)
class HelpCommand:
    pass


@dataclass(frozen=True)
class LockCommand:
    environment: str
    reason: str
    force: bool = False


@dataclass(frozen=True)
class UnlockCommand:
    environment: str
    force: bool = False


@dataclass(frozen=True)
class FreezeCommand:
    environment: str
    until: str  # as typed: resolved by `freeze_until`, which needs the clock and the zone
    reason: str


@dataclass(frozen=True)
class UnfreezeCommand:
    environment: str
    reason: str = ""


Command = (
    RcCommand
    | FinalCommand
    | StatusCommand
    | HelpCommand
    | LockCommand
    | UnlockCommand
    | AuditCommand
    | RollbackCommand
    | HotfixCommand
    | HealthCommand
    | CancelCommand
    | AdoptCommand
    | ReportCommand
    | ChangesCommand
    | FreezeCommand
    | UnfreezeCommand
)

_RC_OPTIONS = {
    "--description": True,
    "--issue": True,
    "--bump": True,
    "--dry-run": False,
    "--allow-empty": False,
}


def parse_release_command(text: str) -> Command:
    try:
        words = split_words(text)
    except UnclosedQuote as exc:
        raise CommandError(
            f'{exc} Put the description in quotes: `/release rc --description "what changed"`.'
        ) from None
    if not words or words[0] in ("help", "--help", "-h"):
        return HelpCommand()
    sub, rest = words[0].lower(), words[1:]
    if sub == "status":
        if rest:
            raise CommandError(f"`/release status` takes no arguments (got `{' '.join(rest)}`).")
        return StatusCommand()
    if sub == "health":
        if len(rest) > 1 or (rest and rest[0].startswith("-")):
            raise CommandError(
                "`/release health` takes at most an environment, like `/release health production`."
            )
        return HealthCommand(environment=rest[0].lower() if rest else None)
    if sub == "rc":
        return _parse_rc(rest)
    if sub == "rollback":
        env = rest[0].lower() if rest and not rest[0].startswith("-") else None
        opts = _parse_options(
            "rollback", rest[1:] if env else rest, {"--to": True, "--reason": True}
        )
        reason = _reason(
            opts,
            'A rollback needs a reason: `/release rollback production --reason "checkout errors"`.',
        )
        to = opts.get("--to")
        if to is not None and not VERSION_WORD.fullmatch(str(to)):
            raise CommandError(f"`--to {to}` is not a version; use one like `--to v0.14.1`.")
        return RollbackCommand(reason=reason, environment=env, to=str(to) if to else None)
    if sub == "changes":
        if len(rest) > 1 or (rest and not VERSION_WORD.fullmatch(rest[0])):
            raise CommandError(
                "`/release changes` takes at most a version, like `/release changes v0.15.0-rc.1`."
            )
        return ChangesCommand(version=rest[0] if rest else None)
    if sub == "report":
        opts = _parse_options("report", rest, {"--since": True})
        since = opts.get("--since")
        if isinstance(since, str) and not VERSION_WORD.fullmatch(since):
            raise CommandError(
                "`--since` takes a date or an age, like `--since 30d` or `--since 2026-11-01`."
            )
        return ReportCommand(since=since if isinstance(since, str) else None)
    if sub == "audit":
        if len(rest) > 1 or (rest and not VERSION_WORD.fullmatch(rest[0])):
            raise CommandError(
                "`/release audit` takes at most a version, like `/release audit v0.15.0-rc.1`."
            )
        return AuditCommand(version=rest[0] if rest else None)
    if sub == "hotfix":
        opts = _parse_options("hotfix", rest, {"--description": True, "--issue": True})
        description = _description(opts)
        if not description:
            raise CommandError(
                "A hotfix needs a description of what it fixes: "
                '`/release hotfix --description "checkout crash"`.'
            )
        return HotfixCommand(description=description, issue=_issue(opts))
    if sub == "final":
        opts = _parse_options(
            "final",
            rest,
            {
                "--description": True,
                "--issue": True,
                "--when-open": False,
                "--emergency": False,
                "--reason": True,
            },
        )
        emergency = ""
        if opts.get("--emergency") or "--reason" in opts:
            if not opts.get("--emergency"):
                raise CommandError(
                    "`--reason` goes with `--emergency`: `/release final --emergency --reason "
                    '"checkout is down"` asks to promote through a freeze.'
                )
            emergency = _reason(
                opts,
                "An EMERGENCY override needs a reason, said to its approvers and kept in the "
                'tag: `/release final --emergency --reason "checkout is down"`.',
            )
        return FinalCommand(
            description=_description(opts),
            issue=_issue(opts),
            when_open=bool(opts.get("--when-open")),
            emergency=emergency,
        )
    if sub == "lock":
        env, opts = _environment_and_options("lock", rest, {"--reason": True, "--force": False})
        reason = _reason(
            opts,
            "A lock needs a reason, so others know why: "
            f'`/release lock {env} --reason "db migration"`.',
        )
        return LockCommand(environment=env, reason=reason, force=bool(opts.get("--force")))
    if sub == "cancel":
        version = rest[0] if rest and not rest[0].startswith("-") else None
        if version is not None and not VERSION_WORD.fullmatch(version):
            raise CommandError(
                f"`{version}` is not a version; use one like `/release cancel v0.15.0-rc.2 "
                '--reason "wrong branch"`.'
            )
        opts = _parse_options("cancel", rest[1:] if version else rest, {"--reason": True})
        reason = _reason(
            opts, 'A cancel needs a reason: `/release cancel --reason "wrong branch"`.'
        )
        return CancelCommand(reason=reason, version=version)
    if sub == "adopt":
        example = '`/release adopt production v0.20.3 --reason "running before the bot"`'
        if len(rest) < 2 or rest[1].startswith("-") or not VERSION_WORD.fullmatch(rest[1]):
            raise CommandError(f"`/release adopt` needs an environment and a version: {example}.")
        opts = _parse_options("adopt", rest[2:], {"--reason": True})
        reason = _reason(opts, f"An adoption needs a reason: {example}.")
        return AdoptCommand(environment=rest[0].lower(), version=rest[1], reason=reason)
    if sub == "unlock":
        env, opts = _environment_and_options("unlock", rest, {"--force": False})
        return UnlockCommand(environment=env, force=bool(opts.get("--force")))
    if sub == "freeze":
        env, opts = _environment_and_options("freeze", rest, {"--until": True, "--reason": True})
        example = f'`/release freeze {env} --until "2026-12-27 09:00" --reason "holidays"`'
        until = check_text("until", str(opts.get("--until", "")).strip())
        if not until:
            raise CommandError(f"A freeze needs an end: {example} (or `--until 3h`, `2d`).")
        reason = _reason(opts, f"A freeze needs a reason, so others know why: {example}.")
        return FreezeCommand(environment=env, until=until, reason=reason)
    if sub == "unfreeze":
        env, opts = _environment_and_options("unfreeze", rest, {"--reason": True})
        reason = (
            _reason(
                opts,
                'The reason is empty: say why, like `--reason "done early"`, or leave it out.',
            )
            if "--reason" in opts
            else ""
        )
        return UnfreezeCommand(environment=env, reason=reason)
    raise CommandError(f"I don't know `/release {words[0]}`. Try one of these:\n{USAGE}")


def _reason(opts: dict[str, str | bool], missing: str) -> str:
    """The `--reason` of a command: plain text on one line, at most MAX_REASON characters;
    `missing` says how to give one."""
    reason = check_text("reason", str(opts.get("--reason", "")).strip())
    if not reason:
        raise CommandError(missing)
    if len(reason) > MAX_REASON:
        raise CommandError(f"The reason is {len(reason):,} characters; the most is {MAX_REASON}.")
    return reason


def _parse_options(sub: str, words: list[str], spec: dict[str, bool]) -> dict[str, str | bool]:
    found: dict[str, str | bool] = {}
    i = 0
    while i < len(words):
        word = words[i]
        name, eq, inline = word.partition("=")
        if name not in spec:
            if word.startswith("-"):
                raise CommandError(
                    f"`/release {sub}` has no option `{name}`. "
                    f"Options: {', '.join(f'`{o}`' for o in spec)}."
                )
            raise CommandError(
                f"Unexpected `{word}` in `/release {sub}`. Values go after an "
                "option, in quotes if they have spaces: "
                f'`/release {sub} --description "what changed"`.'
            )
        if name in found:
            raise CommandError(f"`{name}` is given twice.")
        if spec[name]:
            if eq:
                value = inline
            elif i + 1 < len(words) and not words[i + 1].startswith("--"):
                i += 1
                value = words[i]
            else:
                raise CommandError(f'`{name}` needs a value, e.g. `{name} "..."`.')
            found[name] = value
        else:
            if eq:
                raise CommandError(f"`{name}` takes no value.")
            found[name] = True
        i += 1
    return found


def _environment_and_options(
    sub: str, words: list[str], spec: dict[str, bool]
) -> tuple[str, dict[str, str | bool]]:
    if not words or words[0].startswith("-"):
        raise CommandError(
            f"`/release {sub}` needs the environment first, like `/release {sub} production`."
        )
    return words[0].lower(), _parse_options(sub, words[1:], spec)


def _description(opts: dict[str, str | bool]) -> str:
    description = check_text("description", str(opts.get("--description", "")).strip())
    if len(description) > MAX_DESCRIPTION:
        raise CommandError(
            f"The description is {len(description):,} characters; the most is "
            f"{MAX_DESCRIPTION:,}. Put the details in the thread or the issue."
        )
    return description


def _issue(opts: dict[str, str | bool]) -> str | None:
    issue = opts.get("--issue")
    if issue is not None and not ISSUE_ID.fullmatch(str(issue)):
        raise CommandError(
            f"`--issue {issue}` is not an issue ID; use letters, digits and "
            "`-._#/:`, like `--issue pw-bua` or `--issue #123`."
        )
    return str(issue) if issue else None


def _parse_rc(words: list[str]) -> RcCommand:
    opts = _parse_options("rc", words, _RC_OPTIONS)
    bump = opts.get("--bump")
    if bump is not None and bump not in BUMPS:
        raise CommandError(
            f"`--bump {bump}` is not a bump; use `--bump major`, `--bump minor` or `--bump patch`."
        )
    return RcCommand(
        description=_description(opts),
        issue=_issue(opts),
        bump=bump,
        dry_run=bool(opts.get("--dry-run", False)),
        allow_empty=bool(opts.get("--allow-empty", False)),
    )


_FREEZE_DURATION = re.compile(r"(?:(\d{1,4})d)?(?:(\d{1,6})h)?(?:(\d{1,7})m)?")
_UNTIL_HELP = (
    'a date and time like "2026-12-27 09:00" (in {tz}), an ISO date-time with its offset '
    'like "2026-12-27T09:00+01:00", or a duration like "3h", "2d" or "1d12h"'
)


def freeze_until(text: str, now: datetime, timezone: str) -> datetime:
    """When a freeze typed as `--until text` ends, from `now` (aware): a duration from now, a
    date-time with its offset, or a wall-clock date-time in `timezone` (the team's, from
    [freeze]; a time a fall-back repeats is its first occurrence). In the future and at most
    MAX_FREEZE away, else a CommandError saying what to type."""
    tz = zone(timezone)
    until: datetime | None = None
    duration = _FREEZE_DURATION.fullmatch(text.replace(" ", ""))
    if duration is not None and any(duration.groups()):
        days, hours, minutes = (int(g) if g else 0 for g in duration.groups())
        until = now + timedelta(days=days, hours=hours, minutes=minutes)
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            moment = None
        if moment is not None:
            until = moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)
    if until is None:
        raise CommandError(
            f"`--until {text}` is not a time I can read; give {_UNTIL_HELP.format(tz=timezone)}."
        )
    try:
        shown = f"{until.astimezone(tz):%Y-%m-%d %H:%M} {timezone}"
    except OverflowError:  # the year 1 or 9999 at an offset: no time a freeze could end
        raise CommandError(f"`--until {text}` is out of range; give a time to come.") from None
    if until <= now:
        raise CommandError(
            f"`--until {text}` ({shown}) is not in the future: it is "
            f"{now.astimezone(tz):%Y-%m-%d %H:%M} {timezone} now."
        )
    if until - now > MAX_FREEZE:
        raise CommandError(
            f"`--until {text}` ({shown}) is more than {MAX_FREEZE.days} days away; a freeze "
            "from Slack lasts at most that long (a longer one belongs in the config's "
            "[[freezes]])."
        )
    return until.astimezone(UTC)
