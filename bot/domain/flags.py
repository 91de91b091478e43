"""The team's feature flags file (`data/feature-flags.toml`): reading it, and changing one flag
without disturbing the rest (tomlkit keeps comments, order and formatting). No I/O here.

    [flags.new_infrastructure]
    enabled = false
    description = "The new CDN and load balancers"
    rollout_percentage = 0
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import tomlkit
from tomlkit.exceptions import TOMLKitError

FLAG_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

Operation = Literal["set", "enable", "disable", "create"]
OPERATIONS: tuple[Operation, ...] = ("set", "enable", "disable", "create")


def as_operation(text: str) -> Operation:
    """`text` as an operation (a stored request names one); ValueError if it is none."""
    for operation in OPERATIONS:
        if text == operation:
            return operation
    raise ValueError(f"{text!r} is not a flag operation")


class FlagsError(Exception):
    """The flags file or the requested change is wrong; the message says what and how."""


@dataclass(frozen=True)
class Flag:
    name: str
    enabled: bool
    rollout_percentage: int
    description: str = ""

    @property
    def summary(self) -> str:
        state = "on" if self.enabled else "off"
        return f"{state}, {self.rollout_percentage}%"


@dataclass(frozen=True)
class FlagChange:
    operation: Operation
    name: str
    percentage: int | None = None  # for set
    description: str = ""  # for create


def read_flags(text: str, path: str = "data/feature-flags.toml") -> dict[str, Flag]:
    """Every flag of the file, or FlagsError naming what is malformed."""
    document = _parse(text, path)
    return {name: _flag(name, table, path) for name, table in _table(document, path).items()}


def _parse(text: str, path: str) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        raise FlagsError(
            f"`{path}` in the repository is not valid TOML ({exc}); fix it "
            "there first. I changed nothing."
        ) from None


def _table(document: tomlkit.TOMLDocument, path: str) -> Any:
    flags = document.get("flags", {})
    if not isinstance(flags, dict):
        raise FlagsError(
            f"`flags` in `{path}` must be a table of flags, like "
            "`[flags.new_infrastructure]`. I changed nothing."
        )
    return flags


def _flag(name: str, table: Any, path: str) -> Flag:
    where = f"`flags.{name}` in `{path}`"
    if not isinstance(table, dict):
        raise FlagsError(
            f"{where} must be a table with `enabled` and `rollout_percentage`. I changed nothing."
        )
    enabled = table.get("enabled", False)
    percentage = table.get("rollout_percentage", 0)
    if not isinstance(enabled, bool):
        raise FlagsError(f"{where}: `enabled` must be true or false. I changed nothing.")
    if (
        isinstance(percentage, bool)
        or not isinstance(percentage, int)
        or not 0 <= percentage <= 100
    ):
        raise FlagsError(
            f"{where}: `rollout_percentage` must be a whole number from 0 to "
            "100. I changed nothing."
        )
    description = table.get("description", "")
    return Flag(
        name=name, enabled=enabled, rollout_percentage=int(percentage), description=str(description)
    )


def apply(text: str, change: FlagChange, path: str = "data/feature-flags.toml") -> str:
    """The file's text with `change` made, everything else as it was."""
    flags = read_flags(text, path)  # refuses a malformed file before touching anything
    document = _parse(text, path)
    if change.operation == "create":
        if change.name in flags:
            raise FlagsError(f"`{change.name}` already exists ({flags[change.name].summary}).")
        if "flags" not in document:
            document["flags"] = tomlkit.table(is_super_table=True)
        table = tomlkit.table()
        table["enabled"] = False
        table["description"] = change.description
        table["rollout_percentage"] = 0
        document["flags"][change.name] = table
        return tomlkit.dumps(document)
    if change.name not in flags:
        known = ", ".join(f"`{n}`" for n in sorted(flags)) or "none yet"
        raise FlagsError(
            f"There is no flag `{change.name}` (flags: {known}). "
            f'`/flag create {change.name} --description "…"` makes one.'
        )
    table = document["flags"][change.name]
    if change.operation == "enable":
        table["enabled"] = True
    elif change.operation == "disable":
        table["enabled"] = False
    elif change.operation == "set":
        # Only the percentage: a flag someone switched off stays off until enabled again.
        table["rollout_percentage"] = change.percentage
    return tomlkit.dumps(document)


