"""The releasebot config file (TOML): loading and validation that names every key at fault.

Each key is declared once, on the field of the frozen dataclass that holds it (its default,
and `key(kind, help, bounds)` in the field's metadata): the reader of a table takes
its known keys, their types, bounds and defaults from there, so a key cannot be validated one
way and defaulted another. Rules between keys (a gate's stage is an environment, a check has a
path or a url) are code below. Every mistake of a file is collected, not only the first.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pwd
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

from bot.domain.changes import TRAILER, pathspec_problem
from bot.domain.github_deploys import PLACEHOLDERS, unknown_placeholders
from bot.domain.windows import CronError, Freeze, Rules, Window, parse_cron, parse_duration, zone

ENV_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
GATE_ID = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
TAG_PREFIX = re.compile(r"^[A-Za-z0-9._/-]{0,20}$")
GATE_CHECKS = ("flags-ready", "github")  # gates the bot checks itself
GITHUB_REPOSITORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")
# The names under which the monitor keeps an environment's failed deploy and its outage (the
# one incident of all its failing checks): no configured check may take them.
DEPLOY_CHECK = "deploy"
OUTAGE_CHECK = "outage"
_T = TypeVar("_T")


class Problem(NamedTuple):
    """One mistake: the dotted path of the key at fault (`approvals.production.approvers[0]`),
    what is wrong, and the line of the file where that key is, when known."""

    key: str
    problem: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.key}: {self.problem}{where}"


class ConfigError(Exception):
    """Config problems, all of them; `key` and `problem` are the first one's (the one a caller
    that shows a single mistake shows)."""

    def __init__(self, key: str, problem: str, more: Iterable[Problem] = ()) -> None:
        self.problems = (Problem(key, problem), *more)
        super().__init__("\n".join(str(p) for p in self.problems))
        self.key = key
        self.problem = problem

    @classmethod
    def of(cls, problems: Iterable[Problem]) -> ConfigError:
        first, *rest = problems
        error = cls(first.key, first.problem, rest)
        error.problems = (first, *rest)  # keeps the first one's line
        error.args = ("\n".join(str(p) for p in error.problems),)
        return error


# --- the declaration of a key ---------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """What the file may hold under one name: its TOML type, its bounds, and what it is for."""

    kind: type  # str, int, float, bool, list or dict (a table); object: any, its section checks
    help: str
    # None: required when the field has no default; False for a field the parser fills in
    # (a check's absolute url, from `url` or `path`).
    required: bool | None = None
    gt: float | None = None  # bounds of a number
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    bounds: str = ""  # the message when out of bounds ({value} is filled in), else a plain one
    nonempty: bool = False  # a string that must hold more than blanks
    name: str = ""  # its name in the file, when not the field's


_KEY = "releasebot.key"  # where a field's metadata keeps its Key


def key(
    kind: type,
    help: str,
    *,
    required: bool | None = None,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    bounds: str = "",
    nonempty: bool = False,
    name: str = "",
) -> dict[str, Key]:
    """The metadata of a dataclass field that is a key of the file; whether the key is
    required comes from the field (no default: required), its default from the field too."""
    return {_KEY: Key(kind, help, required, gt, ge, lt, le, bounds, nonempty, name)}


def keys_of(cls: type, *names: str) -> dict[str, Key]:
    """The keys declared on `cls`'s fields (only `names`, when given), by their names in the
    file, in declaration order."""
    found: dict[str, Key] = {}
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_KEY)
        if spec is not None and (not names or (spec.name or f.name) in names):
            if spec.required is None:
                needed = f.default is MISSING and f.default_factory is MISSING
                spec = dataclasses.replace(spec, required=needed)
            found[spec.name or f.name] = spec
    return found


# --- what the file holds ----------------------------------------------------------------------

_SECONDS = "seconds; greater than 0"


@dataclass(frozen=True)
class RepositoryConfig:
    url: str = field(
        metadata=key(
            str,
            "URL or path the bot clones: https://, ssh://, git@host:path, file://, /absolute/path",
            nonempty=True,
        )
    )
    remote: str = field(default="origin", metadata=key(str, "the git remote's name", nonempty=True))
    branch: str = field(default="main", metadata=key(str, "the release branch", nonempty=True))
    tag_prefix: str = field(
        default="v", metadata=key(str, "before the version in tags (letters, digits, . _ / -)")
    )


@dataclass(frozen=True)
class SlackConfig:
    channel: str = field(metadata=key(str, "where release messages go (name or ID)", nonempty=True))


@dataclass(frozen=True)
class WorkerConfig:
    concurrency: int = field(default=2, metadata=key(int, "jobs at once per worker process", gt=0))
    # The environment lock expires this long after its holder stops renewing it (it renews every
    # third of it), so a dead worker frees the environment within this time.
    lock_ttl_seconds: float = field(
        default=30.0, metadata=key(float, "environment lock expiry, " + _SECONDS, gt=0)
    )
    # How often lost deploys are looked for (a deploy whose worker stopped heartbeating).
    reap_interval_seconds: float = field(
        default=10.0,
        metadata=key(float, "how often lost deploys are looked for, " + _SECONDS, gt=0),
    )
    # On shutdown, how long running jobs may go on before they are cancelled (and reported).
    shutdown_grace_seconds: float = field(
        default=20.0, metadata=key(float, "running jobs' time to finish on SIGTERM, seconds", ge=0)
    )
    # How long a worker keeps trying to record the outcome of a deploy while Redis is
    # unreachable, before it gives up and says so in the log and the thread.
    record_retry_seconds: float = field(
        default=600.0,
        metadata=key(
            float, "how long an outcome waits for an unreachable Redis, " + _SECONDS, gt=0
        ),
    )
    # The user deploy and gate commands run as, when the bot runs as root ("" = the bot's
    # own user): then they cannot read the bot's memory, environment, state or config.
    run_as: str = field(
        default="", metadata=key(str, "when the bot runs as root: the user commands run as")
    )


@dataclass(frozen=True)
class CommandEnv:
    """What the config passes to a command beyond the clean environment the bot builds:
    fixed values (`env = { NAME = "value" }`) and names copied from the bot's own environment
    (`pass_env = ["NPM_TOKEN"]`). Never a bot secret: validation refuses those names."""

    values: tuple[tuple[str, str], ...] = field(
        default=(), metadata=key(dict, 'given to its commands: { NAME = "value" }', name="env")
    )
    pass_env: tuple[str, ...] = field(
        default=(), metadata=key(list, "names copied from the bot's environment")
    )

    def __add__(self, more: CommandEnv) -> CommandEnv:
        """`more` on top of this (a gate's own over its environment's)."""
        names = {n for n, _ in more.values}
        return CommandEnv(
            tuple((n, v) for n, v in self.values if n not in names) + more.values,
            tuple(dict.fromkeys(self.pass_env + more.pass_env)),
        )


@dataclass(frozen=True)
class CheckConfig:
    """One health check of an environment: an HTTP GET and the conditions its answer must meet.

    Every condition that is set must hold; a check with none still fails when the endpoint is
    down or answers 5xx."""

    name: str = field(metadata=key(str, "lowercase letters, digits, - or _; not deploy or outage"))
    # absolute: the environment's url joined with `path`
    url: str = field(metadata=key(str, "a full http(s) URL, instead of path", required=False))
    interval_seconds: float = field(
        default=60.0, metadata=key(float, "how often it runs, " + _SECONDS, gt=0)
    )
    timeout_seconds: float = field(
        default=10.0, metadata=key(float, "no answer in time is down, " + _SECONDS, gt=0)
    )
    status: int | None = field(
        default=200,
        metadata=key(
            int,
            "the HTTP status expected; any 5xx always fails",
            ge=100,
            le=599,
            bounds="must be an HTTP status (100-599), got {value}",
        ),
    )
    max_response_ms: float | None = field(
        default=None, metadata=key(float, "slower than this fails", gt=0)
    )
    json: tuple[tuple[str, object], ...] = field(
        default=(),
        metadata=key(dict, "dotted paths into the JSON answer and the values expected there"),
    )
    body_contains: str | None = field(
        default=None, metadata=key(str, "text the answer must hold", nonempty=True)
    )
    # The JSON field holding the version the site runs, which must equal the version deployed
    # there by the bot (catches a deploy that did not really land).
    version_field: str | None = field(
        default=None,
        metadata=key(str, "the JSON field holding the version the site runs", nonempty=True),
    )


@dataclass(frozen=True)
class GitHubDeployConfig:
    """`deploy = { ... }`: an environment GitHub deploys, instead of a command the bot runs.

    Either a workflow the bot dispatches and follows (`github_workflow`), or a GitHub
    Deployment whose executor (Actions on `deployment`, a Heaven-style service) reports
    statuses the bot follows (`github_deployment = true`)."""

    github_workflow: str = field(
        default="",
        metadata=key(str, 'the workflow to dispatch: its file, like "deploy.yml", or its id'),
    )
    ref: str = field(
        default="tag",
        metadata=key(str, '"tag" (the deployed tag), "branch" (the release branch) or a ref'),
    )
    inputs: tuple[tuple[str, str], ...] = field(
        default=(),
        metadata=key(
            dict,
            "the workflow's inputs, with {env} {version} {tag} {sha} {rollback} {flags_commit}: "
            '{ environment = "{env}", version = "{version}" }',
        ),
    )
    # The bot passes its own id for the run in this input; the workflow shows it in its
    # run-name, which is how the bot finds the run it started (GitHub answers a dispatch
    # with no run id).
    correlation_input: str = field(
        default="correlation_id",
        metadata=key(str, "the input carrying the bot's id for the run (in its run-name)"),
    )
    github_deployment: bool = field(
        default=False,
        metadata=key(bool, "create a GitHub Deployment and follow the statuses reported on it"),
    )
    start_timeout_seconds: float = field(
        default=300.0,
        metadata=key(
            float, "a run or Deployment nothing starts fails after this, " + _SECONDS, gt=0
        ),
    )

    @property
    def what(self) -> str:
        """How it deploys, for people: "the GitHub workflow deploy.yml"."""
        if self.github_workflow:
            return f"the GitHub workflow {self.github_workflow}"
        return "a GitHub Deployment"


@dataclass(frozen=True)
class WindowConfig:
    """A recurring deploy window (bot.domain.windows): `[[environments.windows]]`, or
    `[[windows]]` for the environments it lists."""

    kind: Literal["allow", "deny"] = field(
        metadata=key(str, '"allow" (changes only inside) or "deny" (never inside)')
    )
    cron: str = field(
        metadata=key(str, 'when it opens: minute hour day month weekday, like "0 9 * * mon-fri"')
    )
    duration: timedelta = field(
        metadata=key(str, 'how long it stays open: like "30m", "8h", "2d" or "1h30m"')
    )
    timezone: str = field(
        default="UTC", metadata=key(str, 'the IANA time zone of its cron, like "Europe/Berlin"')
    )
    # Of [[windows]] only; filled in: the last environment when the file names none.
    environments: tuple[str, ...] = field(
        default=(), metadata=key(list, "the environments it applies to; default: the last")
    )

    @property
    def rule(self) -> Window:
        return Window(self.kind, self.cron, self.duration, self.timezone)


@dataclass(frozen=True)
class FreezeConfig:
    """A dated change freeze: `[[environments.freezes]]`, or `[[freezes]]` for the
    environments it lists."""

    start: datetime = field(
        metadata=key(
            object,
            'when it starts: "2026-12-20 00:00" in its timezone, or a TOML date-time',
            name="from",
        )
    )
    until: datetime = field(
        metadata=key(object, 'when it ends: "2027-01-04 09:00", or a TOML date-time')
    )
    reason: str = field(metadata=key(str, "why, said to whoever it stops", nonempty=True))
    timezone: str = field(
        default="UTC",
        metadata=key(str, "the IANA time zone of from and until, when they have none"),
    )
    environments: tuple[str, ...] = field(
        default=(), metadata=key(list, "the environments it applies to; default: the last")
    )

    @property
    def rule(self) -> Freeze:
        return Freeze(self.start, self.until, self.reason)


@dataclass(frozen=True)
class FreezePolicy:
    """`[freeze]`: who freezes an environment from Slack (`/release freeze`), and the time zone
    its `--until` is read in. A freeze only stops changes, so by default anyone may set one at
    once (audited). With `required` above 0 a freeze is a request that takes effect once that
    many approvers approved it (the asker counts if they are one: it only stops changes), and
    that expires unapproved after `request_hours` or at its end, whichever comes first. Ending
    a freeze early (`/release unfreeze`) is for whoever set it or an approver."""

    required: int = field(
        default=0,
        metadata=key(
            int, "approvals before a freeze takes effect (the asker counts); 0 = at once", ge=0
        ),
    )
    approvers: tuple[str, ...] = field(
        default=(),
        metadata=key(
            list,
            "who approves freezes and may end anyone's: user (U…/W…) and group (S…) IDs; "
            "[] = anyone",
        ),
    )
    # A request nobody approves must not wait (nor stay in Redis) for as long as the freeze
    # it asks for may last (90 days): it expires after this, or at its `until` if sooner.
    request_hours: float = field(
        default=24.0,
        metadata=key(
            float, "a freeze request expires unapproved after this, or at its end if sooner", gt=0
        ),
    )
    timezone: str = field(
        default="UTC",
        metadata=key(str, 'the team\'s time zone for --until, like "Europe/Berlin"'),
    )
    # `[freeze.override]`: the approvals an EMERGENCY override of a closed last environment
    # needs (`/release final --emergency`); never the asker's. No approvers listed = the last
    # environment's approvers.
    override: ApprovalPolicy = field(
        default_factory=lambda: ApprovalPolicy(required=2),
        metadata=key(dict, "approvals an EMERGENCY override needs (default 2)"),
    )

    @property
    def policy(self) -> ApprovalPolicy:
        return ApprovalPolicy(required=self.required, approvers=self.approvers)


@dataclass(frozen=True)
class EnvironmentConfig:
    name: str = field(metadata=key(str, "lowercase letters, digits, - or _"))
    deploy_command: str = field(
        default="",
        metadata=key(str, "run in a checkout of the tag (or deploy = { ... })", nonempty=True),
    )
    url: str = field(default="", metadata=key(str, "the site, which check paths join"))
    timeout_seconds: float = field(
        default=900.0,
        metadata=key(float, "the deploy's process group is killed after this, " + _SECONDS, gt=0),
    )
    checks: tuple[CheckConfig, ...] = field(
        default=(), metadata=key(list, "its health checks ([[environments.checks]])")
    )
    command_env: CommandEnv = field(default_factory=CommandEnv)
    windows: tuple[WindowConfig, ...] = field(
        default=(), metadata=key(list, "its deploy windows ([[environments.windows]])")
    )
    freezes: tuple[FreezeConfig, ...] = field(
        default=(), metadata=key(list, "its change freezes ([[environments.freezes]])")
    )
    # GitHub deploys it instead of deploy_command (exactly one of them is set).
    deploy: GitHubDeployConfig | None = field(
        default=None,
        metadata=key(
            dict,
            'GitHub deploys it: { github_workflow = "deploy.yml" }, or '
            "{ github_deployment = true }",
        ),
    )

    @property
    def deploys_with(self) -> str:
        """How it deploys, for people."""
        return self.deploy.what if self.deploy is not None else "its deploy command"


@dataclass(frozen=True)
class MonitoringConfig:
    """How checks run and when they alert (the defaults are Gatus's and the release doc's)."""

    tick_seconds: float = field(
        default=5.0,
        metadata=key(float, "how often the scheduler looks for checks that are due", gt=0),
    )
    concurrency: int = field(default=50, metadata=key(int, "checks in flight at once", gt=0))
    failures_to_alert: int = field(
        default=3, metadata=key(int, "failing results in a row before an incident opens", gt=0)
    )
    successes_to_resolve: int = field(
        default=2, metadata=key(int, "good results in a row before it resolves", gt=0)
    )
    reminder_seconds: float = field(
        default=1800.0,
        metadata=key(float, "reminders at most this often, until acknowledged", gt=0),
    )
    oncall: tuple[str, ...] = field(
        default=(), metadata=key(list, "user (U…) and user-group (S…) IDs mentioned when critical")
    )
    # Results kept as they are per check; older ones live on in per-version and per-window
    # aggregates (bot.domain.health.windows), so this needs to cover only what the rules read.
    history: int = field(default=150, metadata=key(int, "results kept as they are per check", gt=0))
    error_rate_percent: float = field(
        default=1.0, metadata=key(float, "critical above this error rate", gt=0, lt=100)
    )
    error_rate_samples: int = field(
        default=100, metadata=key(int, "the window the error rate is measured over", gt=0)
    )
    latency_samples: int = field(
        default=5,
        metadata=key(int, "recent results whose median is compared with the baseline", gt=0),
    )
    warning_degradation_percent: float = field(
        default=20.0, metadata=key(float, "slower than the baseline by more: warning", gt=0)
    )
    critical_degradation_percent: float = field(
        default=50.0, metadata=key(float, "slower than the baseline by more: critical", gt=0)
    )
    degradation_floor_ms: float = field(
        default=100.0, metadata=key(float, "slower by less than this is never a degradation", ge=0)
    )
    window_seconds: float = field(
        default=3600.0,
        metadata=key(float, "the close watch after each deploy of the last environment", gt=0),
    )
    window_interval_seconds: float = field(
        default=10.0, metadata=key(float, "check interval during that window", gt=0)
    )


@dataclass(frozen=True)
class GateConfig:
    id: str = field(metadata=key(str, "lowercase letters, digits, - or _"))
    name: str = field(metadata=key(str, "shown on the release message", nonempty=True))
    stage: str = field(metadata=key(str, "the environment after whose deploy it runs"))
    command: str | None = field(
        default=None, metadata=key(str, "an automatic gate's command", nonempty=True)
    )
    timeout_seconds: float = field(
        default=900.0, metadata=key(float, "its command is killed after this", gt=0)
    )
    check: str | None = field(
        default=None,
        metadata=key(str, 'a check the bot runs itself: "flags-ready", or "github" (the CI\'s)'),
    )
    # check = "github": the commit statuses and check runs that must pass (["all"]: every
    # one that reports), and those shown but never blocking. It waits for them up to
    # timeout_seconds, re-checked by the scheduler (no worker waits).
    contexts: tuple[str, ...] = field(
        default=(),
        metadata=key(list, 'the CI contexts that must pass, like ["ci/e2e"], or "all"'),
    )
    allow_failures: tuple[str, ...] = field(
        default=(), metadata=key(list, "CI contexts shown, never blocking")
    )
    command_env: CommandEnv = field(default_factory=CommandEnv)

    @property
    def automatic(self) -> bool:
        return self.command is not None or self.check is not None


@dataclass(frozen=True)
class GitHubTable:
    """Where the team's CI reports (the `github` checks of gates)."""

    repository: str = field(
        default="", metadata=key(str, 'the repository on GitHub: "acme/website"')
    )
    # How often a deploy GitHub runs (a workflow run, a Deployment) is looked at.
    poll_seconds: float = field(
        default=5.0,
        metadata=key(float, "how often a GitHub deploy is looked at, " + _SECONDS, gt=0),
    )
    # After each deploy and rollback, whatever ran it, a GitHub Deployment and its status
    # record what the bot shipped where (GitHub's environment pages show it).
    record_deployments: bool = field(
        default=True, metadata=key(bool, "record each deploy as a GitHub Deployment")
    )

    @property
    def owner_and_name(self) -> tuple[str, str]:
        owner, _, name = self.repository.partition("/")
        return owner, name


