"""The flags file and the /flag command text on their own."""

from __future__ import annotations

import pytest

from bot.commands.flag import ChangeFlag, FlagHelp, ListFlags, RampFlag, parse_flag_command
from bot.commands.release import CommandError
from bot.domain.flags import (
    Flag,
    FlagChange,
    FlagsError,
    apply,
    check_request,
    new_flags_ready,
    read_flags,
)
from tests.helpers.config import config_text, environment
from tests.helpers.flags import FLAGS

BASE = config_text(environments=[environment("production", url="https://example.com")])


def test_reading_the_flags():
    flags = read_flags(FLAGS)
    assert flags["new_infrastructure"] == Flag(
        "new_infrastructure", False, 0, "The new CDN and load balancers"
    )
    assert flags["new_search"].summary == "on, 50%"
    assert read_flags("") == {}


def test_a_change_keeps_comments_order_and_the_other_flags():
    text = apply(FLAGS, FlagChange("set", "new_infrastructure", percentage=10))
    assert text == FLAGS.replace("rollout_percentage = 0", "rollout_percentage = 10")
    text = apply(text, FlagChange("enable", "new_infrastructure"))
    assert "enabled = true   # flipped by releasebot" in text
    assert "# Search is half rolled out." in text and text.index("new_infrastructure") < text.index(
        "new_search"
    )
    off = apply(FLAGS, FlagChange("disable", "new_search"))
    assert read_flags(off)["new_search"] == Flag("new_search", False, 50, "Search v2")


