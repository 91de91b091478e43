"""The [changes] table (issue 16): its defaults, and every mistake named by its key."""

from __future__ import annotations

import tomllib

import pytest

from bot.domain.config import ChangesConfig, ConfigError, parse_config

AROUND = """
[repository]
url = "/tmp/r"
[slack]
channel = "#r"
[[environments]]
name = "production"
deploy_command = "true"
"""


def parse(text: str) -> ChangesConfig:
    return parse_config(tomllib.loads(AROUND + text)).changes


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


def test_defaults_without_the_table():
    assert parse("") == ChangesConfig(
        pr_url="",
        risk_trailer="Risk",
        paths=(),
        show=20,
        first_parent=True,
        notify_authors=False,
    )


def test_every_key_set():
    changes = parse(
        "[changes]\n"
        'pr_url = "https://github.com/acme/site/pull/{n}"\n'
        'risk_trailer = "Change-Risk"\n'
        'paths = ["services/api/", "*.sql"]\n'
        "show = 200\n"
        "first_parent = false\n"
        "notify_authors = true\n"
    )
    assert changes == ChangesConfig(
        "https://github.com/acme/site/pull/{n}",
        "Change-Risk",
        ("services/api/", "*.sql"),
        200,
        False,
        True,
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('pr_url = "github.com/acme/site/pull/{n}"', "changes.pr_url: must be an http(s) URL"),
        ('pr_url = "https://github.com/acme/site/pull/"', "changes.pr_url: must hold {n}"),
        ('pr_url = "https://x.com/{n}/{n}"', "changes.pr_url: must hold {n}"),
        ('pr_url = "https://x.com/a|b/{n}"', "changes.pr_url: must not hold spaces"),
        ('pr_url = "https://x.com/a b/{n}"', "changes.pr_url: must not hold spaces"),
        ('risk_trailer = "Risk:"', "changes.risk_trailer: must be a trailer name"),
        ('risk_trailer = ""', "changes.risk_trailer: must not be empty"),
        ('paths = ["-p"]', "changes.paths[0]: must not start with -"),
        ('paths = ["ok/", ":(exclude)x"]', "changes.paths[1]: must not start with :"),
        ('paths = ["../x"]', "changes.paths[0]: must be a path inside the repository"),
        ("paths = [1]", "changes.paths[0]: expected a string, got int 1"),
        ('paths = "src/"', "changes.paths: expected a list"),
        ("show = 0", "changes.show: must be from 1 to 200"),
        ("show = 201", "changes.show: must be from 1 to 200"),
        ('first_parent = "yes"', "changes.first_parent: expected true or false"),
        ("allow_empty = true", "changes.allow_empty: unknown key"),
    ],
)
def test_mistakes_name_their_key(line: str, expected: str):
    found = problems(f"[changes]\n{line}\n")
    assert len(found) == 1 and found[0].startswith(expected), found