@dataclass(frozen=True)
class ApprovalPolicy:
    """Who must approve a release before it goes into an environment."""

    required: int = field(default=1, metadata=key(int, "distinct approvers", ge=1))
    approvers: tuple[str, ...] = field(
        default=(),
        metadata=key(list, "Slack user IDs (U…/W…) and user-group IDs (S…); [] = anyone"),
    )
    allow_self_approval: bool = field(
        default=False, metadata=key(bool, "the requester may approve")
    )
    valid_hours: float = field(
        default=72.0, metadata=key(float, "an approval lapses after this", gt=0)
    )

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(a for a in self.approvers if not a.startswith("S"))

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(a for a in self.approvers if a.startswith("S"))


@dataclass(frozen=True)
class HotfixConfig:
    """The emergency path: where hotfixes come from, their gates and their approvals."""

    branches: tuple[str, ...] = field(
        default=(),
        metadata=key(list, 'glob patterns, e.g. "hotfix/*"; default: the release branch'),
    )
    gates: tuple[str, ...] | None = field(
        default=None, metadata=key(list, "gate ids that apply; default: all")
    )
    policy: ApprovalPolicy = field(default_factory=ApprovalPolicy)


@dataclass(frozen=True)
class FlagsConfig:
    """Feature flags: the file in the released repository, and how changes to it ship."""

    path: str = field(
        default="data/feature-flags.toml",
        metadata=key(str, "the flags file, inside the repository"),
    )
    environment: str = field(
        default="", metadata=key(str, "where flag changes deploy; default: the last")
    )
    # Run instead of the environment's deploy command, in a checkout of the flag commit;
    # "" = the environment's own deploy of the version it runs, with the new flags file.
    deploy_command: str = field(
        default="", metadata=key(str, "instead of the environment's deploy")
    )
    endpoint: str = field(
        default="/flags", metadata=key(str, "on the environment's url: reports the flags it runs")
    )
    verify_seconds: float = field(
        default=60.0,
        metadata=key(float, "how long the endpoint may take to report the change", gt=0),
    )
    command_env: CommandEnv = field(default_factory=CommandEnv)  # for its deploy_command
    # Approvals for changes that show a feature to more people (enable, a higher
    # percentage, a ramp); switching off and lowering need none, so the kill switch is fast.
    policy: ApprovalPolicy = field(default_factory=ApprovalPolicy)


