"""The config of deploy windows and freezes (issue 19): each key of [[environments.windows]],
[[environments.freezes]], [[windows]] and [[freezes]], Config.rules_for, shared defaults of
many services, and every mistake named by its key and line."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.domain.config import ConfigError, UnknownEnvironment, load_config, parse_config
from bot.domain.fleet import parse_services
from bot.domain.windows import Freeze, Window, verdict

BERLIN = ZoneInfo("Europe/Berlin")

BASE = """
[repository]
url = "/tmp/repo"

[slack]
channel = "#releases"

[[environments]]
name = "staging"
deploy_command = "true"

[[environments]]
name = "production"
deploy_command = "true"
"""


def parse(text: str):
    return parse_config(tomllib.loads(text))


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [(p.key, p.problem) for p in info.value.problems]


def test_an_environments_windows_and_freezes():
    config = parse(
        BASE
        + """
[[environments.windows]]
kind = "allow"
cron = "0 9 * * mon-fri"
duration = "8h"
timezone = "Europe/Berlin"

[[environments.windows]]
kind = "deny"
cron = "0 12 * * *"
duration = "1h30m"

[[environments.freezes]]
from = "2026-12-20 00:00"
until = "2027-01-04 09:00"
timezone = "Europe/Berlin"
reason = "holidays"
"""
    )
    rules = config.rules_for("production")
    assert rules.windows == (
        Window("allow", "0 9 * * mon-fri", timedelta(hours=8), "Europe/Berlin"),
        Window("deny", "0 12 * * *", timedelta(minutes=90), "UTC"),
    )
    assert rules.freezes == (
        Freeze(
            datetime(2026, 12, 20, tzinfo=BERLIN),
            datetime(2027, 1, 4, 9, tzinfo=BERLIN),
            "holidays",
        ),
    )
    assert config.rules_for("staging").windows == ()
    v = verdict(rules, datetime(2026, 12, 24, 10, tzinfo=BERLIN))
    assert not v.open and "holidays" in v.why
    with pytest.raises(UnknownEnvironment):
        config.rules_for("prod")


@pytest.mark.parametrize(
    ("text", "minutes"), [("30m", 30), ("8h", 480), ("2d", 2880), ("1h30m", 90)]
)
def test_durations_in_the_file(text: str, minutes: int):
    config = parse(
        BASE + f'[[environments.windows]]\nkind = "deny"\ncron = "0 0 * * *"\nduration = "{text}"\n'
    )
    assert config.rules_for("production").windows[0].duration == timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"2026-12-20 09:00"', datetime(2026, 12, 20, 9, tzinfo=BERLIN)),
        ('"2026-12-20T09:00"', datetime(2026, 12, 20, 9, tzinfo=BERLIN)),
        ('"2026-12-20"', datetime(2026, 12, 20, tzinfo=BERLIN)),
        ("2026-12-20T09:00:00", datetime(2026, 12, 20, 9, tzinfo=BERLIN)),  # TOML local
        ("2026-12-20", datetime(2026, 12, 20, tzinfo=BERLIN)),  # TOML date
        ("2026-12-20T08:00:00Z", datetime(2026, 12, 20, 9, tzinfo=BERLIN)),  # TOML offset
        ('"2026-12-20 10:00+02:00"', datetime(2026, 12, 20, 9, tzinfo=BERLIN)),
    ],
)
def test_a_freezes_times_in_its_zone_or_with_their_offset(value: str, expected: datetime):
    config = parse(
        BASE
        + f"""
[[environments.freezes]]
from = {value}
until = "2027-01-01 00:00"
timezone = "Europe/Berlin"
reason = "x"
"""
    )
    (freeze,) = config.rules_for("production").freezes
    assert freeze.start == expected
    assert freeze.start.utcoffset() is not None


def test_times_without_a_zone_are_utc():
    config = parse(
        BASE
        + '[[environments.freezes]]\nfrom = "2026-12-20 09:00"\nuntil = "2026-12-21 09:00"\n'
        + 'reason = "x"\n'
    )
    assert config.rules_for("production").freezes[0].start == datetime(2026, 12, 20, 9, tzinfo=UTC)


SHARED_RULES = """
[[windows]]
kind = "deny"
cron = "0 17 * * fri"
duration = "2d16h"
timezone = "Europe/Berlin"

