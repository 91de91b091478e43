"""`releasebot`: serve the bot in one or more roles, or check a config file."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from redis.exceptions import RedisError

from bot.adapters.process.runner import keep_memory_from_children
from bot.domain.config import Config, ConfigError
from bot.domain.fleet import load_services
from bot.domain.windows import Rules, next_open
from bot.runtime import logs
from bot.runtime.container import StateDirShared, clone_dir, state_prefix
from bot.runtime.fleet import Fleet
from bot.runtime.settings import Settings, SettingsError, config_path, github_config, unneeded
from bot.runtime.web import ROLES, Role, SocketModeError, serve

log = logging.getLogger("bot.runtime.cli")


SERVE_HELP = """\
Roles (--role):
  all        the Slack app, the deploy worker and the scheduler in one process (default)
  web        answers Slack (POST /slack/events) and enqueues work; run several behind a
             load balancer
  worker     runs candidates, deploys and gates from the Redis queue; run several
  scheduler  health checks (shared between scheduler replicas), flag ramps, lost deploys

Environment:
  SLACK_BOT_TOKEN        bot token (xoxb-...), every role
  SLACK_SIGNING_SECRET   signing secret, web and all over HTTP (not with Socket Mode)
  SLACK_APP_TOKEN        app-level token (xapp-...): connect in Socket Mode instead of HTTP
  REDIS_URL              redis://host:6379/0 or rediss:// (unset: an embedded Redis, for
                         trying only)
  REDIS_SENTINELS        host:port,host:port: the primary is the one these sentinels name
  REDIS_SENTINEL_MASTER  the name the sentinels monitor it by (with REDIS_SENTINELS)
  PORT                   the HTTP port when --port is not given (default 3000)
  LOG_LEVEL              DEBUG, INFO (default), WARNING, ERROR
  LOG_FORMAT             text (default on a terminal) or json (default otherwise)
  RELEASEBOT_CONFIG      the config file when --config is not given