@dataclass(frozen=True)
class ChangesConfig:
    """What a release lists of its changes (bot.domain.changes) for the people who approve it."""

    pr_url: str = field(
        default="",
        metadata=key(
            str, 'a pull request\'s URL, {n} its number: "https://github.com/acme/site/pull/{n}"'
        ),
    )
    risk_trailer: str = field(
        default="Risk",
        metadata=key(str, "the commit trailer that names a risk (`Risk: …`)", nonempty=True),
    )
    paths: tuple[str, ...] = field(
        default=(),
        metadata=key(list, 'path globs a change must touch, like "services/api/*"; [] = all'),
    )
    show: int = field(
        default=20,
        metadata=key(
            int,
            'changes listed before "and N more"',
            ge=1,
            le=200,
            bounds="must be from 1 to 200 (a Slack message holds no more), got {value}",
        ),
    )
    # The release branch's own line: a merged pull request is one change, not its commits.
    first_parent: bool = field(
        default=True, metadata=key(bool, "a merged branch is one change (its merge commit)")
    )
    notify_authors: bool = field(
        default=False, metadata=key(bool, "tell the authors of the changes when they ship")
    )
    # Whom to mention for a commit author's email: { "ann@acme.com" = "U0ANN" }. Authors not
    # in it are named, not mentioned (the bot never guesses a person from a name).
    people: tuple[tuple[str, str], ...] = field(
        default=(),
        metadata=key(
            dict, 'a commit author\'s email to a Slack user ID: { "ann@acme.com" = "U0ANN" }'
        ),
    )

    def slack_id_of(self, email: str) -> str:
        return dict(self.people).get(email.lower(), "")


class UnknownEnvironment(KeyError):
    """A name that is not one of the configured environments (a KeyError, as a missing key)."""

    def __str__(self) -> str:  # KeyError's would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Config:
    repository: RepositoryConfig = field(metadata=key(dict, "the repository released"))
    slack: SlackConfig = field(metadata=key(dict, "where the bot talks"))
    environments: tuple[EnvironmentConfig, ...] = field(
        metadata=key(list, "in promotion order: a release candidate deploys to the first one")
    )
    gates: tuple[GateConfig, ...] = field(
        default=(), metadata=key(list, "automatic (command or check) and manual gates")
    )
    worker: WorkerConfig = field(default_factory=WorkerConfig, metadata=key(dict, "how jobs run"))
    approvals: dict[str, ApprovalPolicy] = field(
        default_factory=dict, metadata=key(dict, "a policy per environment: approvals to go in")
    )
    # Approvals a rollback needs; no approvers listed = the environment's approvers.
    rollback: ApprovalPolicy = field(
        default_factory=ApprovalPolicy, metadata=key(dict, "approvals a rollback needs")
    )
    # Approvals a waived gate needs; no approvers listed = the approvers of what the gate
    # guards. Never the one who asked for the waiver.
    waivers: ApprovalPolicy = field(
        default_factory=ApprovalPolicy, metadata=key(dict, "approvals a waived gate needs")
    )
    hotfix: HotfixConfig = field(
        default_factory=HotfixConfig, metadata=key(dict, "the emergency path")
    )
    monitoring: MonitoringConfig = field(
        default_factory=MonitoringConfig, metadata=key(dict, "how checks run and alert")
    )
    flags: FlagsConfig = field(
        default_factory=FlagsConfig, metadata=key(dict, "feature flags and how changes ship")
    )
    changes: ChangesConfig = field(
        default_factory=ChangesConfig, metadata=key(dict, "what a release lists of its changes")
    )
    github: GitHubTable = field(
        default_factory=GitHubTable, metadata=key(dict, "the repository the team's CI reports on")
    )
    # Who may start releases (/release rc and /release hotfix) and who may deploy to the last
    # environment (/release final, a hotfix's included, and Retry deploy there); () = anyone.
    # On the top level, so each service of a bot may have its own (bot.domain.fleet).
    requesters: tuple[str, ...] = field(
        default=(),
        metadata=key(
            list,
            "who may start releases (rc, hotfix): user (U…/W…) and group (S…) IDs; [] = anyone",
        ),
    )
    deployers: tuple[str, ...] = field(
        default=(),
        metadata=key(
            list,
            "who may deploy to the last environment (final, its retry): user and group IDs; "
            "[] = anyone",
        ),
    )
    # Which service of the bot this is (bot.domain.fleet): "" in the file = the repository's
    # name. Its Redis keys, clone and queue are its own, except for a bot of one service,
    # or the service that keeps the keys of the one-service bot it was (legacy_keys).
    service: str = field(
        default="", metadata=key(str, "the service's name; default: the repository's name")
    )
    legacy_keys: bool = field(
        default=False,
        metadata=key(bool, "this service keeps the Redis keys of the one-service bot it was"),
    )
    # Windows and freezes of the environments they list (the last one by default); with many
    # services, shared defaults for all of them (bot.domain.fleet).
    windows: tuple[WindowConfig, ...] = field(
        default=(), metadata=key(list, "deploy windows of the environments listed ([[windows]])")
    )
    freezes: tuple[FreezeConfig, ...] = field(
        default=(), metadata=key(list, "change freezes of the environments listed ([[freezes]])")
    )
    freeze: FreezePolicy = field(
        default_factory=FreezePolicy, metadata=key(dict, "freezes set from Slack (/release freeze)")
    )

    def rules_for(self, environment: str) -> Rules:
        """The windows and freezes of `environment`: its own, then those of [[windows]] and
        [[freezes]] that list it. UnknownEnvironment for a name that is none."""
        own = self.environment(environment)
        windows = (*own.windows, *(w for w in self.windows if environment in w.environments))
        freezes = (*own.freezes, *(f for f in self.freezes if environment in f.environments))
        return Rules(tuple(w.rule for w in windows), tuple(f.rule for f in freezes))

    @property
    def flags_environment(self) -> EnvironmentConfig:
        return (
            self.environment(self.flags.environment)
            if self.flags.environment
            else self.last_environment
        )

    def environment(self, name: str) -> EnvironmentConfig:
        for env in self.environments:
            if env.name == name:
                return env
        names = ", ".join(f"`{e.name}`" for e in self.environments)
        raise UnknownEnvironment(f"There is no environment `{name}`. Environments: {names}.")

    def check_environment(self, name: str) -> None:
        """Raises UnknownEnvironment (its message names the ones there are) unless `name` is
        one of the configured environments."""
        self.environment(name)

    @property
    def first_environment(self) -> EnvironmentConfig:
        return self.environments[0]

    def gate_env(self, gate: GateConfig) -> CommandEnv:
        """A gate's command gets its stage environment's env and pass_env, then its own."""
        return self.environment(gate.stage).command_env + gate.command_env

    def gates_for(self, stage: str) -> tuple[GateConfig, ...]:
        return tuple(g for g in self.gates if g.stage == stage)

    @property
    def last_environment(self) -> EnvironmentConfig:
        return self.environments[-1]

    def policy(self, environment: str) -> ApprovalPolicy:
        return self.approvals.get(environment, ApprovalPolicy())

    def override_policy(self) -> ApprovalPolicy:
        """The approvals an EMERGENCY override of a closed last environment needs:
        [freeze.override] (two by default), by its approvers or else the last environment's,
        never the one who asked."""
        usual = self.policy(self.last_environment.name)
        own = self.freeze.override
        return ApprovalPolicy(
            required=own.required,
            approvers=own.approvers or usual.approvers,
            allow_self_approval=False,
            valid_hours=usual.valid_hours,
        )

    def next_environment(self, name: str) -> EnvironmentConfig | None:
        names = [e.name for e in self.environments]
        i = names.index(name)
        return self.environments[i + 1] if i + 1 < len(names) else None

    def release_policy(self, kind: str, stage: str) -> ApprovalPolicy:
        """The approvals a release of `kind` needs past `stage`: a hotfix has its own count,
        with the usual approvers unless [hotfix] names others."""
        usual = self.gate_policy(stage)
        if kind != "hotfix":
            return usual
        own = self.hotfix.policy
        return dataclasses.replace(own, approvers=own.approvers or usual.approvers)

    def waiver_policy(self, kind: str, stage: str) -> ApprovalPolicy:
        """[waivers], with the approvers of what a gate of `stage` guards when it names none;
        never the one who asked (no self-approval), and valid as long as the release."""
        own = self.waivers
        approvers = own.approvers or self.release_policy(kind, stage).approvers
        return dataclasses.replace(
            own, approvers=approvers, allow_self_approval=False, valid_hours=float("inf")
        )

    def gate_policy(self, stage: str) -> ApprovalPolicy:
        """Manual gates of a stage approve the way into the next environment (the last
        stage's gates, into itself)."""
        target = self.next_environment(stage)
        return self.policy(target.name if target else stage)


