import tomllib
from pathlib import Path

import pytest

from bot.domain.config import ConfigError, load_config, parse_config
from bot.domain.fleet import parse_services
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


def test_check_config_warns_of_windows_that_never_open(tmp_path: Path, capsys):
    never = tmp_path / "never.toml"
    never.write_text(
        GOOD
        + """
[[windows]]
kind = "allow"
cron = "0 9 * * mon-fri"
duration = "8h"
environments = ["production"]

[[windows]]
kind = "deny"
cron = "0 0 * * *"
duration = "1d"
environments = ["production"]
"""
    )
    assert main(["check-config", "--config", str(never)]) == 0  # a warning, not an error
    err = capsys.readouterr().err
    assert "warning: environments 'production': its windows let no change through" in err
    assert "staging" not in err
    open_ones = tmp_path / "open.toml"
    open_ones.write_text(never.read_text().replace('duration = "1d"', 'duration = "1h"'))
    assert main(["check-config", "--config", str(open_ones)]) == 0
    assert "warning" not in capsys.readouterr().err


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
        if "[services." in example:
            parse_services(tomllib.loads(text))  # many services (bot.domain.fleet)
            continue
        parse(text)


# --- every mistake at once, with its line (issue 15) ----------------------------------------


def test_every_mistake_of_a_file_is_reported_the_first_as_before():
    text = GOOD.replace('channel = "#releases"', "channel = 5").replace(
        "timeout_seconds = 600", "timeout_seconds = -1"
    )
    text += '[approvals.production]\napprovers = "U012ABCDEF"\n[hotfix]\nbranches = "hotfix/*"\n'
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert [p.key for p in info.value.problems] == [
        "slack.channel",
        "environments[0].timeout_seconds",
        "approvals.production.approvers",
        "hotfix.branches",
    ]
    assert (info.value.key, info.value.problem) == info.value.problems[0][:2]
    assert "expected a list" in info.value.problems[2].problem
    assert str(info.value).count("\n") == 3  # one line per problem


@pytest.mark.parametrize(
    ("key", "table", "fragment"),
    [
        ("monitoring.oncall", {"monitoring": {"oncall": "S0ONCALL"}}, "expected a list"),
        ("hotfix.gates", {"hotfix": {"gates": {"e2e": True}}}, "expected a list"),
        ("approvals.production", {"approvals": {"production": ["U0ALICE"]}}, "expected a table"),
        ("environments[0].pass_env", {"pass_env": "NPM_TOKEN"}, "expected a list"),
        ("environments[0].checks[0].json", {"checks": [{"name": "h", "json": "ok"}]}, "table"),
        ("environments[0].checks", {"checks": {"name": "h"}}, "expected a list"),
    ],
)
def test_a_list_or_table_of_another_type_names_its_key(key, table, fragment):
    raw = tomllib.loads(GOOD)
    env_keys = {k: v for k, v in table.items() if k in ("pass_env", "checks")}
    raw["environments"][0].update(env_keys)
    raw.update({k: v for k, v in table.items() if k not in env_keys})
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert info.value.key == key and fragment in info.value.problem, info.value


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "9" * 400])
def test_a_number_must_be_finite(value: str):
    with pytest.raises(ConfigError) as info:
        parse(GOOD.replace("timeout_seconds = 600", f"timeout_seconds = {value}"))
    assert info.value.key == "environments[0].timeout_seconds"
    assert "expected a" in info.value.problem and "number" in info.value.problem


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://github.com/acme/site.git", True),
        ("ssh://git@github.com/acme/site.git", True),
        ("git@github.com:acme/site.git", True),
        ("file:///srv/git/site.git", True),
        ("/srv/git/site.git", True),
        ("not a url", False),
        ("site.git", False),
        ("https://", False),
        ("ftp://example.com/site.git", False),
        ("file://relative/site.git", False),
    ],
)
def test_the_repository_url_is_one_git_can_use(url: str, ok: bool):
    text = GOOD.replace("https://github.com/acme/site.git", url)
    if ok:
        assert parse(text).repository.url == url
        return
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert info.value.key == "repository.url" and "URL git can use" in info.value.problem


