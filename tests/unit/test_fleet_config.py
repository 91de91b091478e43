"""Many services in one config file (bot.domain.fleet): shared defaults, each service's own
tables laid over them, the rules between services, and a one-service file as it always was."""

from __future__ import annotations

import tomllib

import pytest

from bot.domain.config import ConfigError, service_name_of
from bot.domain.fleet import parse_services

SHARED = """
[slack]
channel = "#releases"

[approvals.production]
required = 2
approvers = ["U0ANN", "U0BOB", "U0CAT"]

[[environments]]
name = "staging"
deploy_command = "./deploy.sh staging"

[[environments]]
name = "production"
deploy_command = "./deploy.sh production"
"""

TWO = (
    SHARED
    + """
[services.web]
repository = { url = "git@github.com:acme/web.git" }
slack = { channel = "#web-releases" }

[services.api]
repository = { url = "git@github.com:acme/api.git" }
slack = { channel = "#api-releases" }
approvals = { production = { required = 3 } }
environments = [{ name = "production", deploy_command = "./api-deploy.sh" }]
"""
)


def parse(text: str):
    return parse_services(tomllib.loads(text))


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return [str(p) for p in caught.value.problems]


def test_a_file_without_services_is_one_service_named_by_its_repository():
    (config,) = parse('[repository]\nurl = "git@github.com:acme/Web.Site.git"\n' + SHARED)
    assert config.service == "web-site" and not config.legacy_keys
    (named,) = parse('service = "shop"\n[repository]\nurl = "/srv/repo"\n' + SHARED)
    assert named.service == "shop"


def test_services_share_the_defaults_and_override_them():
    web, api = parse(TWO)
    assert (web.service, api.service) == ("web", "api")
    assert web.slack.channel == "#web-releases" and api.slack.channel == "#api-releases"
    assert [e.name for e in web.environments] == ["staging", "production"]
    assert [e.name for e in api.environments] == ["production"]  # its own list
    # One policy for all, one service stricter: a table merges key by key.
    assert web.policy("production").required == 2
    assert api.policy("production").required == 3
    assert api.policy("production").approvers == web.policy("production").approvers


def test_a_list_of_services_reads_the_same():
    listed = (
        SHARED
        + """
[[services]]
name = "web"
repository = { url = "/srv/web" }
slack = { channel = "#web" }

[[services]]
name = "api"
repository = { url = "/srv/api" }
slack = { channel = "#api" }
"""
    )
    assert [c.service for c in parse(listed)] == ["web", "api"]


@pytest.mark.parametrize(
    ("change", "key", "fragment"),
    [
        (('"#api-releases"', '"#web-releases"'), "services.api.slack.channel", "web's channel"),
        (("acme/api.git", "acme/web.git"), "services.api.repository.tag_prefix", "own"),
        (("[services.api]", "[services.API]"), "services.API", "no service name"),
        (
            ('deploy_command = "./api-deploy.sh"', 'deploy_command = ""'),
            "services.api.environments[0].deploy_command",
            "must not be empty",
        ),
    ],
)
def test_each_mistake_is_named_under_its_service(change, key, fragment):
    found = problems(TWO.replace(*change))
    assert any(p.startswith(f"{key}:") and fragment in p for p in found), found


def test_a_mistake_in_the_shared_defaults_says_for_which_service():
    found = problems(TWO.replace("required = 2", "required = 0"))
    assert any("(in services.web, from the shared defaults)" in p for p in found), found


def test_only_one_service_keeps_the_one_service_keys():
    text = TWO.replace("[services.web]", "[services.web]\nlegacy_keys = true").replace(
        "[services.api]", "[services.api]\nlegacy_keys = true"
    )
    assert any("services.api.legacy_keys" in p for p in problems(text))


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("git@github.com:acme/website.git", "website"),
        ("https://github.com/acme/Shop_API/", "shop_api"),
        ("/srv/git/2024.repo", "service-2024-repo"),
        ("file:///tmp/x/remote.git", "remote"),
    ],
)
def test_a_service_is_named_after_its_repository(url: str, name: str):
    assert service_name_of(url) == name


def test_a_service_is_never_named_like_an_environment():
    text = TWO.replace("[services.api]", "[services.staging]").replace("#api-releases", "#x")
    assert any(
        p.startswith("services.staging.name:") and "also an environment" in p
        for p in problems(text)
    )
