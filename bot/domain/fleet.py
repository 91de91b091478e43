"""Many services from one bot: the `[[services]]` of the config file, each a whole config.

A file without `services` is one service, as it always was (named by `service`, else by its
repository). With `services` (a list of tables with a `name`, or `[services.NAME]` tables),
each service is the top level of the file with its own table laid over it: top-level tables
are shared defaults, a service's keys win, tables merge key by key (one `[approvals.production]`
for all, one service asking for more approvals), and lists (environments, gates, checks) are
the service's own when it gives them. Each service is then read and checked as a config of
its own, its mistakes named under its key (`services.web.environments[0].name`).

Between services: names are unique, no two post to one channel (a channel is bound to the
service it posts in, so a click or a command there is that service's), two services
releasing one repository need different tag prefixes (their tags would collide), and at most
one keeps the Redis keys of the one-service bot it was (`legacy_keys`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bot.domain.config import (
    SERVICE_NAME,
    Config,
    ConfigError,
    Problem,
    parse_config,
    read_config_file,
    with_lines,
)


def _merged(defaults: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """`own` laid over `defaults`: tables merge key by key, anything else is replaced."""
    merged = dict(defaults)
    for name, value in own.items():
        if isinstance(value, dict) and isinstance(merged.get(name), dict):
            merged[name] = _merged(merged[name], value)
        else:
            merged[name] = value
    return merged


def _service_tables(raw: Any) -> tuple[list[tuple[str, str, Any]], list[Problem]]:
    """(where in the file, its name, its table) of each service, and what is wrong."""
    found: list[tuple[str, str, Any]] = []
    problems: list[Problem] = []
    if isinstance(raw, list):
        for i, table in enumerate(raw):
            where = f"services[{i}]"
            if not isinstance(table, dict):
                problems.append(Problem(where, "expected a table ([[services]])"))
                continue
            name = table.get("name")
            if not isinstance(name, str):
                problems.append(Problem(f"{where}.name", "missing: every service has a name"))
                continue
            found.append((where, name, {k: v for k, v in table.items() if k != "name"}))
    elif isinstance(raw, dict):
        for name, table in raw.items():
            where = f"services.{name}"
            if not isinstance(table, dict):
                problems.append(Problem(where, "expected a table ([services.NAME])"))
                continue
            if "name" in table and table["name"] != name:
                problems.append(Problem(f"{where}.name", f'the table names it "{name}" already'))
                continue
            found.append((where, name, {k: v for k, v in table.items() if k != "name"}))
    else:
        problems.append(
            Problem(
                "services", "expected [[services]] tables (each with a name) or [services.NAME]"
            )
        )
    if not found and not problems:
        problems.append(Problem("services", "lists no service; leave it out for a single one"))
    return found, problems


def parse_services(raw: Mapping[str, Any]) -> tuple[Config, ...]:
    """Every service the file `raw` describes (one, without `services`), or a ConfigError
    listing every mistake of every service."""
    if "services" not in raw:
        return (parse_config(raw),)
    defaults = {k: v for k, v in raw.items() if k != "services"}
    tables, problems = _service_tables(raw["services"])
    configs: list[Config] = []
    for where, name, table in tables:
        if not SERVICE_NAME.fullmatch(name):
            problems.append(
                Problem(where, f'"{name}" is no service name: lowercase letters, digits, - or _')
            )
            continue
        if "service" in table:
            problems.append(Problem(f"{where}.service", "a service is named by its `name`"))
            continue
        try:
            config = parse_config(_merged(defaults, table) | {"service": name})
        except ConfigError as exc:
            problems.extend(_under(where, table, p) for p in exc.problems)
            continue
        configs.append(config)
    problems.extend(_between(tables, configs))
    if problems:
        raise ConfigError.of(problems)
    return tuple(configs)


def _under(where: str, table: Mapping[str, Any], problem: Problem) -> Problem:
    """A mistake in a service's config, named where it is: in the service's table when the
    service set that section, else at the top level (a shared default), said for which."""
    section = problem.key.split(".", 1)[0].split("[", 1)[0]
    # A key with a dot in its own name (`"x.y" = 1`, unknown) is the service's as it is.
    if section in table or problem.key in table:
        return problem._replace(key=f"{where}.{problem.key}")
    return problem._replace(problem=f"{problem.problem} (in {where}, from the shared defaults)")


def _between(tables: list[tuple[str, str, Any]], configs: list[Config]) -> list[Problem]:
    """The rules between services."""
    problems: list[Problem] = []
    where = {name: place for place, name, _ in tables}
    seen: dict[str, str] = {}
    for place, name, _ in tables:
        if name in seen:
            problems.append(Problem(f"{place}.name", f'"{name}" is defined twice'))
        seen.setdefault(name, place)
    channels: dict[str, str] = {}
    repositories: dict[tuple[str, str], str] = {}
    for config in configs:
        place = where[config.service]
        channel = config.slack.channel.lstrip("#").lower()
        if channel in channels:
            problems.append(
                Problem(
                    f"{place}.slack.channel",
                    f"{config.slack.channel} is {channels[channel]}'s channel already; each "
                    "service posts in a channel of its own (commands and clicks there are its)",
                )
            )
        channels.setdefault(channel, config.service)
        tagged = (
            config.repository.url.rstrip("/").removesuffix(".git"),
            config.repository.tag_prefix,
        )
        if tagged in repositories:
            problems.append(
                Problem(
                    f"{place}.repository.tag_prefix",
                    f"{repositories[tagged]} releases this repository with the same tag prefix "
                    f'"{config.repository.tag_prefix}": give each service its own, like '
                    f'"{config.service}/v"',
                )
            )
        repositories.setdefault(tagged, config.service)
    # A service word after a sub-command is read before an environment's name: a service
    # named like an environment would take `/release lock staging` for itself.
    environments = {e.name for config in configs for e in config.environments}
    for config in configs:
        if config.service in environments:
            problems.append(
                Problem(
                    f"{where[config.service]}.name",
                    f'"{config.service}" is also an environment\'s name; commands could not '
                    "tell them apart: name the service otherwise",
                )
            )
    legacy = [c.service for c in configs if c.legacy_keys]
    if len(legacy) > 1:
        problems.append(
            Problem(
                f"{where[legacy[1]]}.legacy_keys",
                f"only one service keeps the one-service bot's Redis keys ({legacy[0]} does)",
            )
        )
    return problems


def load_services(path: str | Path) -> tuple[Config, ...]:
    """The services of the config file at `path`, or a ConfigError naming every mistake
    with its line."""
    raw, text = read_config_file(path)
    try:
        return parse_services(raw)
    except ConfigError as exc:
        raise ConfigError.of(with_lines(exc.problems, text)) from None