def test_a_key_is_found_on_its_line():
    from bot.domain.config import key_line

    text = GOOD + (
        '\n[[environments.checks]]\nname = "h"\njson = { "db.ok" = true }\n'
        '\n[approvals.production]\napprovers = [\n  "U0ALICE",\n]\nvalid_hours = 1\n'
    )
    lines = text.splitlines()

    def line_of(fragment: str, after: int = 0) -> int:
        return next(i for i, line in enumerate(lines, 1) if i > after and fragment in line)

    second = line_of("[[environments]]", line_of("[[environments]]"))
    assert key_line(text, "repository.tag_prefix") == line_of("tag_prefix")
    assert key_line(text, "environments[1].name") == line_of('name = "production"')
    assert key_line(text, "environments[1]") == second
    assert key_line(text, "environments[1].url") == second  # missing: its table's header
    assert key_line(text, "environments[1].checks[0].json.db.ok") == line_of("json =")
    assert key_line(text, "gates[1].manual") == line_of("manual = true")
    assert key_line(text, "approvals.production.approvers[0]") == line_of("approvers = [")
    assert key_line(text, "approvals.production.valid_hours") == line_of("valid_hours")
    assert key_line(text, "approvals") == line_of("[approvals.production]")
    assert key_line(text, "monitoring") is None


def test_check_config_prints_each_mistake_with_its_key_and_line(tmp_path: Path, capsys):
    bad = tmp_path / "releasebot.toml"
    bad.write_text(
        GOOD.replace("timeout_seconds = 600", "timeout_seconds = nan")
        .replace('url = "https://github.com/acme/site.git"', 'url = "not a url"')
        .replace('stage = "staging"\nmanual = true', 'stage = "staging"\nmanual = "yes"')
    )
    lines = bad.read_text().splitlines()
    with pytest.raises(SystemExit) as info:
        main(["check-config", "--config", str(bad)])
    assert info.value.code == 1
    err = capsys.readouterr().err.splitlines()
    expected = [
        ("repository.url", 'url = "not a url"'),
        ("environments[0].timeout_seconds", "timeout_seconds = nan"),
        ("gates[1].manual", 'manual = "yes"'),
    ]
    assert len(err) == len(expected), err
    for line, (key, text) in zip(err, expected, strict=True):
        number = lines.index(text) + 1
        assert line.startswith(f"{bad}:{number}: {key}: "), line


def test_load_config_lists_every_problem_with_its_line(tmp_path: Path):
    bad = tmp_path / "releasebot.toml"
    bad.write_text(GOOD.replace("[slack]", "[slack]\ncolour = 'red'").replace('v"', 'v x"'))
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert [(p.key, p.line) for p in info.value.problems] == [
        ("repository.tag_prefix", 5),
        ("slack.colour", 8),
    ]
    assert info.value.key == "repository.tag_prefix"  # the first, for callers that show one


def test_every_declared_key_is_in_the_readme_examples():
    """The README's examples are the reference of the file: a key added to a dataclass (its
    one declaration) is added there too."""
    import re

    from bot.domain.config import TABLES

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    examples = "\n".join(b[: b.index("```")] for b in readme.split("```toml\n")[1:])
    for table, keys in TABLES.items():
        for name in keys:
            k = re.escape(name)
            # `name =` (maybe commented out), `[name]`, `[name.x]`, `[x.name]`, `{ name = `
            pattern = rf"(?m)^\s*#?\s*{k}\s*=|\[{k}[.\]]|\.{k}\]|[{{,]\s*{k}\s*="
            assert re.search(pattern, examples), f"{table or 'top level'}: {name} not in README"
