"""`requesters` and `deployers` (who may start releases, who may deploy to the last
environment): read from the top level of a config, so shared by services or each one's own,
and validated like approvers, each mistake named by its key."""

from __future__ import annotations

import tomllib

import pytest

from bot.blocks.release import mention_all
from bot.domain.config import ConfigError, parse_config
from bot.domain.fleet import parse_services

ONE = """
[repository]
url = "git@github.com:acme/web.git"

[slack]
channel = "#releases"

[[environments]]
name = "staging"
deploy_command = "./deploy.sh staging"

[[environments]]
name = "production"
deploy_command = "./deploy.sh production"
"""


def parse(top: str, rest: str = ONE):
    return parse_config(tomllib.loads(top + rest))


def test_without_the_keys_anyone_may():
    config = parse("")
    assert config.requesters == () and config.deployers == ()


def test_users_and_groups_are_read_in_order_once_each():
    config = parse(
        'requesters = ["S0WEBTEAM", "U0ALICE", "W0GUEST", "U0ALICE"]\ndeployers = ["S0RELMGR"]\n'
    )
    assert config.requesters == ("S0WEBTEAM", "U0ALICE", "W0GUEST")
    assert config.deployers == ("S0RELMGR",)


@pytest.mark.parametrize(
    ("top", "key", "fragment"),
    [
        ('requesters = ["@alice"]', "requesters[0]", 'got the string "@alice"; names change'),
        ('requesters = ["U0ALICE", "web-team"]', "requesters[1]", "user-group ID (S…)"),
        ("deployers = [42]", "deployers[0]", "got int 42"),
        ('deployers = ["C0CHANNEL"]', "deployers[0]", "must be a Slack user ID"),
        ('requesters = "S0WEBTEAM"', "requesters", "expected a list"),
        ("deployers = { team = 1 }", "deployers", "expected a list"),
    ],
)
def test_a_wrong_entry_is_named_by_its_key(top: str, key: str, fragment: str):
    with pytest.raises(ConfigError) as caught:
        parse(top + "\n")
    assert [p.key for p in caught.value.problems] == [key]
    assert fragment in caught.value.problem


def test_both_keys_mistakes_are_all_told():
    with pytest.raises(ConfigError) as caught:
        parse('requesters = ["web"]\ndeployers = ["U0OK", "ops"]\n')
    assert [p.key for p in caught.value.problems] == ["requesters[0]", "deployers[1]"]


SERVICES = """
deployers = ["S0RELMGR"]
[slack]
channel = "#releases"

[[environments]]
name = "production"
deploy_command = "./deploy.sh production"

[services.web]
repository = { url = "git@github.com:acme/web.git" }
slack = { channel = "#web-releases" }
requesters = ["S0WEBTEAM"]

[services.api]
repository = { url = "git@github.com:acme/api.git" }
slack = { channel = "#api-releases" }
deployers = []
"""


def test_each_service_has_its_own_or_the_shared_ones():
    web, api = parse_services(tomllib.loads(SERVICES))
    assert web.requesters == ("S0WEBTEAM",) and web.deployers == ("S0RELMGR",)
    assert api.requesters == () and api.deployers == ()  # [] overrides the shared default


def test_a_services_mistake_is_named_under_it_and_a_shared_ones_for_each():
    text = SERVICES.replace('["S0WEBTEAM"]', '["webteam"]').replace(
        'deployers = ["S0RELMGR"]', 'deployers = ["relmgr"]'
    )
    with pytest.raises(ConfigError) as caught:
        parse_services(tomllib.loads(text))
    said = [
        (p.key, p.problem.endswith("(in services.web, from the shared defaults)"))
        for p in caught.value.problems
    ]
    assert said == [("services.web.requesters[0]", False), ("deployers[0]", True)]


def test_who_may_is_said_with_mentions():
    assert mention_all(("S0WEBTEAM",)) == "<!subteam^S0WEBTEAM>"
    assert mention_all(("U0ALICE", "W0GUEST", "S0WEBTEAM")) == (
        "<@U0ALICE>, <@W0GUEST> and <!subteam^S0WEBTEAM>"
    )