The README's sections "Environment" and "Running it: roles, replicas and workers" say more.
"""


def version() -> str:
    try:
        return metadata.version("releasebot")
    except metadata.PackageNotFoundError:  # run from a source tree that was not installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="releasebot", description=__doc__)
    parser.add_argument("--version", action="version", version=f"releasebot {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser(
        "serve",
        help="run the bot",
        description="Run the bot in one role or all of them.",
        epilog=SERVE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve_cmd.add_argument(
        "--config", help="config file (default $RELEASEBOT_CONFIG or ./releasebot.toml)"
    )
    serve_cmd.add_argument("--port", type=int, help="HTTP port (default $PORT or 3000)")
    serve_cmd.add_argument("--host", default="0.0.0.0", help="HTTP address (default 0.0.0.0)")
    serve_cmd.add_argument(
        "--services",
        help="with several services: the worker runs the jobs of these only (web,api), for "
        "teams that keep deploy credentials apart",
    )
    serve_cmd.add_argument(
        "--role", choices=ROLES, default="all", help="all (default), web, worker or scheduler"
    )
    shell = sub.add_parser("shell", help="try the bot in a terminal, without Slack")
    shell.add_argument(
        "--config",
        help="config file (default $RELEASEBOT_CONFIG or ./releasebot.toml); not with --demo",
    )
    shell.add_argument(
        "--demo", action="store_true", help="make a sample project in a temporary folder and use it"
    )
    shell.add_argument("--demo-dir", help="make the sample project here instead, and keep it")
    shell.add_argument(
        "--script",
        help="play commands from this file and print the transcript (a pipe on stdin works too)",
    )
    check = sub.add_parser("check-config", help="validate the config file")
    check.add_argument(
        "--config", help="config file (default $RELEASEBOT_CONFIG or ./releasebot.toml)"
    )
    check.add_argument(
        "--online",
        action="store_true",
        help="also ask GitHub (GITHUB_TOKEN or the app) what the config needs of it",
    )
    report_cmd = sub.add_parser(
        "report",
        help="delivery figures (DORA) from the recorded releases (needs REDIS_URL)",
        description="Deployment frequency per environment, lead time for changes, change "
        "failure rate and time to restore, over a period, from the audit trail, production's "
        "history and the repository's commits.",
    )
    report_cmd.add_argument(
        "--config", help="config file (default $RELEASEBOT_CONFIG or ./releasebot.toml)"
    )
    report_cmd.add_argument(
        "--since",
        default="30d",
        help="from then on: an age like 30d or 12h, or a date (2026-11-01)",
    )
    report_cmd.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or json"
    )
    report_cmd.add_argument("--service", help="with several services: the one to report on")
    notes = sub.add_parser(
        "notes",
        help="release notes of a version, from git: its changes since the final tag before it",
    )
    notes.add_argument("version", help="a version or its tag: 0.21.0, v0.21.0, v0.21.0-rc.2")
    notes.add_argument(
        "--config", help="config file (default $RELEASEBOT_CONFIG or ./releasebot.toml)"
    )
    notes.add_argument(
        "--format", choices=("md", "json"), default="md", help="md (default) or json"
    )
    notes.add_argument("--service", help="with several services: the one the version is of")
    audit = sub.add_parser("audit", help="the audit trail (needs REDIS_URL)")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="{export}", required=True)
    export = audit_sub.add_parser("export", help="write the audit trail as JSON lines or CSV")
    export.add_argument(
        "--since",
        help="only entries from then on: 2026-11-01, 2026-11-01T12:00:00Z, a unix timestamp, "
        "an age like 7d, 12h, 30m, or the id of the last entry an earlier export wrote "
        "(1793491200000-0: goes on just after it)",
    )
    export.add_argument(
        "--format", choices=("jsonl", "csv"), default="jsonl", help="jsonl (default) or csv"
    )
    export.add_argument("--output", help="write to this file instead of stdout")
    export.add_argument(
        "--config", help="config file (default $RELEASEBOT_CONFIG or ./releasebot.toml)"
    )
    export.add_argument("--service", help="with several services: the one whose trail to export")
    return parser


def serve_port(given: int | None, env: Mapping[str, str]) -> int:
    """`--port`, else $PORT (as platforms that run containers set it), else 3000."""
    if given is not None:
        return given
    raw = env.get("PORT", "").strip()
    if not raw:
        return 3000
    if not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise SettingsError(f"PORT must be a TCP port number (0 to 65535), got {raw!r}")
    return int(raw)


def _load_all(path: str) -> tuple[Config, ...]:
    """Every service of the config, or every mistake in it on stderr, one a line
    (`file:line: key: problem`, the form editors jump from), and exit status 1."""
    try:
        return load_services(path)
    except ConfigError as exc:
        for problem in exc.problems:
            if problem.key == "config":  # the file as a whole: missing, unreadable, not TOML
                print(f"releasebot: config error in {path}: {problem.problem}", file=sys.stderr)
            else:
                where = f"{path}:{problem.line}" if problem.line else path
                print(f"{where}: {problem.key}: {problem.problem}", file=sys.stderr)
        raise SystemExit(1) from None


def _load(path: str, service: str | None = None) -> Config:
    """The config of one service: the only one, or the one named (`--service`)."""
    configs = _load_all(path)
    names = ", ".join(c.service for c in configs)
    if service is None:
        if len(configs) == 1:
            return configs[0]
        print(
            f"releasebot: {path} has several services ({names}): name one with --service",
            file=sys.stderr,
        )
        raise SystemExit(1)
    for config in configs:
        if config.service == service:
            return config
    print(f"releasebot: {path} has no service {service!r} (services: {names})", file=sys.stderr)
    raise SystemExit(1)


def check_config(path: str, online: bool = False) -> int:
    configs = _load_all(path)
    for config in configs:
        envs = " → ".join(e.name for e in config.environments)
        checks = sum(len(e.checks) for e in config.environments)
        named = f" service {config.service}:" if len(configs) > 1 else ""
        print(
            f"{path}:{named} OK ({len(config.environments)} environments: {envs}; "
            f"{len(config.gates)} gates; {checks} health checks; flags in {config.flags.path}, "
            f"deployed to {config.flags_environment.name})"
        )
        for env in config.environments:
            windows = config.rules_for(env.name).windows
            if windows and next_open(Rules(windows), datetime.now(UTC)) is None:
                # Windows recur: none open within 400 days is a mistake, not a long freeze.
                print(
                    f"{path}:{named} warning: environments {env.name!r}: its windows let no "
                    "change through within the next 400 days (a deny window covers every "
                    "allow window?); only an EMERGENCY override would promote to it",
                    file=sys.stderr,
                )
    if not online:
        return 0
    return max(check_online(path, config) for config in configs)


def check_online(path: str, config: Config) -> int:
    """`check-config --online`: each finding on a line; 1 when one names a problem."""
    from bot.runtime.online_check import check_online as ask_github

    try:
        github = github_config(os.environ)
    except SettingsError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    report = asyncio.run(ask_github(config, github))
    for line in report.ok:
        print(f"{path}: GitHub: OK: {line}")
    for line in report.notes:
        print(f"{path}: GitHub: note: {line}")
    for key, problem in report.problems:
        print(f"{path}: GitHub: {key}: {problem}", file=sys.stderr)
    return 1 if report.problems else 0


async def _serve(
    fleet: Fleet, role: Role, host: str, port: int, workers_for: set[str] | None = None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve(fleet, role, port, host=host, stop=stop, workers_for=workers_for)


def shell(args: argparse.Namespace) -> int:
    # The terminal demo is imported only here: serving the bot never loads it.
    try:
        from bot.devtools.demo import DemoSite, create_demo, free_port
        from bot.devtools.shell import run_shell
    except ImportError as exc:
        print(
            f"releasebot: the shell needs the development extra ({exc.name} is missing): "
            "pip install 'releasebot[dev]', or run scripts/dev.sh shell",
            file=sys.stderr,
        )
        return 2

    if (args.demo or args.demo_dir) and args.config:
        print(
            "releasebot: --config and --demo do not go together; the demo brings its own config",
            file=sys.stderr,
        )
        return 2
    lines = None
    if args.script:
        try:
            lines = Path(args.script).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            print(
                f"releasebot: cannot read --script {args.script}: {exc.strerror}", file=sys.stderr
            )
            return 2
    elif not sys.stdin.isatty():
        lines = sys.stdin.read().splitlines()
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    site = None
    with contextlib.ExitStack() as stack:
        if args.demo or args.demo_dir:
            root = (
                Path(args.demo_dir)
                if args.demo_dir
                else Path(
                    stack.enter_context(tempfile.TemporaryDirectory(prefix="releasebot-demo-"))
                )
            )
            if args.demo_dir and root.exists() and any(root.iterdir()):
                print(f"releasebot: --demo-dir {root} is not empty", file=sys.stderr)
                return 2
            port = free_port()
            demo = create_demo(root, port)
            site = DemoSite(demo, port)
            print(
                f"Demo project in {root}: remote {demo.remote}, environments in "
                f"{root / 'environments'}, site on http://127.0.0.1:{port}/staging/",
                file=sys.stderr,
            )
            configs = _load_all(str(demo.config_path))
            state_dir = root / "state"
        else:
            configs = _load_all(config_path(args.config))
            state_dir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="releasebot-shell-"))
            )
        try:
            asyncio.run(
                run_shell(
                    configs,
                    state_dir=state_dir,
                    redis_url=os.environ.get("REDIS_URL") or None,
                    lines=lines,
                    live=lines is None,
                    site=site,
                )
            )
        except KeyboardInterrupt:
            # Ctrl-C outside the prompt (starting up, a script): the shell has stopped the
            # bot on its way out; a traceback would only say where Python was.
            return 130
    return 0


def audit_export(args: argparse.Namespace) -> int:
    from bot.adapters.redis.audit import run_export

    service_prefix = ""
    if args.service is not None or args.config is not None:
        # The trail of one service: with several, each has its own (under svc:NAME:).
        path = config_path(args.config)
        configs = _load_all(path)
        config = _load(path, args.service)
        if len(configs) > 1 and not config.legacy_keys:
            service_prefix = state_prefix("", config, shared_keys=False)
    return run_export(
        since=args.since,
        fmt=args.format,
        output=args.output,
        environ=os.environ,
        service_prefix=service_prefix,
    )


def report(args: argparse.Namespace, path: str) -> int:
    """`releasebot report`: the figures on stdout, or a message on stderr and exit 2."""
    import time

    from bot.adapters.git_clone import GitClone
    from bot.adapters.redis.store import Store
    from bot.domain.delivery import as_text
    from bot.services.delivery_report import delivery_report, since_of

    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        print(
            "releasebot: set REDIS_URL to the Redis the bot uses (the trail is read there)",
            file=sys.stderr,
        )
        return 2
    configs = _load_all(path)
    config = _load(path, args.service)
    shared_keys = len(configs) == 1 or config.legacy_keys
    try:
        since = since_of(args.since, time.time())
    except ValueError as exc:
        print(f"releasebot: --since: {exc}", file=sys.stderr)
        return 2

    @dataclasses.dataclass
    class Sources:
        """What the report reads: the store, the clone, the config and the clock."""

        config: Config
        store: Store
        git: GitClone
        clock: Callable[[], float] = time.time

    async def run() -> str:
        from redis.asyncio import Redis

        redis = Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=30)
        state = Path(os.environ.get("RELEASEBOT_STATE_DIR") or ".releasebot")
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        repo = config.repository
        clone = clone_dir(state, config, shared_keys)
        git = GitClone(repo.url, clone, repo.remote, "", repo.tag_prefix)
        try:
            prefix = os.environ.get("RELEASEBOT_REDIS_PREFIX") or "releasebot:"
            store = Store(redis, state_prefix(prefix, config, shared_keys))
            found = await delivery_report(Sources(config, store, git), since)
        finally:
            await redis.aclose()
        if args.format == "json":
            return json.dumps(found.to_dict(), indent=2)
        return as_text(found, [e.name for e in config.environments])

    try:
        print(asyncio.run(run()))
    except (OSError, RedisError) as exc:
        print(f"releasebot: reading the recorded releases failed: {exc}", file=sys.stderr)
        return 2
    return 0


def release_notes(args: argparse.Namespace, path: str) -> int:
    """`releasebot notes VERSION`: Markdown (or JSON) on stdout, from git alone."""
    from bot.adapters import git_clone
    from bot.domain.changes import as_json, as_markdown
    from bot.domain.versions import parse_tag
    from bot.services.ports import GitError

    config = _load(path, args.service)
    repo = config.repository
    tag = (
        args.version if args.version.startswith(repo.tag_prefix) else repo.tag_prefix + args.version
    )
    wanted = parse_tag(tag, repo.tag_prefix)
    if wanted is None:
        print(f"releasebot: {args.version!r} is not a version of this repository", file=sys.stderr)
        return 2
    state = Path(os.environ.get("RELEASEBOT_STATE_DIR") or ".releasebot")
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    clone = state / "repo"
    try:
        git_clone.sync_tags(repo.url, clone, repo.remote)
        tags = git_clone.version_tags(clone, repo.tag_prefix)
    except GitError as exc:
        print(f"releasebot: reading {repo.url} failed: {exc}", file=sys.stderr)
        return 2
    if tag not in tags:
        print(f"releasebot: the repository has no tag {tag}", file=sys.stderr)
        return 2
    earlier = [
        (parsed.version, name)
        for name in tags
        if (parsed := parse_tag(name, repo.tag_prefix)) is not None
        and not parsed.version.prerelease
        and parsed.version < wanted.version
    ]
    base_tag = max(earlier)[1] if earlier else ""
    cfg = config.changes
    try:
        found = git_clone.changes_between(
            clone,
            tags[base_tag] if base_tag else "",
            tags[tag],
            first_parent=cfg.first_parent,
            paths=cfg.paths,
            risk_trailer=cfg.risk_trailer,
        )
    except GitError as exc:
        print(f"releasebot: reading the changes of {tag} failed: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps({"version": tag, "since": base_tag or None, **as_json(found)}, indent=2))
    else:
        since = f" (since {base_tag})" if base_tag else ""
        print(f"# {tag}{since}\n\n{as_markdown(found, cfg.pr_url)}", end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    # First: before any secret is read, nothing of this process is readable by the commands
    # it will run as the same user.
    keep_memory_from_children()
    args = _parser().parse_args(argv)
    if args.command == "audit":
        return audit_export(args)
    path = config_path(args.config)
    if args.command == "report":
        return report(args, path)
    if args.command == "notes":
        return release_notes(args, path)
    if args.command == "check-config":
        return check_config(path, online=args.online)
    if args.command == "shell":
        return shell(args)
    try:
        logs.configure()
        port = serve_port(args.port, os.environ)
        settings = Settings.from_env(role=args.role)
    except (SettingsError, logs.LogSettingError) as exc:
        print(f"releasebot: {exc}", file=sys.stderr)
        return 2
    configs = _load_all(path)
    names = [c.service for c in configs]
    served = [w.strip() for w in (args.services or "").split(",") if w.strip()]
    if unknown := [w for w in served if w not in names]:
        print(
            f"releasebot: --services names {', '.join(unknown)}, not a service of {path} "
            f"(services: {', '.join(names)})",
            file=sys.stderr,
        )
        return 2
    # Read once into the settings: left in the environment, Bolt would read the token again
    # (and warn that the client given makes it unused).
    os.environ.pop("SLACK_BOT_TOKEN", None)
    for name in unneeded(os.environ, args.role):
        log.warning(
            "%s is set, but the %s role does not use it: leave it out of this role's environment",
            name,
            args.role,
        )
    if (
        args.role in ("all", "worker")
        and os.geteuid() == 0
        and not all(c.worker.run_as for c in configs)
    ):
        log.warning(
            "running as root with deploy and gate commands as root too: they can read "
            "this process's secrets through /proc. Set worker.run_as to another user "
            "(see README: Security model)"
        )
    # After the warnings about its environment: an operator (and a test) knows from this line
    # that the role is past its checks.
    log.info("starting the %s role", args.role)
    embedded = None
    if settings.redis_target is None:
        try:
            from bot.devtools.embedded_redis import WARNING, EmbeddedRedis
        except ImportError:
            print(
                "releasebot: REDIS_URL is not set, and the embedded Redis for trying the bot "
                "is not installed (pip install 'releasebot[dev]'). Production needs a real "
                "Redis: set REDIS_URL=redis://host:6379/0",
                file=sys.stderr,
            )
            return 2
        embedded = EmbeddedRedis()
        settings = dataclasses.replace(settings, redis_url=embedded.start(), embedded_redis=True)
        print(WARNING, file=sys.stderr)
    try:
        fleet = Fleet.create(settings, configs)
        asyncio.run(_serve(fleet, args.role, args.host, port, set(served) or None))
    except (SocketModeError, StateDirShared) as exc:
        print(f"releasebot: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the port is taken
        print(f"releasebot: cannot serve on {args.host}:{port}: {exc.strerror}", file=sys.stderr)
        return 2
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