[[windows]]
kind = "deny"
cron = "0 0 * * *"
duration = "1h"
environments = ["staging", "production"]

[[freezes]]
from = "2026-12-20 00:00"
until = "2027-01-04 09:00"
reason = "holidays"
environments = ["staging"]
"""


def test_top_level_windows_and_freezes_apply_to_the_environments_they_list():
    config = parse(
        BASE
        + SHARED_RULES
        + '[[environments.windows]]\nkind = "allow"\ncron = "0 9 * * *"\nduration = "8h"\n'
    )
    assert config.windows[0].environments == ("production",)  # the last, by default
    production = config.rules_for("production")
    assert [w.cron for w in production.windows] == ["0 9 * * *", "0 17 * * fri", "0 0 * * *"]
    assert production.freezes == ()
    staging = config.rules_for("staging")
    assert [w.cron for w in staging.windows] == ["0 0 * * *"]
    assert [f.reason for f in staging.freezes] == ["holidays"]


def test_top_level_rules_are_shared_defaults_of_many_services():
    text = (
        BASE.split("[slack]")[0].replace('[repository]\nurl = "/tmp/repo"\n', "")
        + """
[[environments]]
name = "staging"
deploy_command = "true"

[[environments]]
name = "production"
deploy_command = "true"
"""
        + SHARED_RULES
        + """
[services.web]
repository = { url = "/tmp/web" }
slack = { channel = "#web" }