def test_create_appends_a_flag_that_starts_off_at_zero():
    text = apply(FLAGS, FlagChange("create", "dark_mode", description="Dark mode"))
    assert text.startswith(FLAGS)
    assert read_flags(text)["dark_mode"] == Flag("dark_mode", False, 0, "Dark mode")
    assert (
        read_flags(apply("", FlagChange("create", "x", description="d")))["x"].summary == "off, 0%"
    )
    with pytest.raises(FlagsError, match="already exists"):
        apply(FLAGS, FlagChange("create", "new_search", description="again"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[flags.x\nenabled = true", "not valid TOML"),
        ('flags = "everything"', "must be a table of flags"),
        ('[flags.x]\nenabled = "yes"', "`enabled` must be true or false"),
        ("[flags.x]\nrollout_percentage = 150", "from 0 to 100"),
    ],
)
def test_a_malformed_file_is_refused_with_what_is_wrong(text: str, message: str):
    with pytest.raises(FlagsError, match=message) as caught:
        apply(text, FlagChange("disable", "x"))
    assert "I changed nothing" in str(caught.value)


def test_an_unknown_flag_lists_the_known_ones():
    with pytest.raises(FlagsError) as caught:
        apply(FLAGS, FlagChange("enable", "new_serch"))
    assert "no flag `new_serch`" in str(caught.value) and "`new_search`" in str(caught.value)


def test_new_flags_must_start_off():
    live = read_flags(FLAGS)
    candidate = read_flags(FLAGS + "\n[flags.dark_mode]\nenabled = true\nrollout_percentage = 5\n")
    assert new_flags_ready(candidate, live) == [
        "`dark_mode` is new and starts on, 5%; new flags must start off, at 0%"
    ]
    # Existing flags may be on; new ones at 0% and off are fine.
    assert (
        new_flags_ready(read_flags(apply(FLAGS, FlagChange("create", "b", description=""))), live)
        == []
    )


def test_flag_commands_parse():
    assert parse_flag_command("list") == ListFlags()
    assert parse_flag_command("") == FlagHelp()
    assert parse_flag_command("set new_search 75%") == ChangeFlag(
        FlagChange("set", "new_search", percentage=75)
    )
    assert parse_flag_command("disable new_search") == ChangeFlag(
        FlagChange("disable", "new_search")
    )
    # Phones type curly quotes.
    assert parse_flag_command("create dark_mode --description “Dark mode”") == ChangeFlag(
        FlagChange("create", "dark_mode", description="Dark mode")
    )
    assert parse_flag_command("ramp new_search 60,80,100 --every 30m") == RampFlag(
        "new_search", steps=(60, 80, 100), every_seconds=1800
    )
    assert parse_flag_command("ramp new_search --stop") == RampFlag("new_search", stop=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("set new_search 150", "`150` is not a percentage"),
        ("set new_search ten", "`ten` is not a percentage"),
        # Digits str.isdigit() admits but int() does not: they crashed with a 500.
        ("set new_search ²", "`²` is not a percentage"),
        ("set new_search ①", "`①` is not a percentage"),
        ("set new_search \u0665", "`\u0665` is not a percentage"),  # Arabic-Indic 5
        ("ramp new_search 10,²0 --every 1h", "`²0` is not a percentage"),
        ("ramp new_search 10,50 --every \u0665h", "is not a duration"),
        ("ramp new_search 10,50 --every 999999d", "at most 30d"),
        (f"ramp new_search 10,50 --every {'9' * 400}d", "is not a duration"),
        ("set new_search", "Usage: `/flag set NAME PERCENT`"),
        ("enable New-Search", "is not a flag name"),
        ("create dark_mode", "needs a description"),
        ("ramp new_search 50,10 --every 1h", "A ramp only goes up: 10% after 50%"),
        ("ramp new_search 10,50 --every soon", "`soon` is not a duration"),
        ("ramp new_search 10,50", "Usage: `/flag ramp new_search 10,50,100 --every 1h`"),
        ("flip new_search", "I don't know `/flag flip`"),
    ],
)
def test_bad_flag_commands_say_what_would_be_right(text: str, message: str):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace("`", "`")):
        parse_flag_command(text)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('[flags]\npath = "/etc/flags.toml"\n', "flags.path"),
        ('[flags]\npath = "../flags.toml"\n', "flags.path"),
        ('[flags]\nenvironment = "prod"\n', "flags.environment"),
        ('[flags]\nendpoint = "flags"\n', "flags.endpoint"),
        ("[flags]\nrequired = -1\n", "flags.required"),
        ('[flags]\napprovers = ["bob"]\n', "flags.approvers[0]"),
        ("[flags]\nramp = true\n", "flags.ramp"),
        (
            '[[gates]]\nid = "f"\nname = "F"\nstage = "production"\ncheck = "flags"\n',
            "gates[0].check",
        ),
        (
            '[[gates]]\nid = "f"\nname = "F"\nstage = "production"\ncheck = "flags-ready"\n'
            "manual = true\n",
            "gates[0].check",
        ),
    ],
)
def test_flag_config_mistakes_name_the_key(extra: str, key: str):
    import tomllib

    from bot.domain.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as caught:
        parse_config(tomllib.loads(BASE + extra))
    assert caught.value.key == key, caught.value


def test_flag_config_defaults_and_no_approvals():
    import tomllib

    from bot.domain.config import parse_config

    config = parse_config(tomllib.loads(BASE + "[flags]\nrequired = 0\n"))
    assert config.flags.policy.required == 0 and config.flags.path == "data/feature-flags.toml"
    assert config.flags_environment.name == "production"
    assert parse_config(tomllib.loads(BASE)).flags.policy.required == 1


def test_a_request_that_changes_nothing_is_refused_but_apply_takes_it():
    text = "[flags.search]\nenabled = false\nrollout_percentage = 30\n"
    for change, words in (
        (FlagChange("disable", "search"), "already off, 30%"),
        (FlagChange("set", "search", percentage=30), "already off, 30%"),
    ):
        with pytest.raises(FlagsError, match=words):
            check_request(text, change, "flags.toml")
        assert apply(text, change, "flags.toml") == text  # a ramp's step may find it so
    check_request(text, FlagChange("enable", "search"), "flags.toml")
    check_request(text, FlagChange("set", "search", percentage=40), "flags.toml")