# --- the tables of the file -------------------------------------------------------------------
# Most keys are fields above; these few are not (they shape a field, like `path` a check's
# url), so they are declared here, once each.

_COMMAND_ENV = keys_of(CommandEnv)
_POLICY_KEYS = ("required", "approvers", "allow_self_approval", "valid_hours")


def _policy_keys(*names: str, minimum: int = 1) -> dict[str, Key]:
    """An approval policy's keys as a table takes them; a hotfix and a flag change may need
    no approval (`minimum` 0), an environment at least one."""
    keys = keys_of(ApprovalPolicy, *names)
    keys["required"] = dataclasses.replace(keys["required"], ge=minimum)
    return keys


TABLES: dict[str, dict[str, Key]] = {
    "": keys_of(Config),
    "repository": keys_of(RepositoryConfig),
    "slack": keys_of(SlackConfig),
    "worker": keys_of(WorkerConfig),
    "environments[]": keys_of(EnvironmentConfig) | _COMMAND_ENV,
    "environments[].deploy": keys_of(GitHubDeployConfig),
    "environments[].windows[]": keys_of(WindowConfig, "kind", "cron", "duration", "timezone"),
    "environments[].freezes[]": keys_of(FreezeConfig, "from", "until", "reason", "timezone"),
    "environments[].checks[]": keys_of(CheckConfig)
    | {"path": Key(str, 'joined to the environment\'s url, like "/health"', required=False)},
    "gates[]": keys_of(GateConfig)
    | {"manual": Key(bool, "ticked by people (instead of command or check)", required=False)}
    | _COMMAND_ENV,
    "approvals.<environment>": _policy_keys(*_POLICY_KEYS),
    "rollback": _policy_keys("required", "approvers"),
    "waivers": _policy_keys("required", "approvers"),
    "hotfix": keys_of(HotfixConfig)
    | _policy_keys("required", "approvers", minimum=0)
    | {
        "allow_no_approvals": Key(
            bool,
            "must be true for required = 0, so nobody turns approvals off by accident",
            required=False,
        )
    },
    "monitoring": keys_of(MonitoringConfig),
    "flags": keys_of(FlagsConfig)
    | _COMMAND_ENV
    | _policy_keys("required", "approvers", "allow_self_approval", minimum=0),
    "changes": keys_of(ChangesConfig),
    "github": keys_of(GitHubTable),
    "windows[]": keys_of(WindowConfig),
    "freezes[]": keys_of(FreezeConfig),
    "freeze": keys_of(FreezePolicy),
    "freeze.override": _policy_keys("required", "approvers"),
}
"""Every table of the file (`[]`: each item of a list) and the keys it may hold."""


# --- reading a table --------------------------------------------------------------------------

_KIND_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}
_BAD = object()  # what _value gives for a value it refused (None is a value a key may hold)


class _Problems:
    """The mistakes found so far, in the order of the file's sections."""

    def __init__(self) -> None:
        self.found: list[Problem] = []

    def add(self, key: str, problem: str) -> None:
        self.found.append(Problem(key, problem))

    def mark(self) -> int:
        return len(self.found)

    def since(self, mark: int) -> bool:
        """Whether anything was wrong after `mark` (then what was read is not built)."""
        return len(self.found) > mark


def _read(where: str, raw: Any, keys: Mapping[str, Key], problems: _Problems) -> dict[str, Any]:
    """The keys of the table `raw` that are set and right; each mistake goes to `problems`
    (unknown keys first, then the declared ones in their order)."""
    if not isinstance(raw, dict):
        problems.add(where, f"expected a table, got {_describe(raw)}")
        return {}
    for name in raw:
        if name not in keys:
            known = ", ".join(sorted(keys))
            problems.add(_join(where, name), f"unknown key (known keys here: {known})")
    found: dict[str, Any] = {}
    for name, spec in keys.items():
        if name not in raw:
            if spec.required:
                problems.add(_join(where, name), "missing (required)")
            continue
        value = _value(_join(where, name), raw[name], spec, problems)
        if value is not _BAD:
            found[name] = value
    return found


def _refused(raw: Any, found: Mapping[str, Any]) -> set[str]:
    """The keys set in `raw` that were not read (wrong): rules between keys leave them be
    rather than judge a default the file did not ask for."""
    return set(raw) - set(found) if isinstance(raw, dict) else set()


def _value(where: str, value: Any, spec: Key, problems: _Problems) -> Any:
    """`value` as `spec` declares it (an integer is taken as a number), else _BAD, said why."""
    kind = spec.kind
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.add(where, f"expected a number, got {_describe(value)}")
            return _BAD
        try:
            value = float(value)
        except OverflowError:  # an integer of hundreds of digits
            problems.add(where, "expected a number, got an integer too large for one")
            return _BAD
        if not math.isfinite(value):  # nan, inf, and 1e400 (which TOML reads as inf)
            problems.add(where, f"expected a finite number, got {value}")
            return _BAD
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.add(where, f"expected an integer, got {_describe(value)}")
            return _BAD
    elif not isinstance(value, kind):
        problems.add(where, f"expected {_KIND_NAMES[kind]}, got {_describe(value)}")
        return _BAD
    if isinstance(value, str) and spec.nonempty and not value.strip():
        problems.add(where, "must not be empty")
        return _BAD
    if kind in (int, float) and (wrong := _out_of_bounds(value, spec)):
        problems.add(where, wrong)
        return _BAD
    return value


def _out_of_bounds(value: float, spec: Key) -> str:
    if spec.gt is not None and not value > spec.gt:
        plain = f"must be greater than {spec.gt:g}, got {_number(value)}"
    elif spec.ge is not None and not value >= spec.ge:
        plain = "must not be negative" if spec.ge == 0 else f"must be at least {spec.ge:g}"
    elif spec.lt is not None and not value < spec.lt:
        plain = f"must be below {spec.lt:g}"
    elif spec.le is not None and not value <= spec.le:
        plain = f"must be at most {spec.le:g}"
    else:
        return ""
    return spec.bounds.format(value=_number(value)) if spec.bounds else plain


def _number(value: float) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    # An integer of thousands of digits has no str() (Python's limit); nobody reads it anyway.
    return str(value) if abs(value) < 10**30 else "a number of more than 30 digits"


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'the string "{value}"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return f"{type(value).__name__} {_number(value)}"
    return f"{type(value).__name__} {value!r}"


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


# --- the file, section by section -------------------------------------------------------------
# Each section reads what it can and says every mistake; it builds its part only when that part
# had none (None otherwise). A rule that needs another section (a gate's stage) is skipped
# when that section could not be read, so one mistake is said once, not again at each use.


