"""Parsing of `/flag` command text into typed requests, with messages that say what to type."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands.release import MAX_DESCRIPTION, CommandError, check_text
from bot.commands.words import UnclosedQuote, split_words
from bot.domain.flags import (
    FlagChange,
    FlagsError,
    check_name,
    parse_duration,
    parse_percentage,
    parse_steps,
)

FLAG_USAGE = """\
*`/flag list`* Every flag, on or off, with its rollout percentage.
*`/flag set NAME PERCENT`* Roll NAME out to PERCENT (0-100) of people.
*`/flag enable NAME`* / *`/flag disable NAME`* Switch NAME on, or off at once (the kill switch).
*`/flag create NAME --description TEXT`* A new flag, off and at 0%.
*`/flag ramp NAME 10,50,100 --every 1h`* Raise NAME step by step while production is healthy.
*`/flag ramp NAME --stop`* Stop a ramp where it is."""


@dataclass(frozen=True)
class ListFlags:
    pass


@dataclass(frozen=True)
class ChangeFlag:
    change: FlagChange


@dataclass(frozen=True)
class RampFlag:
    name: str
    steps: tuple[int, ...] = ()
    every_seconds: float = 0.0
    stop: bool = False


@dataclass(frozen=True)
class FlagHelp:
    pass


FlagCommand = ListFlags | ChangeFlag | RampFlag | FlagHelp


def parse_flag_command(text: str) -> FlagCommand:
    try:
        words = split_words(text)
    except UnclosedQuote as exc:
        raise CommandError(
            f'{exc} Like this: `/flag create NAME --description "what it is"`.'
        ) from None
    if not words or words[0] in ("help", "--help", "-h"):
        return FlagHelp()
    sub, rest = words[0].lower(), words[1:]
    try:
        return _parse(sub, rest)
    except FlagsError as exc:
        raise CommandError(str(exc)) from None


def _parse(sub: str, rest: list[str]) -> FlagCommand:
    if sub == "list":
        if rest:
            raise CommandError("`/flag list` takes no arguments.")
        return ListFlags()
    if sub in ("enable", "disable"):
        if len(rest) != 1:
            raise CommandError(f"Usage: `/flag {sub} NAME`, like `/flag {sub} new_infrastructure`.")
        return ChangeFlag(
            FlagChange("enable" if sub == "enable" else "disable", check_name(rest[0]))
        )
    if sub == "set":
        if len(rest) != 2:
            raise CommandError(
                "Usage: `/flag set NAME PERCENT`, like `/flag set new_infrastructure 10`."
            )
        return ChangeFlag(
            FlagChange("set", check_name(rest[0]), percentage=parse_percentage(rest[1]))
        )
    if sub == "create":
        if not rest or rest[0].startswith("-"):
            raise CommandError('Usage: `/flag create NAME --description "what it is"`.')
        name = check_name(rest[0])
        if len(rest) != 3 or rest[1] != "--description" or not rest[2].strip():
            raise CommandError(
                f'A new flag needs a description: `/flag create {name} --description "what it is"`.'
            )
        check_text("description", rest[2])
        if len(rest[2]) > MAX_DESCRIPTION:
            raise CommandError(
                f"The description is {len(rest[2]):,} characters; the most is {MAX_DESCRIPTION:,}."
            )
        return ChangeFlag(FlagChange("create", name, description=rest[2].strip()))
    if sub == "ramp":
        if not rest or rest[0].startswith("-"):
            raise CommandError(
                "Usage: `/flag ramp NAME 10,50,100 --every 1h`, or `/flag ramp NAME --stop`."
            )
        name = check_name(rest[0])
        if rest[1:] == ["--stop"]:
            return RampFlag(name, stop=True)
        if len(rest) != 4 or rest[2] != "--every":
            raise CommandError(
                f"Usage: `/flag ramp {name} 10,50,100 --every 1h`, or `/flag ramp {name} --stop`."
            )
        return RampFlag(
            name, steps=tuple(parse_steps(rest[1])), every_seconds=parse_duration(rest[3])
        )
    raise CommandError(f"I don't know `/flag {sub}`. Try one of these:\n{FLAG_USAGE}")
