import tomllib
from pathlib import Path

import pytest

from bot.domain.config import ConfigError, load_config, parse_config
from bot.runtime.cli import main

GOOD = """
[repository]
url = "https://github.com/acme/site.git"
branch = "main"
tag_prefix = "v"

[slack]
channel = "#releases"

[[environments]]
name = "staging"
deploy_command = "./deploy.sh staging"
url = "https://staging.example.com"
timeout_seconds = 600

[[environments]]
name = "production"
deploy_command = "./deploy.sh production"

[[gates]]
id = "e2e"
name = "Automated tests"
stage = "staging"
command = "npm test"

[[gates]]
id = "qa"
name = "Manual QA"
stage = "staging"
manual = true
"""


def parse(text: str):
    return parse_config(tomllib.loads(text))


def test_a_good_config_loads_with_defaults():
    config = parse(GOOD)
    assert config.repository.remote == "origin"
    assert [e.name for e in config.environments] == ["staging", "production"]
    assert config.environment("production").timeout_seconds == 900
    assert [g.automatic for g in config.gates] == [True, False]
    assert config.worker.lock_ttl_seconds == 30


@pytest.mark.parametrize(
    ("change", "key", "fragment"),
    [
        (("[slack]", "[slack]\ncolour = 'red'"), "slack.colour", "unknown key"),
        (
            ("timeout_seconds = 600", 'timeout_seconds = "ten"'),
            "environments[0].timeout_seconds",
            "expected a number",
        ),
        (
            ("timeout_seconds = 600", "timeout_seconds = -1"),
            "environments[0].timeout_seconds",
            "greater than 0",
        ),
        (('channel = "#releases"', "channel = 5"), "slack.channel", "expected a string"),
        (('url = "https://github.com/acme/site.git"', ""), "repository.url", "missing"),
        (
            ('stage = "staging"\nmanual = true', 'stage = "prod"\nmanual = true'),
            "gates[1].stage",
            "not an environment",
        ),
        (('stage = "staging"\nmanual = true', 'stage = "staging"'), "gates[1]", "manual = true"),
        (('name = "production"', 'name = "staging"'), "environments[1].name", "defined twice"),
        (('name = "production"', 'name = "Prod Env"'), "environments[1].name", "lowercase"),
        (('tag_prefix = "v"', 'tag_prefix = "v x"'), "repository.tag_prefix", "letters"),
        (("[slack]", "[slack]\n[wrker]\nconcurrency = 1\n[slack2]"), "wrker", "unknown key"),
        (("manual = true", 'manual = "yes"'), "gates[1].manual", "true or false"),
    ],
)
def test_bad_configs_name_the_key(change, key, fragment):
    old, new = change
    assert old in GOOD
    with pytest.raises(ConfigError) as info:
        parse(GOOD.replace(old, new, 1))
    assert info.value.key == key
    assert fragment in info.value.problem


def test_load_config_reports_missing_file_and_bad_toml(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[repository\nurl=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_check_config_cli(tmp_path: Path, capsys, monkeypatch):
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    assert main(["check-config", "--config", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("timeout_seconds = 600", "timeout_seconds = 'x'"))
    monkeypatch.setenv("RELEASEBOT_CONFIG", str(bad))
    with pytest.raises(SystemExit) as info:
        main(["check-config"])
    assert info.value.code == 1
    assert "environments[0].timeout_seconds" in capsys.readouterr().err


def test_the_readme_example_config_is_valid():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    start = readme.index("```toml\n") + len("```toml\n")
    example = readme[start : readme.index("```", start)]
    config = parse(example)
    assert config.environments


def test_every_config_example_in_the_readme_is_valid():
    """The monitoring and flags examples too, each with the least config around it."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = readme.split("```toml\n")[1:]
    examples = [block[: block.index("```")] for block in blocks]
    assert len(examples) >= 4
    around = '[repository]\nurl = "/tmp/r"\n[slack]\nchannel = "#r"\n'
    environment = '[[environments]]\nname = "production"\ndeploy_command = "true"\n'
    for example in examples[1:]:
        if example.lstrip().startswith("# Feature flags") or "[flags." in example:
            continue  # the flags file of the released repository, not releasebot's config
        text = around + example if "[[environments]]" in example else around + environment + example
        parse(text)