def parse_config(raw: Mapping[str, Any]) -> Config:
    """The config `raw` (as tomllib reads the file) describes, or a ConfigError listing every
    mistake in it."""
    problems = _Problems()
    top = _read("", raw, TABLES[""], problems)

    def section(name: str, left_out: Any) -> Any:
        """A top-level value to read: `left_out` when not set, None when it was wrong."""
        return top.get(name, None if name in raw else left_out)

    repository = _repository(section("repository", None), problems)
    slack = _table(SlackConfig, "slack", section("slack", None), problems)
    worker = _worker(section("worker", {}), problems)
    environments, env_names = _environments(section("environments", None), problems)
    gates, gate_ids = _gates(section("gates", []), env_names, problems)
    approvals = _approvals(section("approvals", {}), env_names, problems)
    rollback = _policy("rollback", section("rollback", {}), problems)
    waivers = _policy("waivers", section("waivers", {}), problems)
    hotfix = _hotfix(section("hotfix", {}), gate_ids, problems)
    if hotfix is not None and gates is not None and "hotfix" in raw:
        manual = [
            g.id
            for g in gates
            if not g.automatic and (hotfix.gates is None or g.id in hotfix.gates)
        ]
        if hotfix.policy.required > 0 and not manual:
            problems.add(
                "hotfix.gates",
                "a hotfix needs approvals (hotfix.required) but none "
                "of its gates is manual, so nobody could approve it; add a manual "
                "gate, or set required = 0 with allow_no_approvals = true",
            )
    monitoring = _monitoring(section("monitoring", {}), problems)
    requesters = _people("requesters", top.get("requesters", []), problems)
    deployers = _people("deployers", top.get("deployers", []), problems)
    flags = _flags(section("flags", {}), env_names, problems)
    changes = _changes(section("changes", {}), problems)
    github = _table(GitHubTable, "github", section("github", {}), problems)
    shared_windows = _windows("windows", section("windows", []), env_names, problems)
    shared_freezes = _freezes("freezes", section("freezes", []), env_names, problems)
    freeze = _freeze_policy(section("freeze", {}), problems)
    if (
        github is not None
        and github.repository
        and not GITHUB_REPOSITORY.fullmatch(github.repository)
    ):
        problems.add(
            "github.repository",
            f'must be "owner/name", like "acme/website", got "{github.repository}"',
        )
    if (
        environments is not None
        and any(e.deploy is not None for e in environments)
        and not (github is not None and github.repository)
    ):
        problems.add(
            "github.repository",
            "an environment deploys through GitHub (deploy = { ... }): say which "
            'repository, like [github] repository = "acme/website"',
        )
    if environments is not None and flags is not None and "flags" in raw:
        target = next(
            (e for e in environments if e.name == (flags.environment or environments[-1].name)),
            None,
        )
        via = target.deploy if target is not None else None
        if (
            via is not None
            and not flags.deploy_command
            and not (via.github_deployment or any("{flags_commit}" in t for _, t in via.inputs))
        ):
            problems.add(
                "flags.deploy_command",
                f"flag changes deploy to {target.name if target else ''}, which GitHub deploys "
                "with a workflow that is not given the flags: pass "
                '{flags_commit} in its inputs (like flags_commit = "{flags_commit}"), or '
                "set flags.deploy_command",
            )
    if (
        gates is not None
        and any(g.check == "github" for g in gates)
        and not (github is not None and github.repository)
    ):
        problems.add(
            "github.repository",
            'a gate checks CI on GitHub (check = "github"): say which repository, '
            'like [github] repository = "acme/website"',
        )
    if (
        problems.found
        or repository is None
        or slack is None
        or worker is None
        or environments is None
        or gates is None
        or approvals is None
        or rollback is None
        or waivers is None
        or hotfix is None
        or monitoring is None
        or flags is None
        or changes is None
        or github is None
        or shared_windows is None
        or shared_freezes is None
        or freeze is None
    ):
        raise ConfigError.of(problems.found)
    service = top.get("service", "")
    if "service" in top and not SERVICE_NAME.fullmatch(service):
        problems.add(
            "service",
            f'must be lowercase letters, digits, - or _ (like "website"), got "{service}"',
        )
        raise ConfigError.of(problems.found)
    return Config(
        service=service or service_name_of(repository.url),
        legacy_keys=top.get("legacy_keys", False),
        requesters=requesters,
        deployers=deployers,
        repository=repository,
        slack=slack,
        environments=environments,
        gates=gates,
        worker=worker,
        approvals=approvals,
        rollback=rollback,
        waivers=waivers,
        hotfix=hotfix,
        monitoring=monitoring,
        flags=flags,
        changes=changes,
        github=github,
        windows=shared_windows,
        freezes=shared_freezes,
        freeze=freeze,
    )


def _table(cls: type[_T], where: str, raw: Any, problems: _Problems) -> _T | None:
    """A table that has no rule beyond its keys' own."""
    if raw is None:
        return None
    mark = problems.mark()
    found = _read(where, raw, keys_of(cls), problems)
    return None if problems.since(mark) else cls(**found)


SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def service_name_of(url: str) -> str:
    """A service's name when the file gives none: its repository's, as a name may be
    (`git@github.com:acme/Web.Site.git` is `web-site`)."""
    last = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    last = last.removesuffix(".git").lower()
    name = re.sub(r"[^a-z0-9_-]+", "-", last).strip("-_")
    if not name or not name[0].isalpha():
        name = f"service-{name}" if name else "service"
    return name[:32].rstrip("-_")


_SCP_LIKE = re.compile(r"^(?:[\w.+-]+@)?[\w.-]+:(?!//)\S+$")  # git@github.com:acme/site.git
_URL_SCHEMES = ("https", "http", "ssh", "git", "git+ssh", "ssh+git")


def _git_url(url: str) -> bool:
    """Whether git can clone `url`: an absolute local path, file://, a URL with a host, or
    the scp-like user@host:path."""
    if url.startswith("/"):
        return True
    scheme, sep, rest = url.partition("://")
    if sep:
        if scheme == "file":
            return rest.startswith("/")
        host = rest.split("/", 1)[0]
        return scheme in _URL_SCHEMES and bool(host) and not any(c.isspace() for c in url)
    return bool(_SCP_LIKE.fullmatch(url))


def _repository(raw: Any, problems: _Problems) -> RepositoryConfig | None:
    if raw is None:
        return None
    mark = problems.mark()
    found = _read("repository", raw, TABLES["repository"], problems)
    if "url" in found and not _git_url(found["url"]):
        problems.add(
            "repository.url",
            "must be a URL git can use (https://…, ssh://…, git@host:path, file://…) or an "
            f'absolute local path, got "{found["url"]}"',
        )
    if "tag_prefix" in found and not TAG_PREFIX.fullmatch(found["tag_prefix"]):
        problems.add(
            "repository.tag_prefix",
            'may hold only letters, digits and . _ / - (at most 20), like "v"',
        )
    return None if problems.since(mark) else RepositoryConfig(**found)


def _worker(raw: Any, problems: _Problems) -> WorkerConfig | None:
    if raw is None:
        return None
    mark = problems.mark()
    found = _read("worker", raw, TABLES["worker"], problems)
    if "run_as" in found:
        _check_run_as(found["run_as"], problems)
    return None if problems.since(mark) else WorkerConfig(**found)


def _environments(
    raw: Any, problems: _Problems
) -> tuple[tuple[EnvironmentConfig, ...] | None, list[str] | None]:
    """The environments, and their names (None when one has no readable name, so that no
    other section calls a name unknown that is only unreadable)."""
    if raw is None:
        return None, None
    if not raw:
        problems.add("environments", "needs at least one environment (e.g. staging)")
        return None, None
    mark = problems.mark()
    envs: list[EnvironmentConfig] = []
    names: list[str] = []
    all_named = True
    for i, item in enumerate(raw):
        key = f"environments[{i}]"
        item_mark = problems.mark()
        found = _read(key, item, TABLES["environments[]"], problems)
        command_env = _command_env(key, found, problems)
        name = found.get("name")
        if name is None:
            all_named = False
        elif not ENV_NAME.fullmatch(name):
            problems.add(
                f"{key}.name",
                f'must be lowercase letters, digits, - or _ (like "staging"), got "{name}"',
            )
        elif name in names:
            problems.add(f"{key}.name", f'"{name}" is defined twice')
        if name is not None and name not in names:
            names.append(name)
        # A url that was refused is not "no url" to the checks that join it.
        url = None if "url" in _refused(item, found) else found.get("url", "")
        checks = _checks(key, url, found.pop("checks", []), problems)
        windows = _windows(f"{key}.windows", found.pop("windows", []), None, problems)
        freezes = _freezes(f"{key}.freezes", found.pop("freezes", []), None, problems)
        given = set(item) if isinstance(item, dict) else set()
        if "deploy" in found:
            found["deploy"] = _github_deploy(f"{key}.deploy", found["deploy"], problems)
        if isinstance(item, dict) and ("deploy_command" in given) == ("deploy" in given):
            problems.add(
                key,
                'needs either `deploy_command = "..."` (the bot runs it) or `deploy = { '
                'github_workflow = "deploy.yml" }` (GitHub runs it), not both'
                if given >= {"deploy_command", "deploy"}
                else 'needs `deploy_command = "..."` (the bot runs it in a checkout of the '
                'tag) or `deploy = { github_workflow = "deploy.yml" }` (GitHub runs it)',
            )
        if (
            not problems.since(item_mark)
            and command_env is not None
            and checks is not None
            and windows is not None
            and freezes is not None
        ):
            envs.append(
                EnvironmentConfig(
                    **found,
                    checks=checks,
                    command_env=command_env,
                    windows=windows,
                    freezes=freezes,
                )
            )
    return (None if problems.since(mark) else tuple(envs)), (names if all_named else None)