def check_request(text: str, change: FlagChange, path: str = "data/feature-flags.toml") -> None:
    """Refuse (FlagsError) a change a person asks for that `apply` would refuse, or that
    would change nothing: a kill switch pressed twice, or a percentage set again, makes no
    empty commit and no deploy, and the person hears that it already is so. (A ramp's step
    or a retried commit may find the flag so already, and is not refused.)"""
    changed = apply(text, change, path)
    if change.operation == "create":
        return
    before = read_flags(text, path)[change.name]
    if read_flags(changed, path)[change.name] == before:
        raise FlagsError(
            f"`{change.name}` is already {before.summary}: nothing to change, so I made no "
            "commit and no deploy."
        )


def raises_exposure(before: Flag | None, change: FlagChange) -> bool:
    """Whether the change shows a feature to more people (what needs approval by default)."""
    if change.operation == "enable":
        return before is not None and not before.enabled and before.rollout_percentage > 0
    if change.operation == "set":
        return (
            before is not None
            and before.enabled
            and (change.percentage or 0) > before.rollout_percentage
        )
    return False


def site_report(body: str, name: str, expected: Flag) -> tuple[str, bool]:
    """What a site's /flags answer says of flag `name`, in words, and whether that is the
    `expected` state. The answer is `{"flags": {name: {"enabled": …, "rollout_percentage":
    …}}}`, or that table at the top level. Raises ValueError if it is not JSON."""
    answer = json.loads(body)
    flags = answer.get("flags", answer) if isinstance(answer, dict) else {}
    entry = flags.get(name) if isinstance(flags, dict) else None
    if not isinstance(entry, dict):
        return "the flag missing", False
    seen = f"{'on' if entry.get('enabled') else 'off'}, {entry.get('rollout_percentage', 0)}%"
    return seen, (
        entry.get("enabled") == expected.enabled
        and entry.get("rollout_percentage") == expected.rollout_percentage
    )


MAX_RAMP_INTERVAL = 30 * 86400
_PERCENT = re.compile(r"[0-9]{1,3}")  # ASCII digits only: str.isdigit() admits "²" and "①"


def parse_percentage(word: str) -> int:
    value = word.rstrip("%")
    if not _PERCENT.fullmatch(value) or not 0 <= int(value) <= 100:
        raise FlagsError(
            f"`{word}` is not a percentage; use a whole number from 0 to 100, "
            "like `/flag set new_infrastructure 10`."
        )
    return int(value)


def check_name(name: str) -> str:
    if not FLAG_NAME.fullmatch(name):
        raise FlagsError(
            f"`{name}` is not a flag name; use lowercase letters, digits and _ "
            "(like `new_infrastructure`)."
        )
    return name


def parse_steps(text: str) -> list[int]:
    """`10,50,100`: percentages that only go up."""
    steps = [parse_percentage(word.strip()) for word in text.split(",") if word.strip()]
    if not steps:
        raise FlagsError(
            "A ramp needs its steps, like `/flag ramp new_infrastructure 10,50,100 --every 1h`."
        )
    for lower, higher in itertools.pairwise(steps):
        if higher <= lower:
            raise FlagsError(
                f"A ramp only goes up: {higher}% after {lower}%. To lower a "
                "flag, `/flag set` it (or `/flag disable` it at once)."
            )
    return steps


def parse_duration(text: str) -> float:
    """`90s`, `15m`, `1h`, `2d` in seconds."""
    match = re.fullmatch(r"([0-9]{1,6}(?:\.[0-9]{1,3})?)\s*(s|m|h|d)", text.strip().lower())
    if not match:
        raise FlagsError(f"`{text}` is not a duration; use one like `30m`, `1h` or `1d`.")
    seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    if seconds <= 0:
        raise FlagsError("The interval between ramp steps must be more than 0.")
    if seconds > MAX_RAMP_INTERVAL:
        raise FlagsError(f"`{text}` is longer than a ramp step may wait (at most 30d).")
    return seconds


def new_flags_ready(candidate: dict[str, Flag], live: dict[str, Flag]) -> list[str]:
    """The "Feature flags ready" gate: a flag new in the candidate starts off, at 0%.
    Returns the problems; [] means ready."""
    return [
        f"`{name}` is new and starts {flag.summary}; new flags must start off, at 0%"
        for name, flag in sorted(candidate.items())
        if name not in live and (flag.enabled or flag.rollout_percentage > 0)
    ]
