"""`/release freeze` and `/release unfreeze` parsed (issue 19), `--until` read in the team's
time zone, and the [freeze] table: each mistake with the message people see."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.commands.release import (
    USAGE,
    CommandError,
    FreezeCommand,
    UnfreezeCommand,
    freeze_until,
    parse_release_command,
)
from bot.domain.config import ConfigError
from tests.helpers.config import build_config

NOW = datetime(2026, 12, 20, 12, 0, tzinfo=UTC)  # 13:00 in Berlin


def test_freeze_and_unfreeze_parse():
    assert parse_release_command(
        'freeze Production --until "2026-12-27 09:00" --reason "holidays"'
    ) == FreezeCommand(environment="production", until="2026-12-27 09:00", reason="holidays")
    assert parse_release_command("freeze staging --until=3h --reason=migration") == FreezeCommand(
        environment="staging", until="3h", reason="migration"
    )
    assert parse_release_command("unfreeze production") == UnfreezeCommand("production")
    assert parse_release_command('unfreeze production --reason "done early"') == UnfreezeCommand(
        "production", "done early"
    )
    assert "/release freeze ENV --until WHEN --reason TEXT" in USAGE
    assert "/release unfreeze ENV [--reason TEXT]" in USAGE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "freeze",
            "`/release freeze` needs the environment first, like `/release freeze production`.",
        ),
        (
            "freeze production --reason holidays",
            'A freeze needs an end: `/release freeze production --until "2026-12-27 09:00" '
            '--reason "holidays"` (or `--until 3h`, `2d`).',
        ),
        (
            "freeze production --until 3h",
            "A freeze needs a reason, so others know why: `/release freeze production --until "
            '"2026-12-27 09:00" --reason "holidays"`.',
        ),
        (
            "freeze production --until 3h --reason x --force",
            "`/release freeze` has no option `--force`. Options: `--until`, `--reason`.",
        ),
        (
            'unfreeze production --reason ""',
            'The reason is empty: say why, like `--reason "done early"`, or leave it out.',
        ),
        (
            "unfreeze --reason x",
            "`/release unfreeze` needs the environment first, like `/release unfreeze production`.",
        ),
    ],
)
def test_bad_freeze_commands_say_what_to_type(text: str, message: str):
    with pytest.raises(CommandError) as info:
        parse_release_command(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "until"),
    [
        ("2026-12-27 09:00", datetime(2026, 12, 27, 8, 0, tzinfo=UTC)),  # Berlin is UTC+1
        ("2026-12-27T09:00+00:00", datetime(2026, 12, 27, 9, 0, tzinfo=UTC)),
        ("2026-12-27", datetime(2026, 12, 26, 23, 0, tzinfo=UTC)),  # its midnight
        ("3h", datetime(2026, 12, 20, 15, 0, tzinfo=UTC)),
        ("1d12h", datetime(2026, 12, 22, 0, 0, tzinfo=UTC)),
        ("90m", datetime(2026, 12, 20, 13, 30, tzinfo=UTC)),
        ("90d", datetime(2027, 3, 20, 12, 0, tzinfo=UTC)),
    ],
)
def test_until_in_the_teams_zone_with_an_offset_or_as_a_duration(text: str, until: datetime):
    assert freeze_until(text, NOW, "Europe/Berlin") == until


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "tomorrow",
            "`--until tomorrow` is not a time I can read; give a date and time like "
            '"2026-12-27 09:00" (in Europe/Berlin), an ISO date-time with its offset like '
            '"2026-12-27T09:00+01:00", or a duration like "3h", "2d" or "1d12h".',
        ),
        (
            "2026-12-20 12:59",
            "`--until 2026-12-20 12:59` (2026-12-20 12:59 Europe/Berlin) is not in the future: "
            "it is 2026-12-20 13:00 Europe/Berlin now.",
        ),
        (
            "0h",
            "`--until 0h` (2026-12-20 13:00 Europe/Berlin) is not in the future: it is "
            "2026-12-20 13:00 Europe/Berlin now.",
        ),
        (
            "91d",
            "`--until 91d` (2027-03-21 13:00 Europe/Berlin) is more than 90 days away; a freeze "
            "from Slack lasts at most that long (a longer one belongs in the config's "
            "[[freezes]]).",
        ),
    ],
)
def test_an_until_that_is_unreadable_past_or_too_far_is_refused(text: str, message: str):
    with pytest.raises(CommandError) as info:
        freeze_until(text, NOW, "Europe/Berlin")
    assert str(info.value) == message


def test_the_freeze_table():
    config = build_config(freeze={"approvers": ["U0CAROL", "S0OPS"], "timezone": "Europe/Berlin"})
    assert config.freeze.approvers == ("U0CAROL", "S0OPS")
    assert config.freeze.timezone == "Europe/Berlin"
    assert config.freeze.required == 0
    assert build_config().freeze.timezone == "UTC"


def test_freeze_approvals_are_accepted_with_their_request_time():
    config = build_config(freeze={"required": 2, "approvers": ["S0OPS"], "request_hours": 4})
    assert (config.freeze.required, config.freeze.request_hours) == (2, 4.0)
    assert build_config().freeze.request_hours == 24.0


def test_bad_freeze_keys_are_refused_by_key():
    with pytest.raises(ConfigError) as info:
        build_config(
            freeze={
                "required": -1,
                "request_hours": 0,
                "approvers": ["carol"],
                "timezone": "Berlin",
            }
        )
    assert [(p.key, p.problem) for p in info.value.problems] == [
        ("freeze.required", "must not be negative"),
        ("freeze.request_hours", "must be greater than 0, got 0"),
        (
            "freeze.timezone",
            '"Berlin" is no IANA time zone; like "Europe/Berlin", "America/New_York" or "UTC"',
        ),
        (
            "freeze.approvers[0]",
            "must be a Slack user ID (U… or W…) or user-group ID (S…), got the string "
            '"carol"; names change, IDs do not',
        ),
    ]


def test_the_emergency_override_has_its_own_policy():
    from tests.helpers.config import config_text, environment, parse

    default = parse(config_text(environments=[environment("staging"), environment("production")]))
    assert default.override_policy().required == 2
    assert not default.override_policy().allow_self_approval
    own = parse(
        config_text(
            environments=[environment("staging"), environment("production")],
            extra='[freeze.override]\nrequired = 3\napprovers = ["S0ONCALL"]\n',
        )
    )
    assert own.override_policy().required == 3
    assert own.override_policy().approvers == ("S0ONCALL",)