def _windows(
    where: str, raw: Any, env_names: list[str] | None, problems: _Problems
) -> tuple[WindowConfig, ...] | None:
    """The windows of an environment (`env_names` None) or of [[windows]] (which name the
    environments they apply to)."""
    if raw is None:
        return None
    table = "environments[].windows[]" if where.startswith("environments") else "windows[]"
    mark = problems.mark()
    found_windows: list[WindowConfig] = []
    for i, item in enumerate(raw):
        key = f"{where}[{i}]"
        item_mark = problems.mark()
        found = _read(key, item, TABLES[table], problems)
        if "kind" in found and found["kind"] not in ("allow", "deny"):
            problems.add(f"{key}.kind", f'must be "allow" or "deny", got "{found["kind"]}"')
        if "cron" in found:
            try:
                parse_cron(found["cron"])
            except CronError as exc:
                problems.add(f"{key}.cron", str(exc))
        if "duration" in found:
            try:
                found["duration"] = parse_duration(found["duration"])
            except ValueError as exc:
                problems.add(f"{key}.duration", str(exc))
        _timezone(key, found, problems)
        if table == "windows[]":
            found["environments"] = _applies_to(key, item, found, env_names, problems)
        if not problems.since(item_mark):
            found_windows.append(WindowConfig(**found))
    return None if problems.since(mark) else tuple(found_windows)


def _freezes(
    where: str, raw: Any, env_names: list[str] | None, problems: _Problems
) -> tuple[FreezeConfig, ...] | None:
    """The freezes of an environment (`env_names` None) or of [[freezes]]."""
    if raw is None:
        return None
    table = "environments[].freezes[]" if where.startswith("environments") else "freezes[]"
    mark = problems.mark()
    found_freezes: list[FreezeConfig] = []
    for i, item in enumerate(raw):
        key = f"{where}[{i}]"
        item_mark = problems.mark()
        found = _read(key, item, TABLES[table], problems)
        tz = _timezone(key, found, problems)
        if tz is not None:
            for name in ("from", "until"):
                if name in found:
                    found[name] = _moment(f"{key}.{name}", found[name], tz, problems)
        start, until = found.pop("from", None), found.get("until")
        if isinstance(start, datetime) and isinstance(until, datetime) and until <= start:
            problems.add(
                f"{key}.until",
                f"must be after from ({start:%Y-%m-%d %H:%M}), got {until:%Y-%m-%d %H:%M}",
            )
        if table == "freezes[]":
            found["environments"] = _applies_to(key, item, found, env_names, problems)
        if not problems.since(item_mark):
            found_freezes.append(FreezeConfig(start=start, **found))
    return None if problems.since(mark) else tuple(found_freezes)


def _freeze_policy(raw: Any, problems: _Problems) -> FreezePolicy | None:
    """`[freeze]`: its approvers are IDs, its time zone an IANA one."""
    if raw is None:
        return None
    mark = problems.mark()
    found = _read("freeze", raw, TABLES["freeze"], problems)
    if "timezone" in found:
        _timezone("freeze", found, problems)
    _approval_policy("freeze", {"approvers": found.get("approvers", [])}, problems)
    override = ApprovalPolicy(required=2)
    if "override" in found:
        read = _policy("freeze.override", {"required": 2, **found.pop("override")}, problems)
        override = read if read is not None else override
    if problems.since(mark):
        return None
    return FreezePolicy(
        **{**found, "approvers": tuple(found.get("approvers", ())), "override": override}
    )


def _timezone(key: str, found: dict[str, Any], problems: _Problems) -> ZoneInfo | None:
    """The zone `found` names (UTC when none), or None when it is no IANA zone (said)."""
    try:
        return zone(found.get("timezone", "UTC"))
    except ValueError as exc:
        problems.add(f"{key}.timezone", str(exc))
        return None


def _moment(key: str, value: Any, tz: ZoneInfo, problems: _Problems) -> datetime | None:
    """A freeze's `from` or `until`: a TOML date-time (local ones in `tz`), a TOML date
    (its midnight), or a string like "2026-12-20 09:00" (in `tz` unless it has an offset)."""
    moment: datetime | None = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
    if moment is None:
        problems.add(
            key,
            'expected a date and time like "2026-12-20 09:00" (in the timezone) or a TOML '
            f"date-time, got {_describe(value)}",
        )
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def _applies_to(
    key: str, raw: Any, found: dict[str, Any], env_names: list[str] | None, problems: _Problems
) -> tuple[str, ...]:
    """The environments a [[windows]] or [[freezes]] table applies to: those it lists, else
    the last one."""
    listed = found.get("environments")
    if listed is None:
        if isinstance(raw, dict) and "environments" in raw:
            return ()  # refused already
        return (env_names[-1],) if env_names else ()
    if not listed:
        problems.add(f"{key}.environments", "lists none; leave it out for the last one")
    names: list[str] = []
    for j, name in enumerate(listed):
        if not isinstance(name, str):
            problems.add(f"{key}.environments[{j}]", f"expected a string, got {_describe(name)}")
        elif env_names is not None and name not in env_names:
            known = ", ".join(env_names)
            problems.add(
                f"{key}.environments[{j}]", f'"{name}" is no environment (environments: {known})'
            )
        else:
            names.append(name)
    return tuple(names)


_WORKFLOW = re.compile(r"^(?:[A-Za-z0-9._-]{1,100}\.ya?ml|[0-9]{1,20})$")
_GIT_REF = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]{1,200}$")
_INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$")


def _github_deploy(key: str, raw: Any, problems: _Problems) -> GitHubDeployConfig | None:
    """An environment's `deploy = { ... }`: one way GitHub deploys, and what it is given."""
    mark = problems.mark()
    found = _read(key, raw, TABLES["environments[].deploy"], problems)
    given = set(raw) if isinstance(raw, dict) else set()
    workflow = found.get("github_workflow", "")
    deployment = found.get("github_deployment", False)
    if isinstance(raw, dict) and not ({"github_workflow", "github_deployment"} & given):
        problems.add(
            key,
            'say how GitHub deploys: github_workflow = "deploy.yml" (a workflow the bot '
            "dispatches) or github_deployment = true (a Deployment an executor runs)",
        )
    elif workflow and deployment:
        problems.add(
            f"{key}.github_deployment",
            "a deploy is either a workflow the bot dispatches or a Deployment; keep one",
        )
    if "github_workflow" in found and not _WORKFLOW.fullmatch(workflow):
        problems.add(
            f"{key}.github_workflow",
            f'must be a workflow file\'s name, like "deploy.yml", or its id, got "{workflow}"',
        )
    if (
        "ref" in found
        and found["ref"] not in ("tag", "branch")
        and not _GIT_REF.fullmatch(found["ref"])
    ):
        problems.add(
            f"{key}.ref",
            f'must be "tag", "branch" or a branch or tag name, got "{found["ref"]}"',
        )
    if "github_deployment" in given and not deployment and not workflow:
        problems.add(f"{key}.github_deployment", "must be true, or use github_workflow")
    correlation = found.get("correlation_input", "correlation_id")
    if "correlation_input" in found and not _INPUT_NAME.fullmatch(correlation):
        problems.add(
            f"{key}.correlation_input",
            f'must be an input\'s name (letters, digits, _ or -), got "{correlation}"',
        )
    inputs: dict[str, Any] = found.pop("inputs", {})
    if inputs and not workflow:
        problems.add(f"{key}.inputs", "only a workflow takes inputs (github_workflow)")
    for name, template in inputs.items():
        where = f"{key}.inputs.{name}"
        if not _INPUT_NAME.fullmatch(name):
            problems.add(where, "is not a workflow input's name (letters, digits, _ or -)")
        elif name == correlation:
            problems.add(where, f"the bot sets {name} itself: its id for the run")
        if not isinstance(template, str):
            problems.add(where, f"expected a string, got {_describe(template)}")
        elif unknown := unknown_placeholders(template):
            known = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
            problems.add(where, f"{{{unknown[0]}}} is not a placeholder (placeholders: {known})")
    # GitHub takes at most 25 inputs in a dispatch; the bot adds its correlation id.
    if len(inputs) > 24:
        problems.add(
            f"{key}.inputs",
            f"GitHub takes at most 25 inputs, the bot's id among them; got {len(inputs) + 1}",
        )
    if problems.since(mark):
        return None
    return GitHubDeployConfig(**found, inputs=tuple(inputs.items()))


def _checks(
    env_key: str, env_url: str | None, raw: list[Any], problems: _Problems
) -> tuple[CheckConfig, ...] | None:
    mark = problems.mark()
    checks: list[CheckConfig] = []
    names: list[str] = []
    for i, item in enumerate(raw):
        key = f"{env_key}.checks[{i}]"
        item_mark = problems.mark()
        found = _read(key, item, TABLES["environments[].checks[]"], problems)
        name = found.get("name")
        if name is not None:
            if not GATE_ID.fullmatch(name):
                problems.add(
                    f"{key}.name",
                    f'must be lowercase letters, digits, - or _ (like "health"), got "{name}"',
                )
            elif name in names:
                problems.add(f"{key}.name", f'"{name}" is defined twice')
            elif name in (DEPLOY_CHECK, OUTAGE_CHECK):
                problems.add(
                    f"{key}.name",
                    f'"{name}" is the name the bot gives its own incidents '
                    f"({DEPLOY_CHECK}: a failed deploy, {OUTAGE_CHECK}: all failing checks); "
                    'choose another, like "health"',
                )
            names.append(name)
        given = set(item) if isinstance(item, dict) else set()
        url: str | None = None
        if ("path" in given) == ("url" in given):
            if isinstance(item, dict):
                problems.add(
                    key,
                    'needs either `path = "/health"` (joined to the '
                    'environment\'s url) or a full `url = "https://…"`',
                )
        elif "path" in found:
            path = found["path"]
            if env_url == "":
                problems.add(
                    f"{key}.path",
                    "the environment has no `url` to join it to; "
                    "set the environment's url or give the check a full url",
                )
            if not path.startswith("/"):
                problems.add(f"{key}.path", f'must start with /, like "/health", got "{path}"')
            elif env_url:
                url = env_url.rstrip("/") + path
        elif "url" in found:
            url = found["url"]
        if url is not None and not url.startswith(("http://", "https://")):
            problems.add(
                f"{key}.url" if "url" in given else f"{env_key}.url",
                f'must be an http:// or https:// URL, got "{url}"',
            )
        expected = found.pop("json", {})
        for path, value in expected.items():
            if isinstance(value, dict | list):
                problems.add(
                    f"{key}.json.{path}",
                    "must be a string, number or "
                    'true/false; nest with dotted keys: "db.status" = "ok"',
                )
        found.pop("path", None)
        found.pop("url", None)
        if not problems.since(item_mark) and url is not None:
            checks.append(CheckConfig(**found, url=url, json=tuple(expected.items())))
    return None if problems.since(mark) else tuple(checks)