[services.api]
repository = { url = "/tmp/api" }
slack = { channel = "#api" }
freezes = []
"""
    )
    web, api = parse_services(tomllib.loads(text))
    assert [f.reason for f in web.rules_for("staging").freezes] == ["holidays"]
    assert len(web.rules_for("production").windows) == 2
    assert api.rules_for("staging").freezes == ()  # its own list, empty
    assert len(api.rules_for("production").windows) == 2


@pytest.mark.parametrize(
    ("table", "key", "fragment"),
    [
        ('kind = "maybe"', "kind", 'must be "allow" or "deny", got "maybe"'),
        ('cron = "0 9 * *"', "cron", "has 4 fields; a cron expression has 5"),
        ('cron = "0 9 * * mon-fry"', "cron", 'day of week: "fry" is not a number'),
        ('cron = "0 25 * * *"', "cron", "hour: 25 is out of range (0-23)"),
        ('duration = "8"', "duration", '"8" is no duration'),
        ('duration = "0m"', "duration", "must be above 0"),
        ("duration = 8", "duration", "expected a string, got int 8"),
        ('timezone = "Europe/Berlinn"', "timezone", '"Europe/Berlinn" is no IANA time zone'),
        ('timezone = "../etc/passwd"', "timezone", "is no IANA time zone"),
        ('colour = "red"', "colour", "unknown key"),
        ('environments = ["production"]', "environments", "unknown key"),
    ],
)
def test_a_bad_window_names_its_key(table: str, key: str, fragment: str):
    fields = {"kind": '"deny"', "cron": '"0 9 * * *"', "duration": '"1h"'}
    name = table.split(" =")[0]
    fields.pop(name, None)
    body = "".join(f"{k} = {v}\n" for k, v in fields.items()) + table + "\n"
    found = problems(BASE + "[[environments.windows]]\n" + body)
    assert any(k == f"environments[1].windows[0].{key}" and fragment in p for k, p in found), found


@pytest.mark.parametrize("missing", ["kind", "cron", "duration"])
def test_a_window_needs_its_kind_cron_and_duration(missing: str):
    fields = {"kind": '"deny"', "cron": '"0 9 * * *"', "duration": '"1h"'}
    del fields[missing]
    body = "".join(f"{k} = {v}\n" for k, v in fields.items())
    found = problems(BASE + "[[environments.windows]]\n" + body)
    assert (f"environments[1].windows[0].{missing}", "missing (required)") in found


@pytest.mark.parametrize(
    ("table", "key", "fragment"),
    [
        ('until = "2026-12-19 00:00"', "until", "must be after from (2026-12-20 00:00)"),
        ('until = "2026-12-20 00:00"', "until", "must be after from"),
        ('from = "next week"', "from", 'expected a date and time like "2026-12-20 09:00"'),
        ("from = 20261220", "from", "got int 20261220"),
        ("from = 09:00:00", "from", "expected a date and time"),  # a TOML time of day
        ('reason = ""', "reason", "must not be empty"),
        ('timezone = "Mars/Olympus"', "timezone", "is no IANA time zone"),
        ("environments = []", "environments", "unknown key"),
    ],
)
def test_a_bad_freeze_names_its_key(table: str, key: str, fragment: str):
    fields = {"from": '"2026-12-20 00:00"', "until": '"2027-01-04 09:00"', "reason": '"x"'}
    fields.pop(table.split(" =")[0], None)
    body = "".join(f"{k} = {v}\n" for k, v in fields.items()) + table + "\n"
    found = problems(BASE + "[[environments.freezes]]\n" + body)
    assert any(k == f"environments[1].freezes[0].{key}" and fragment in p for k, p in found), found


@pytest.mark.parametrize("missing", ["from", "until", "reason"])
def test_a_freeze_needs_from_until_and_a_reason(missing: str):
    fields = {"from": '"2026-12-20 00:00"', "until": '"2027-01-04 09:00"', "reason": '"x"'}
    del fields[missing]
    body = "".join(f"{k} = {v}\n" for k, v in fields.items())
    found = problems(BASE + "[[environments.freezes]]\n" + body)
    assert (f"environments[1].freezes[0].{missing}", "missing (required)") in found


@pytest.mark.parametrize(
    ("table", "key", "fragment"),
    [
        (
            '[[windows]]\nkind = "deny"\ncron = "0 0 * * *"\nduration = "1h"\n'
            'environments = ["prod"]',
            "windows[0].environments[0]",
            '"prod" is no environment (environments: staging, production)',
        ),
        (
            '[[windows]]\nkind = "deny"\ncron = "0 0 * * *"\nduration = "1h"\nenvironments = []',
            "windows[0].environments",
            "lists none; leave it out for the last one",
        ),
        (
            '[[freezes]]\nfrom = "2026-12-20"\nuntil = "2026-12-21"\nreason = "x"\n'
            "environments = [1]",
            "freezes[0].environments[0]",
            "expected a string, got int 1",
        ),
        (
            '[[freezes]]\nfrom = "2026-12-20"\nuntil = "2026-12-21"\nenvironments = ["qa"]',
            "freezes[0].environments[0]",
            '"qa" is no environment',
        ),
        (
            '[[freezes]]\nfrom = "2026-12-20"\nuntil = "2026-12-21"',
            "freezes[0].reason",
            "missing (required)",
        ),
        ('windows = "weekends"', "windows", "expected a list"),
        ("freezes = [1]", "freezes[0]", "expected a table"),
    ],
)
def test_a_bad_top_level_rule_names_its_key(table: str, key: str, fragment: str):
    text = table + "\n" + BASE if not table.startswith("[[") else BASE + table + "\n"
    found = problems(text)
    assert any(k == key and fragment in p for k, p in found), found


def test_every_mistake_is_said_with_its_line(tmp_path: Path):
    path = tmp_path / "releasebot.toml"
    path.write_text(
        BASE
        + """
[[environments.windows]]
kind = "deny"
cron = "0 9 * * mon-fry"
duration = "1h"

[[environments.freezes]]
from = "2026-12-20 00:00"
until = "2026-12-01 00:00"
reason = "holidays"

[[freezes]]
from = "2026-12-20 00:00"
until = "2027-01-04 09:00"
reason = "holidays"
environments = ["prod"]
"""
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = {p.key: p.line for p in info.value.problems}
    assert lines == {
        "environments[1].windows[0].cron": 18,
        "environments[1].freezes[0].until": 23,
        "freezes[0].environments[0]": 30,
    }
