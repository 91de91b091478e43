"""The releasebot config file (TOML): loading and validation that names the key at fault."""

from __future__ import annotations

import dataclasses
import os
import pwd
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
GATE_ID = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
TAG_PREFIX = re.compile(r"^[A-Za-z0-9._/-]{0,20}$")
GATE_CHECKS = ("flags-ready",)  # gates the bot checks itself
# The names under which the monitor keeps an environment's failed deploy and its outage (the
# one incident of all its failing checks): no configured check may take them.
DEPLOY_CHECK = "deploy"
OUTAGE_CHECK = "outage"


class ConfigError(Exception):
    """A config problem; `key` is the dotted path of the key at fault."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class RepositoryConfig:
    url: str
    remote: str = "origin"
    branch: str = "main"
    tag_prefix: str = "v"


@dataclass(frozen=True)
class SlackConfig:
    channel: str


@dataclass(frozen=True)
class WorkerConfig:
    concurrency: int = 2
    # The environment lock expires this long after its holder stops renewing it (it renews every
    # third of it), so a dead worker frees the environment within this time.
    lock_ttl_seconds: float = 30.0
    # How often lost deploys are looked for (a deploy whose worker stopped heartbeating).
    reap_interval_seconds: float = 10.0
    # On shutdown, how long running jobs may go on before they are cancelled (and reported).
    shutdown_grace_seconds: float = 20.0
    # How long a worker keeps trying to record the outcome of a deploy while Redis is
    # unreachable, before it gives up and says so in the log and the thread.
    record_retry_seconds: float = 600.0
    # The user deploy and gate commands run as, when the bot runs as root ("" = the bot's
    # own user): then they cannot read the bot's memory, environment, state or config.
    run_as: str = ""


@dataclass(frozen=True)
class CommandEnv:
    """What the config passes to a command beyond the clean environment the bot builds:
    fixed values (`env = { NAME = "value" }`) and names copied from the bot's own environment
    (`pass_env = ["NPM_TOKEN"]`). Never a bot secret: validation refuses those names."""

    values: tuple[tuple[str, str], ...] = ()
    pass_env: tuple[str, ...] = ()

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

    name: str
    url: str  # absolute: the environment's url joined with `path`
    interval_seconds: float = 60.0
    timeout_seconds: float = 10.0
    status: int | None = 200
    max_response_ms: float | None = None
    json: tuple[tuple[str, object], ...] = ()  # (dotted path, expected value)
    body_contains: str | None = None
    # The JSON field holding the version the site runs, which must equal the version deployed
    # there by the bot (catches a deploy that did not really land).
    version_field: str | None = None


@dataclass(frozen=True)
class EnvironmentConfig:
    name: str
    deploy_command: str
    url: str = ""
    timeout_seconds: float = 900.0
    checks: tuple[CheckConfig, ...] = ()
    command_env: CommandEnv = field(default_factory=CommandEnv)


@dataclass(frozen=True)
class MonitoringConfig:
    """How checks run and when they alert (the defaults are Gatus's and the release doc's)."""

    tick_seconds: float = 5.0  # how often the scheduler looks for checks that are due
    concurrency: int = 50  # checks in flight at once
    failures_to_alert: int = 3  # consecutive failing results before an incident opens
    successes_to_resolve: int = 2  # consecutive good results before it resolves
    reminder_seconds: float = 1800.0  # at most this often, while nobody acknowledged
    oncall: tuple[str, ...] = ()  # user (U…) and user-group (S…) IDs mentioned when critical
    # Results kept as they are per check; older ones live on in per-version and per-window
    # aggregates (bot.domain.health.windows), so this needs to cover only what the rules read.
    history: int = 150
    error_rate_percent: float = 1.0
    error_rate_samples: int = 100  # the window the error rate is measured over
    latency_samples: int = 5  # recent results whose median is compared with the baseline
    warning_degradation_percent: float = 20.0
    critical_degradation_percent: float = 50.0
    degradation_floor_ms: float = 100.0  # slower by less than this is never a degradation
    window_seconds: float = 3600.0  # watched closely after each deploy of the last environment
    window_interval_seconds: float = 10.0  # check interval during that window


@dataclass(frozen=True)
class GateConfig:
    id: str
    name: str
    stage: str
    command: str | None = None
    timeout_seconds: float = 900.0
    check: str | None = None  # a check the bot runs itself: "flags-ready"
    command_env: CommandEnv = field(default_factory=CommandEnv)

    @property
    def automatic(self) -> bool:
        return self.command is not None or self.check is not None


@dataclass(frozen=True)
class ApprovalPolicy:
    """Who must approve a release before it goes into an environment."""

    required: int = 1  # distinct approvers
    approvers: tuple[str, ...] = ()  # Slack user IDs (U…/W…) and user-group IDs (S…); () = anyone
    allow_self_approval: bool = False
    valid_hours: float = 72.0

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(a for a in self.approvers if not a.startswith("S"))

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(a for a in self.approvers if a.startswith("S"))


@dataclass(frozen=True)
class HotfixConfig:
    """The emergency path: where hotfixes come from, their gates and their approvals."""

    branches: tuple[str, ...] = ()  # glob patterns, e.g. "hotfix/*"; else the release branch
    gates: tuple[str, ...] | None = None  # gate ids that apply; None = all gates
    policy: ApprovalPolicy = field(default_factory=ApprovalPolicy)


@dataclass(frozen=True)
class FlagsConfig:
    """Feature flags: the file in the released repository, and how changes to it ship."""

    path: str = "data/feature-flags.toml"
    environment: str = ""  # where flag changes deploy; "" = the last environment
    # Run instead of the environment's deploy command, in a checkout of the flag commit;
    # "" = the environment's own deploy of the version it runs, with the new flags file.
    deploy_command: str = ""
    endpoint: str = "/flags"  # on the environment's url: reports the flags it runs
    verify_seconds: float = 60.0  # how long the endpoint may take to report the change
    command_env: CommandEnv = field(default_factory=CommandEnv)  # for its deploy_command
    # Approvals for changes that show a feature to more people (enable, a higher
    # percentage, a ramp); switching off and lowering need none, so the kill switch is fast.
    policy: ApprovalPolicy = field(default_factory=ApprovalPolicy)


class UnknownEnvironment(KeyError):
    """A name that is not one of the configured environments (a KeyError, as a missing key)."""

    def __str__(self) -> str:  # KeyError's would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Config:
    repository: RepositoryConfig
    slack: SlackConfig
    environments: tuple[EnvironmentConfig, ...]
    gates: tuple[GateConfig, ...] = ()
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    approvals: dict[str, ApprovalPolicy] = field(default_factory=dict)
    # Approvals a rollback needs; no approvers listed = the environment's approvers.
    rollback: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    # Approvals a waived gate needs; no approvers listed = the approvers of what the gate
    # guards. Never the one who asked for the waiver.
    waivers: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    hotfix: HotfixConfig = field(default_factory=HotfixConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    flags: FlagsConfig = field(default_factory=FlagsConfig)

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


# --- validation -----------------------------------------------------------------------------
# Each table is described by {key: (kind, required)}; kinds are checked by _check_value.

_KIND_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


def _check_value(key: str, value: Any, kind: type) -> Any:
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"expected a number, got {_describe(value)}")
        return float(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {_describe(value)}")
        return value
    if not isinstance(value, kind):
        raise ConfigError(key, f"expected {_KIND_NAMES[kind]}, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'the string "{value}"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _table(key: str, raw: Any, schema: Mapping[str, tuple[type, bool]]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(key, f"expected a table, got {_describe(raw)}")
    for name in raw:
        if name not in schema:
            known = ", ".join(sorted(schema))
            raise ConfigError(_join(key, name), f"unknown key (known keys here: {known})")
    out: dict[str, Any] = {}
    for name, (kind, required) in schema.items():
        if name not in raw:
            if required:
                raise ConfigError(_join(key, name), "missing (required)")
            continue
        out[name] = _check_value(_join(key, name), raw[name], kind)
    return out


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(key, f"must be greater than 0, got {value:g}")


def _nonempty(key: str, value: str) -> None:
    if not value.strip():
        raise ConfigError(key, "must not be empty")


def parse_config(raw: dict[str, Any]) -> Config:
    top = {
        "repository": (dict, True),
        "slack": (dict, True),
        "environments": (list, True),
        "gates": (list, False),
        "worker": (dict, False),
        "approvals": (dict, False),
        "rollback": (dict, False),
        "waivers": (dict, False),
        "hotfix": (dict, False),
        "monitoring": (dict, False),
        "flags": (dict, False),
    }
    _table("", raw, top)

    repo = _table(
        "repository",
        raw["repository"],
        {
            "url": (str, True),
            "remote": (str, False),
            "branch": (str, False),
            "tag_prefix": (str, False),
        },
    )
    _nonempty("repository.url", repo["url"])
    for name in ("remote", "branch"):
        if name in repo:
            _nonempty(f"repository.{name}", repo[name])
    if "tag_prefix" in repo and not TAG_PREFIX.fullmatch(repo["tag_prefix"]):
        raise ConfigError(
            "repository.tag_prefix",
            'may hold only letters, digits and . _ / - (at most 20), like "v"',
        )

    slack = _table("slack", raw["slack"], {"channel": (str, True)})
    _nonempty("slack.channel", slack["channel"])

    worker = _table(
        "worker",
        raw.get("worker", {}),
        {
            "concurrency": (int, False),
            "lock_ttl_seconds": (float, False),
            "reap_interval_seconds": (float, False),
            "shutdown_grace_seconds": (float, False),
            "record_retry_seconds": (float, False),
            "run_as": (str, False),
        },
    )
    for name, value in worker.items():
        if name == "run_as":
            _check_run_as(value)
        elif name == "shutdown_grace_seconds":
            if value < 0:
                raise ConfigError("worker.shutdown_grace_seconds", "must not be negative")
        else:
            _positive(f"worker.{name}", value)

    envs: list[EnvironmentConfig] = []
    if not raw["environments"]:
        raise ConfigError("environments", "needs at least one environment (e.g. staging)")
    for i, item in enumerate(raw["environments"]):
        key = f"environments[{i}]"
        env = _table(
            key,
            item,
            {
                "name": (str, True),
                "deploy_command": (str, True),
                "url": (str, False),
                "timeout_seconds": (float, False),
                "checks": (list, False),
                "env": (dict, False),
                "pass_env": (list, False),
            },
        )
        env["command_env"] = _command_env(key, env.pop("env", {}), env.pop("pass_env", []))
        if not ENV_NAME.fullmatch(env["name"]):
            raise ConfigError(
                f"{key}.name",
                f'must be lowercase letters, digits, - or _ (like "staging"), got "{env["name"]}"',
            )
        if any(e.name == env["name"] for e in envs):
            raise ConfigError(f"{key}.name", f'"{env["name"]}" is defined twice')
        _nonempty(f"{key}.deploy_command", env["deploy_command"])
        if "timeout_seconds" in env:
            _positive(f"{key}.timeout_seconds", env["timeout_seconds"])
        env["checks"] = _checks(key, env.get("url", ""), env.get("checks", []))
        envs.append(EnvironmentConfig(**env))

    gates: list[GateConfig] = []
    env_names = [e.name for e in envs]
    for i, item in enumerate(raw.get("gates", [])):
        key = f"gates[{i}]"
        gate = _table(
            key,
            item,
            {
                "id": (str, True),
                "name": (str, True),
                "stage": (str, True),
                "command": (str, False),
                "manual": (bool, False),
                "check": (str, False),
                "timeout_seconds": (float, False),
                "env": (dict, False),
                "pass_env": (list, False),
            },
        )
        gate["command_env"] = _command_env(key, gate.pop("env", {}), gate.pop("pass_env", []))
        if not GATE_ID.fullmatch(gate["id"]):
            raise ConfigError(
                f"{key}.id",
                f'must be lowercase letters, digits, - or _ (like "e2e"), got "{gate["id"]}"',
            )
        if any(g.id == gate["id"] for g in gates):
            raise ConfigError(f"{key}.id", f'"{gate["id"]}" is defined twice')
        _nonempty(f"{key}.name", gate["name"])
        if gate["stage"] not in env_names:
            raise ConfigError(
                f"{key}.stage",
                f'"{gate["stage"]}" is not an environment (environments: {", ".join(env_names)})',
            )
        manual = gate.pop("manual", False)
        if "check" in gate and gate["check"] not in GATE_CHECKS:
            raise ConfigError(
                f"{key}.check",
                f'"{gate["check"]}" is not a check the bot '
                f"knows (checks: {', '.join(GATE_CHECKS)})",
            )
        if sum((manual, "command" in gate, "check" in gate)) > 1:
            raise ConfigError(
                f"{key}.command" if "command" in gate else f"{key}.check",
                "a gate is either manual, or has a command, or a check; keep one of them",
            )
        if not manual and "command" not in gate and "check" not in gate:
            raise ConfigError(key, 'needs either `command = "..."` (automatic) or `manual = true`')
        if "command" in gate:
            _nonempty(f"{key}.command", gate["command"])
        if "timeout_seconds" in gate:
            _positive(f"{key}.timeout_seconds", gate["timeout_seconds"])
        gates.append(GateConfig(**gate))

    approvals = _approvals(raw.get("approvals", {}), env_names)
    rollback = _policy(
        "rollback", raw.get("rollback", {}), {"required": (int, False), "approvers": (list, False)}
    )
    waivers = _policy(
        "waivers", raw.get("waivers", {}), {"required": (int, False), "approvers": (list, False)}
    )
    hotfix = _hotfix(raw.get("hotfix", {}), [g.id for g in gates])
    manual = [
        g.id for g in gates if not g.automatic and (hotfix.gates is None or g.id in hotfix.gates)
    ]
    if hotfix.policy.required > 0 and not manual and "hotfix" in raw:
        raise ConfigError(
            "hotfix.gates",
            "a hotfix needs approvals (hotfix.required) but none "
            "of its gates is manual, so nobody could approve it; add a manual "
            "gate, or set required = 0 with allow_no_approvals = true",
        )
    return Config(
        repository=RepositoryConfig(**repo),
        slack=SlackConfig(**slack),
        environments=tuple(envs),
        gates=tuple(gates),
        worker=WorkerConfig(**worker),
        approvals=approvals,
        rollback=rollback,
        waivers=waivers,
        hotfix=hotfix,
        monitoring=_monitoring(raw.get("monitoring", {})),
        flags=_flags(raw.get("flags", {}), env_names),
    )


def _flags(raw: Any, env_names: list[str]) -> FlagsConfig:
    found = _table(
        "flags",
        raw,
        {
            "path": (str, False),
            "environment": (str, False),
            "deploy_command": (str, False),
            "endpoint": (str, False),
            "verify_seconds": (float, False),
            "required": (int, False),
            "approvers": (list, False),
            "allow_self_approval": (bool, False),
            "env": (dict, False),
            "pass_env": (list, False),
        },
    )
    found["command_env"] = _command_env("flags", found.pop("env", {}), found.pop("pass_env", []))
    path = found.get("path", "data/feature-flags.toml")
    if not path.strip() or path.startswith("/") or ".." in Path(path).parts:
        raise ConfigError(
            "flags.path",
            f'must be a path inside the repository, like "data/feature-flags.toml", got "{path}"',
        )
    if "environment" in found and found["environment"] not in env_names:
        raise ConfigError(
            "flags.environment",
            f'"{found["environment"]}" is not an '
            f"environment (environments: {', '.join(env_names)})",
        )
    if "endpoint" in found and not found["endpoint"].startswith("/"):
        raise ConfigError(
            "flags.endpoint", f'must start with /, like "/flags", got "{found["endpoint"]}"'
        )
    if "verify_seconds" in found:
        _positive("flags.verify_seconds", found["verify_seconds"])
    policy_table = {
        k: found.pop(k) for k in ("required", "approvers", "allow_self_approval") if k in found
    }
    policy = _policy(
        "flags",
        policy_table,
        {
            "required": (int, False),
            "approvers": (list, False),
            "allow_self_approval": (bool, False),
        },
        minimum=0,
    )
    return FlagsConfig(policy=policy, **found)


def _checks(env_key: str, env_url: str, raw: list[Any]) -> tuple[CheckConfig, ...]:
    checks: list[CheckConfig] = []
    for i, item in enumerate(raw):
        key = f"{env_key}.checks[{i}]"
        found = _table(
            key,
            item,
            {
                "name": (str, True),
                "path": (str, False),
                "url": (str, False),
                "interval_seconds": (float, False),
                "timeout_seconds": (float, False),
                "status": (int, False),
                "max_response_ms": (float, False),
                "json": (dict, False),
                "body_contains": (str, False),
                "version_field": (str, False),
            },
        )
        if not GATE_ID.fullmatch(found["name"]):
            raise ConfigError(
                f"{key}.name",
                f'must be lowercase letters, digits, - or _ (like "health"), got "{found["name"]}"',
            )
        if any(c.name == found["name"] for c in checks):
            raise ConfigError(f"{key}.name", f'"{found["name"]}" is defined twice')
        if found["name"] in (DEPLOY_CHECK, OUTAGE_CHECK):
            raise ConfigError(
                f"{key}.name",
                f'"{found["name"]}" is the name the bot gives its own incidents '
                f"({DEPLOY_CHECK}: a failed deploy, {OUTAGE_CHECK}: all failing checks); "
                'choose another, like "health"',
            )
        if ("path" in found) == ("url" in found):
            raise ConfigError(
                key,
                'needs either `path = "/health"` (joined to the '
                'environment\'s url) or a full `url = "https://…"`',
            )
        if "path" in found:
            if not env_url:
                raise ConfigError(
                    f"{key}.path",
                    "the environment has no `url` to join it to; "
                    "set the environment's url or give the check a full url",
                )
            if not found["path"].startswith("/"):
                raise ConfigError(
                    f"{key}.path", f'must start with /, like "/health", got "{found["path"]}"'
                )
            url = env_url.rstrip("/") + found.pop("path")
        else:
            url = found.pop("url")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"{key}.url" if "url" in item else f"{env_key}.url",
                f'must be an http:// or https:// URL, got "{url}"',
            )
        for name in ("interval_seconds", "timeout_seconds", "max_response_ms"):
            if name in found:
                _positive(f"{key}.{name}", found[name])
        if "status" in found and not 100 <= found["status"] <= 599:
            raise ConfigError(
                f"{key}.status", f"must be an HTTP status (100-599), got {found['status']}"
            )
        expected = found.pop("json", {})
        for path, value in expected.items():
            if isinstance(value, dict | list):
                raise ConfigError(
                    f"{key}.json.{path}",
                    "must be a string, number or "
                    'true/false; nest with dotted keys: "db.status" = "ok"',
                )
        for name in ("body_contains", "version_field"):
            if name in found:
                _nonempty(f"{key}.{name}", found[name])
        checks.append(CheckConfig(url=url, json=tuple(expected.items()), **found))
    return tuple(checks)


def _monitoring(raw: Any) -> MonitoringConfig:
    found = _table(
        "monitoring",
        raw,
        {
            "tick_seconds": (float, False),
            "concurrency": (int, False),
            "failures_to_alert": (int, False),
            "successes_to_resolve": (int, False),
            "reminder_seconds": (float, False),
            "oncall": (list, False),
            "history": (int, False),
            "error_rate_percent": (float, False),
            "error_rate_samples": (int, False),
            "latency_samples": (int, False),
            "warning_degradation_percent": (float, False),
            "critical_degradation_percent": (float, False),
            "degradation_floor_ms": (float, False),
            "window_seconds": (float, False),
            "window_interval_seconds": (float, False),
        },
    )
    for name, value in found.items():
        if name in ("oncall", "degradation_floor_ms"):
            continue
        _positive(f"monitoring.{name}", value)
    if found.get("degradation_floor_ms", 0) < 0:
        raise ConfigError("monitoring.degradation_floor_ms", "must not be negative")
    if found.get("error_rate_percent", 1.0) >= 100:
        raise ConfigError("monitoring.error_rate_percent", "must be below 100")
    warning = found.get("warning_degradation_percent", 20.0)
    critical = found.get("critical_degradation_percent", 50.0)
    if warning >= critical:
        raise ConfigError(
            "monitoring.warning_degradation_percent",
            f"must be below critical_degradation_percent ({critical:g})",
        )
    if found.get("history", 150) < found.get("error_rate_samples", 100):
        raise ConfigError("monitoring.history", "must keep at least error_rate_samples results")
    oncall = found.get("oncall", [])
    for i, who in enumerate(oncall):
        if not isinstance(who, str) or not _APPROVER.fullmatch(who):
            raise ConfigError(
                f"monitoring.oncall[{i}]",
                f"must be a Slack user ID (U… or W…) or user-group ID (S…), got {_describe(who)}",
            )
    found["oncall"] = tuple(oncall)
    return MonitoringConfig(**found)


def _hotfix(raw: Any, gate_ids: list[str]) -> HotfixConfig:
    found = _table(
        "hotfix",
        raw,
        {
            "branches": (list, False),
            "gates": (list, False),
            "required": (int, False),
            "approvers": (list, False),
            "allow_no_approvals": (bool, False),
        },
    )
    for i, pattern in enumerate(found.get("branches", [])):
        if not isinstance(pattern, str) or not pattern.strip():
            raise ConfigError(
                f"hotfix.branches[{i}]", 'must be a branch name or pattern like "hotfix/*"'
            )
    gates = found.get("gates")
    for i, gate in enumerate(gates or []):
        if gate not in gate_ids:
            raise ConfigError(
                f"hotfix.gates[{i}]",
                f"{_describe(gate)} is not a gate id (gates: {', '.join(gate_ids)})",
            )
    allow_none = found.pop("allow_no_approvals", False)
    if found.get("required", 1) == 0 and not allow_none:
        raise ConfigError(
            "hotfix.required",
            "0 approvals needs `allow_no_approvals = true` "
            "as well, so nobody turns approvals off by accident",
        )
    policy_table = {k: found[k] for k in ("required", "approvers") if k in found}
    policy = _policy(
        "hotfix", policy_table, {"required": (int, False), "approvers": (list, False)}, minimum=0
    )
    return HotfixConfig(
        branches=tuple(found.get("branches", [])),
        gates=tuple(gates) if gates is not None else None,
        policy=policy,
    )


_APPROVER = re.compile(r"^[UWS][A-Z0-9]{2,}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Names a command's environment never takes from the config: the bot's secrets and settings
# (a command is the released repository's code, untrusted), and the ones the bot sets itself.
_SECRET_PREFIXES = ("SLACK_", "REDIS", "RELEASEBOT_")
_RESERVED_PREFIXES = ("RELEASE_", "FLAG_", "FLAGS_")


def _env_name(key: str, name: Any) -> str:
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise ConfigError(key, f"{_describe(name)} is not an environment variable name")
    upper = name.upper()
    if upper.startswith(_SECRET_PREFIXES):
        raise ConfigError(
            key,
            f'"{name}" is a secret or setting of the bot; deploy and gate commands never get it',
        )
    if upper.startswith(_RESERVED_PREFIXES):
        raise ConfigError(key, f'"{name}" is set by the bot itself (RELEASE_*, FLAG_*, FLAGS_*)')
    return name


def _command_env(key: str, values: dict[str, Any], names: list[Any]) -> CommandEnv:
    found: list[tuple[str, str]] = []
    for name, value in values.items():
        where = f"{key}.env.{name}"
        _env_name(where, name)
        if not isinstance(value, str):
            raise ConfigError(where, f"expected a string, got {_describe(value)}")
        if "\x00" in value:
            raise ConfigError(where, "must not contain a NUL character")
        found.append((name, value))
    passed = tuple(_env_name(f"{key}.pass_env[{i}]", n) for i, n in enumerate(names))
    return CommandEnv(tuple(found), passed)


def _check_run_as(user: str) -> None:
    if not user.strip():
        raise ConfigError("worker.run_as", "must name a user, or be left out")
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError("worker.run_as", f'there is no user "{user}" on this machine') from None
    if entry.pw_uid == 0:
        raise ConfigError("worker.run_as", "must not be root: the point is another user")
    if os.geteuid() != 0:
        raise ConfigError(
            "worker.run_as",
            f"the bot runs as uid {os.geteuid()}, not root, "
            f'so it cannot run commands as "{user}"; leave run_as out (its '
            "commands then run as the bot's own user)",
        )


def _approvals(raw: Any, env_names: list[str]) -> dict[str, ApprovalPolicy]:
    if not isinstance(raw, dict):
        raise ConfigError("approvals", f"expected a table, got {_describe(raw)}")
    policies: dict[str, ApprovalPolicy] = {}
    for env, table in raw.items():
        key = f"approvals.{env}"
        if env not in env_names:
            raise ConfigError(
                key, f'"{env}" is not an environment (environments: {", ".join(env_names)})'
            )
        policies[env] = _policy(
            key,
            table,
            {
                "required": (int, False),
                "approvers": (list, False),
                "allow_self_approval": (bool, False),
                "valid_hours": (float, False),
            },
        )
    return policies


def _policy(
    key: str, table: Any, schema: Mapping[str, tuple[type, bool]], minimum: int = 1
) -> ApprovalPolicy:
    found = _table(key, table, schema)
    if found.get("required", 1) < minimum:
        raise ConfigError(f"{key}.required", f"must be at least {minimum}")
    if "valid_hours" in found:
        _positive(f"{key}.valid_hours", found["valid_hours"])
    approvers = found.get("approvers", [])
    for i, who in enumerate(approvers):
        if not isinstance(who, str) or not _APPROVER.fullmatch(who):
            raise ConfigError(
                f"{key}.approvers[{i}]",
                "must be a Slack user ID (U… or "
                f"W…) or user-group ID (S…), got {_describe(who)}; names "
                "change, IDs do not",
            )
    found["approvers"] = tuple(approvers)
    return ApprovalPolicy(**found)


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config", f"file not found: {path}") from None
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
    return parse_config(raw)