def _gates(
    raw: Any, env_names: list[str] | None, problems: _Problems
) -> tuple[tuple[GateConfig, ...] | None, list[str] | None]:
    """The gates, and their ids (None when one has no readable id)."""
    if raw is None:
        return None, None
    mark = problems.mark()
    gates: list[GateConfig] = []
    ids: list[str] = []
    all_named = True
    for i, item in enumerate(raw):
        key = f"gates[{i}]"
        item_mark = problems.mark()
        if isinstance(item, dict) and item.get("contexts") == "all":
            item = {**item, "contexts": ["all"]}  # `contexts = "all"` reads as the list
        found = _read(key, item, TABLES["gates[]"], problems)
        command_env = _command_env(key, found, problems)
        gate_id = found.get("id")
        if gate_id is None:
            all_named = False
        elif not GATE_ID.fullmatch(gate_id):
            problems.add(
                f"{key}.id",
                f'must be lowercase letters, digits, - or _ (like "e2e"), got "{gate_id}"',
            )
        elif gate_id in ids:
            problems.add(f"{key}.id", f'"{gate_id}" is defined twice')
        if gate_id is not None and gate_id not in ids:
            ids.append(gate_id)
        stage = found.get("stage")
        if stage is not None and env_names is not None and stage not in env_names:
            problems.add(
                f"{key}.stage",
                f'"{stage}" is not an environment (environments: {", ".join(env_names)})',
            )
        is_ci = found.get("check") == "github"
        contexts = found.get("contexts", ())
        if is_ci and not contexts:
            problems.add(
                f"{key}.contexts",
                'a "github" check needs the contexts that must pass, like ["ci/e2e"], or "all"',
            )
        if not is_ci and ("contexts" in found or "allow_failures" in found):
            problems.add(
                f"{key}.contexts" if "contexts" in found else f"{key}.allow_failures",
                'only a gate with check = "github" has CI contexts',
            )
        for name in ("contexts", "allow_failures"):
            for i, context in enumerate(found.get(name, ())):
                if not isinstance(context, str) or not context.strip() or len(context) > 200:
                    problems.add(
                        f"{key}.{name}[{i}]", f"expected a context's name, got {_describe(context)}"
                    )
            if name in found:
                found[name] = tuple(found[name])
        if "check" in found and found["check"] not in GATE_CHECKS:
            problems.add(
                f"{key}.check",
                f'"{found["check"]}" is not a check the bot '
                f"knows (checks: {', '.join(GATE_CHECKS)})",
            )
        # What the gate is, from what the file sets (a refused value still says which).
        given = set(item) if isinstance(item, dict) else set()
        manual = found.pop("manual", "manual" in _refused(item, found))
        if sum((bool(manual), "command" in given, "check" in given)) > 1:
            problems.add(
                f"{key}.command" if "command" in given else f"{key}.check",
                "a gate is either manual, or has a command, or a check; keep one of them",
            )
        elif isinstance(item, dict) and not (manual or "command" in given or "check" in given):
            problems.add(key, 'needs either `command = "..."` (automatic) or `manual = true`')
        if not problems.since(item_mark) and command_env is not None:
            gates.append(GateConfig(**found, command_env=command_env))
    return (None if problems.since(mark) else tuple(gates)), (ids if all_named else None)


_APPROVER = re.compile(r"^[UWS][A-Z0-9]{2,}$")


def _approvals(
    raw: Any, env_names: list[str] | None, problems: _Problems
) -> dict[str, ApprovalPolicy] | None:
    if raw is None:
        return None
    mark = problems.mark()
    policies: dict[str, ApprovalPolicy] = {}
    for env, table in raw.items():
        key = f"approvals.{env}"
        if env_names is not None and env not in env_names:
            problems.add(
                key, f'"{env}" is not an environment (environments: {", ".join(env_names)})'
            )
        policy = _policy(key, table, problems, TABLES["approvals.<environment>"])
        if policy is not None:
            policies[env] = policy
    return None if problems.since(mark) else policies


def _policy(
    key: str, raw: Any, problems: _Problems, keys: Mapping[str, Key] | None = None
) -> ApprovalPolicy | None:
    """A table that is an approval policy ([rollback], [waivers], [approvals.production])."""
    if raw is None:
        return None
    found = _read(key, raw, keys or TABLES[key], problems)
    return _approval_policy(key, found, problems)


def _approval_policy(
    key: str, found: Mapping[str, Any], problems: _Problems
) -> ApprovalPolicy | None:
    """The policy of the keys read in a table (only policy keys, their kinds checked)."""
    mark = problems.mark()
    approvers = found.get("approvers", ())
    for i, who in enumerate(approvers):
        if not isinstance(who, str) or not _APPROVER.fullmatch(who):
            problems.add(
                f"{key}.approvers[{i}]",
                "must be a Slack user ID (U… or "
                f"W…) or user-group ID (S…), got {_describe(who)}; names "
                "change, IDs do not",
            )
    if problems.since(mark):
        return None
    return ApprovalPolicy(**{**found, "approvers": tuple(approvers)})


def _people(key: str, ids: list[Any], problems: _Problems) -> tuple[str, ...]:
    """A list of who may do something (`requesters`, `deployers`): user and user-group IDs."""
    for i, who in enumerate(ids):
        if not isinstance(who, str) or not _APPROVER.fullmatch(who):
            problems.add(
                f"{key}[{i}]",
                f"must be a Slack user ID (U… or W…) or user-group ID (S…), got {_describe(who)}; "
                "names change, IDs do not",
            )
    return tuple(dict.fromkeys(who for who in ids if isinstance(who, str)))


def _hotfix(raw: Any, gate_ids: list[str] | None, problems: _Problems) -> HotfixConfig | None:
    if raw is None:
        return None
    mark = problems.mark()
    found = _read("hotfix", raw, TABLES["hotfix"], problems)
    for i, pattern in enumerate(found.get("branches", [])):
        if not isinstance(pattern, str) or not pattern.strip():
            problems.add(
                f"hotfix.branches[{i}]", 'must be a branch name or pattern like "hotfix/*"'
            )
    gates = found.get("gates")
    for i, gate in enumerate(gates or []):
        if gate_ids is not None and gate not in gate_ids:
            problems.add(
                f"hotfix.gates[{i}]",
                f"{_describe(gate)} is not a gate id (gates: {', '.join(gate_ids)})",
            )
    allowed = found.pop("allow_no_approvals", "allow_no_approvals" in _refused(raw, found))
    if found.get("required") == 0 and not allowed:
        problems.add(
            "hotfix.required",
            "0 approvals needs `allow_no_approvals = true` "
            "as well, so nobody turns approvals off by accident",
        )
    policy = _approval_policy(
        "hotfix", {k: found[k] for k in ("required", "approvers") if k in found}, problems
    )
    if problems.since(mark) or policy is None:
        return None
    return HotfixConfig(
        branches=tuple(found.get("branches", ())),
        gates=tuple(gates) if gates is not None else None,
        policy=policy,
    )


def _monitoring(raw: Any, problems: _Problems) -> MonitoringConfig | None:
    if raw is None:
        return None
    mark = problems.mark()
    found = _read("monitoring", raw, TABLES["monitoring"], problems)
    refused = _refused(raw, found)
    found["oncall"] = tuple(found.get("oncall", ()))
    for i, who in enumerate(found["oncall"]):
        if not isinstance(who, str) or not _APPROVER.fullmatch(who):
            problems.add(
                f"monitoring.oncall[{i}]",
                f"must be a Slack user ID (U… or W…) or user-group ID (S…), got {_describe(who)}",
            )
    # The rules between keys judge the values in force, defaults included, but not a
    # default that stands in for a value the file got wrong.
    monitoring = MonitoringConfig(**found)
    if not refused & {"warning_degradation_percent", "critical_degradation_percent"} and (
        monitoring.warning_degradation_percent >= monitoring.critical_degradation_percent
    ):
        problems.add(
            "monitoring.warning_degradation_percent",
            "must be below critical_degradation_percent "
            f"({monitoring.critical_degradation_percent:g})",
        )
    if (
        not refused & {"history", "error_rate_samples"}
        and monitoring.history < monitoring.error_rate_samples
    ):
        problems.add("monitoring.history", "must keep at least error_rate_samples results")
    return None if problems.since(mark) else monitoring


def _flags(raw: Any, env_names: list[str] | None, problems: _Problems) -> FlagsConfig | None:
    if raw is None:
        return None
    mark = problems.mark()
    found = _read("flags", raw, TABLES["flags"], problems)
    command_env = _command_env("flags", found, problems)
    path = found.get("path")
    if path is not None and (not path.strip() or path.startswith("/") or ".." in Path(path).parts):
        problems.add(
            "flags.path",
            f'must be a path inside the repository, like "data/feature-flags.toml", got "{path}"',
        )
    environment = found.get("environment")
    if environment is not None and env_names is not None and environment not in env_names:
        problems.add(
            "flags.environment",
            f'"{environment}" is not an environment (environments: {", ".join(env_names)})',
        )
    if "endpoint" in found and not found["endpoint"].startswith("/"):
        problems.add(
            "flags.endpoint", f'must start with /, like "/flags", got "{found["endpoint"]}"'
        )
    policy = _approval_policy(
        "flags",
        {k: found.pop(k) for k in ("required", "approvers", "allow_self_approval") if k in found},
        problems,
    )
    if problems.since(mark) or policy is None or command_env is None:
        return None
    return FlagsConfig(**found, command_env=command_env, policy=policy)


_PR_URL_HOST = re.compile(r"^https?://[^/\s]+")


def _pr_url_problem(url: str) -> str:
    """Why `url` is no PR link template ("" when it is one)."""
    if not _PR_URL_HOST.match(url):
        return (
            f'must be an http(s) URL, like "https://github.com/acme/site/pull/{{n}}", got "{url}"'
        )
    if url.count("{n}") != 1:
        return f'must hold {{n}} (where the pull request\'s number goes) once, got "{url}"'
    # Slack's link syntax (<url|text>) ends at | or >; a space ends a URL in Markdown.
    if any(c in url for c in "<>|\"'`") or any(c.isspace() or not c.isprintable() for c in url):
        return "must not hold spaces, quotes, <, > or |"
    if len(url) > 250:
        return "must be at most 250 characters"
    return ""


def _changes(raw: Any, problems: _Problems) -> ChangesConfig | None:
    if raw is None:
        return None
    mark = problems.mark()
    found = _read("changes", raw, TABLES["changes"], problems)
    if found.get("pr_url") and (wrong := _pr_url_problem(found["pr_url"])):
        problems.add("changes.pr_url", wrong)
    trailer = found.get("risk_trailer")
    if trailer is not None and not TRAILER.fullmatch(trailer):
        problems.add(
            "changes.risk_trailer",
            f'must be a trailer name (letters, digits and -, like "Risk"), got "{trailer}"',
        )
    people = found.get("people", {})
    found["people"] = ()
    if isinstance(people, dict):
        for email, who in people.items():
            if "@" not in email or any(c.isspace() for c in email):
                problems.add(f"changes.people.{email}", "must be an email address, as git has it")
            elif not isinstance(who, str) or not _USER_ID.fullmatch(who):
                problems.add(
                    f"changes.people.{email}",
                    f"must be a Slack user ID (U… or W…), got {_describe(who)}; names change, "
                    "IDs do not",
                )
        found["people"] = tuple(
            (email.lower(), who) for email, who in people.items() if isinstance(who, str)
        )
    found["paths"] = tuple(found.get("paths", ()))
    for i, pathspec in enumerate(found["paths"]):
        wrong = (
            pathspec_problem(pathspec)
            if isinstance(pathspec, str)
            else f"expected a string, got {_describe(pathspec)}"
        )
        if wrong:
            problems.add(f"changes.paths[{i}]", wrong)
    return None if problems.since(mark) else ChangesConfig(**found)


_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Names a command's environment never takes from the config: the bot's secrets and settings
# (a command is the released repository's code, untrusted), and the ones the bot sets itself.
_SECRET_PREFIXES = ("SLACK_", "REDIS", "RELEASEBOT_", "GITHUB_TOKEN", "GITHUB_APP_")
_RESERVED_PREFIXES = ("RELEASE_", "FLAG_", "FLAGS_")


def _env_name(key: str, name: Any, problems: _Problems) -> None:
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        problems.add(key, f"{_describe(name)} is not an environment variable name")
        return
    upper = name.upper()
    if upper.startswith(_SECRET_PREFIXES):
        problems.add(
            key,
            f'"{name}" is a secret or setting of the bot; deploy and gate commands never get it',
        )
    elif upper.startswith(_RESERVED_PREFIXES):
        problems.add(key, f'"{name}" is set by the bot itself (RELEASE_*, FLAG_*, FLAGS_*)')


def _command_env(key: str, found: dict[str, Any], problems: _Problems) -> CommandEnv | None:
    """The `env` and `pass_env` read in a table (taken out of `found`)."""
    mark = problems.mark()
    values: dict[str, Any] = found.pop("env", {})
    names: list[Any] = found.pop("pass_env", [])
    for name, value in values.items():
        where = f"{key}.env.{name}"
        _env_name(where, name, problems)
        if not isinstance(value, str):
            problems.add(where, f"expected a string, got {_describe(value)}")
        elif "\x00" in value:
            problems.add(where, "must not contain a NUL character")
    for i, name in enumerate(names):
        _env_name(f"{key}.pass_env[{i}]", name, problems)
    if problems.since(mark):
        return None
    return CommandEnv(tuple(values.items()), tuple(names))


def _check_run_as(user: str, problems: _Problems) -> None:
    if not user.strip():
        problems.add("worker.run_as", "must name a user, or be left out")
        return
    try:
        entry = pwd.getpwnam(user)
    except (KeyError, ValueError):  # ValueError: a name with a NUL character
        problems.add("worker.run_as", f'there is no user "{user}" on this machine')
        return
    if entry.pw_uid == 0:
        problems.add("worker.run_as", "must not be root: the point is another user")
    elif os.geteuid() != 0:
        problems.add(
            "worker.run_as",
            f"the bot runs as uid {os.geteuid()}, not root, "
            f'so it cannot run commands as "{user}"; leave run_as out (its '
            "commands then run as the bot's own user)",
        )


# --- where a key is in the file ---------------------------------------------------------------
# tomllib gives no positions, so the line of a key is found again in the text: table headers
# and `key =` lines, with the items of arrays of tables counted. Approximate (a key inside an
# inline table or a multi-line array is found at the line that opens it), right for the files
# people write.

_HEADER = re.compile(r"^\s*(\[\[?)([^\[\]]+)\]")
_BARE_OR_QUOTED = r"""(?:"[^"\n]*"|'[^'\n]*'|[A-Za-z0-9_-]+)"""
_ASSIGNMENT = re.compile(rf"^\s*({_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*=")
_DOTTED_PART = re.compile(r"""\"[^"]*"|'[^']*'|[^."']+""")
_STRING = re.compile(r""""(?:[^"\\\n]|\\.)*"|'[^'\n]*'""")
_KEY_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")

_Path = tuple[str | int, ...]


def _dotted(text: str) -> _Path:
    parts = (p.strip() for p in _DOTTED_PART.findall(text))
    return tuple(p.strip("\"'") for p in parts if p)


def _places(text: str) -> list[tuple[_Path, int]]:
    """Each table header and key of `text`, as a path (array items by index), with its line."""
    places: list[tuple[_Path, int]] = []
    arrays: dict[_Path, int] = {}  # an array of tables: the index of its last item so far
    table: _Path = ()
    depth = 0  # brackets a multi-line value left open
    quote = ""  # the multi-line string a line is in
    for number, line in enumerate(text.splitlines(), 1):
        if quote:
            if quote in line:
                quote = ""
            continue
        if depth > 0:
            depth += _opened(line)
            continue
        header = _HEADER.match(line)
        if header:
            table = ()
            names = _dotted(header.group(2))
            for i, name in enumerate(names):
                table += (name,)
                if header.group(1) == "[[" and i == len(names) - 1:
                    arrays[table] = arrays.get(table, -1) + 1
                    table += (arrays[table],)
                elif table in arrays:  # a table inside the last item of an array of tables
                    table += (arrays[table],)
            places.append((table, number))
            continue
        assignment = _ASSIGNMENT.match(line)
        if assignment:
            places.append((table + _dotted(assignment.group(1)), number))
            value = line[assignment.end() :]
            quote = next((q for q in ('"""', "'''") if value.count(q) == 1), "")
            depth = 0 if quote else max(_opened(value), 0)
    return places


def _opened(text: str) -> int:
    """Brackets and braces `text` opens less those it closes (strings and comments aside)."""
    code = _STRING.sub("", text).split("#", 1)[0]
    return code.count("[") + code.count("{") - code.count("]") - code.count("}")


def key_line(text: str, key: str) -> int | None:
    """The line of `text` where `key` (`environments[1].checks[0].url`) is: the key's own, else
    the nearest enclosing one (a missing key: its table's header), else the first line inside
    it; None when the file has nothing of it."""
    target: _Path = tuple(int(index) if index else name for index, name in _KEY_PART.findall(key))
    best: tuple[int, int] | None = None  # (length of the path matched, line)
    for path, number in _places(text):
        if target[: len(path)] == path and (best is None or len(path) > best[0]):
            best = (len(path), number)
    if best is not None:
        return best[1]
    return next((n for path, n in _places(text) if path[: len(target)] == target), None)


def with_lines(problems: Iterable[Problem], text: str) -> list[Problem]:
    """`problems` with the line of `text` where each key is."""
    return [p._replace(line=key_line(text, p.key)) for p in problems]


def read_config_file(path: str | Path) -> tuple[dict[str, Any], str]:
    """The TOML file at `path`, read (and its text, to find the line of a key), or a
    ConfigError saying why it could not be."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config", f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError("config", f"cannot read {path}: {reason}") from None
    try:
        return tomllib.loads(text), text
    except ValueError as exc:  # TOMLDecodeError, and an integer of thousands of digits
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None


def load_config(path: str | Path) -> Config:
    raw, text = read_config_file(path)
    try:
        return parse_config(raw)
    except ConfigError as exc:
        raise ConfigError.of(with_lines(exc.problems, text)) from None
