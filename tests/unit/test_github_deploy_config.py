"""`deploy = { ... }`: an environment GitHub deploys, read from the config, and the rules of
what a dispatch carries (bot.domain.github_deploys)."""

from __future__ import annotations

import pytest

from bot.domain import github_deploys as rules
from bot.domain.config import ConfigError, GitHubDeployConfig
from tests.helpers.config import config_text, environment, parse

REPOSITORY = '[github]\nrepository = "acme/site"\n'


def with_deploy(deploy: object, extra: str = REPOSITORY, **keys: object) -> str:
    env = {"name": "production", "deploy": deploy, **keys}
    return config_text(environments=[environment("staging"), env], extra=extra)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return [str(p) for p in caught.value.problems]


def test_a_workflow_deploy_is_read_with_its_inputs_and_defaults():
    config = parse(
        with_deploy(
            {
                "github_workflow": "deploy.yml",
                "inputs": {"environment": "{env}", "version": "v{version}"},
            }
        )
    )
    via = config.environment("production").deploy
    assert via == GitHubDeployConfig(
        github_workflow="deploy.yml",
        ref="tag",
        inputs=(("environment", "{env}"), ("version", "v{version}")),
    )
    assert config.environment("production").deploy_command == ""
    assert config.environment("staging").deploy is None
    assert config.github.poll_seconds == 5.0 and config.github.record_deployments


def test_a_deployment_deploy_is_read():
    config = parse(with_deploy({"github_deployment": True, "start_timeout_seconds": 60}))
    via = config.environment("production").deploy
    assert via is not None and via.github_deployment and via.start_timeout_seconds == 60
    assert via.what == "a GitHub Deployment"


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        (with_deploy({"ref": "tag"}), "environments[1].deploy", "say how GitHub deploys"),
        (
            with_deploy({"github_workflow": "deploy.yml", "github_deployment": True}),
            "environments[1].deploy.github_deployment",
            "keep one",
        ),
        (
            with_deploy({"github_workflow": "../deploy.sh"}),
            "environments[1].deploy.github_workflow",
            "a workflow file's name",
        ),
        (
            with_deploy({"github_workflow": "deploy.yml", "ref": "--upload-pack=x"}),
            "environments[1].deploy.ref",
            '"tag", "branch" or a branch or tag name',
        ),
        (
            with_deploy({"github_workflow": "deploy.yml", "inputs": {"v": "{versoin}"}}),
            "environments[1].deploy.inputs.v",
            "{versoin} is not a placeholder",
        ),
        (
            with_deploy({"github_workflow": "deploy.yml", "inputs": {"correlation_id": "x"}}),
            "environments[1].deploy.inputs.correlation_id",
            "the bot sets correlation_id itself",
        ),
        (
            with_deploy({"github_deployment": True, "inputs": {"a": "b"}}),
            "environments[1].deploy.inputs",
            "only a workflow takes inputs",
        ),
        (
            with_deploy({"github_workflow": "deploy.yml"}, deploy_command="true"),
            "environments[1]",
            "not both",
        ),
        (
            with_deploy({"github_workflow": "deploy.yml"}, extra=""),
            "github.repository",
            "deploys through GitHub",
        ),
        (
            with_deploy(
                {"github_workflow": "deploy.yml"}, extra=REPOSITORY + '[flags]\npath = "f.toml"\n'
            ),
            "flags.deploy_command",
            "{flags_commit}",
        ),
        (
            with_deploy({"github_workflow": "deploy.yml", "start_timeout_seconds": 0}),
            "environments[1].deploy.start_timeout_seconds",
            "greater than 0",
        ),
    ],
)
def test_a_wrong_github_deploy_names_its_key(text: str, key: str, fragment: str):
    found = problems(text)
    assert any(p.startswith(f"{key}:") and fragment in p for p in found), found


def test_an_environment_needs_one_way_to_deploy():
    text = config_text(environments=[{"name": "staging"}])
    assert any(p.startswith("environments[0]:") and "deploy_command" in p for p in problems(text))


def test_flags_may_deploy_through_a_workflow_given_their_commit():
    parse(
        with_deploy(
            {"github_workflow": "deploy.yml", "inputs": {"flags": "{flags_commit}"}},
            extra=REPOSITORY + '[flags]\npath = "f.toml"\n',
        )
    )


VALUES = {
    "RELEASE_ENV": "production",
    "RELEASE_VERSION": "1.4.0",
    "RELEASE_TAG": "v1.4.0",
    "RELEASE_SHA": "abc123",
}


def test_inputs_are_filled_in_and_carry_the_correlation_id():
    inputs = rules.workflow_inputs(
        {"environment": "{env}", "version": "{version}", "why": "rollback={rollback} {x"},
        {**VALUES, "RELEASE_ROLLBACK": "1"},
        "correlation_id",
        "rb-1",
    )
    assert inputs == {
        "environment": "production",
        "version": "1.4.0",
        "why": "rollback=true {x",
        "correlation_id": "rb-1",
    }
    assert rules.fill("{rollback}/{flags_commit}", VALUES) == "false/"


def test_the_dispatch_ref():
    assert rules.dispatch_ref("tag", VALUES, "main") == "v1.4.0"
    assert rules.dispatch_ref("branch", VALUES, "main") == "main"
    assert rules.dispatch_ref("release/1.x", VALUES, "main") == "release/1.x"


def test_a_run_says_where_it_is():
    queued = rules.RunState(1, "queued", None, "https://x")
    assert not queued.started and queued.progress() == "queued on GitHub Actions"
    running = rules.RunState(1, "in_progress", None, "https://x", job="deploy", step="Upload")
    assert running.progress() == "in progress: deploy → Upload"
    done = rules.RunState(1, "completed", "failure", "https://x")
    assert done.finished and done.progress() == "completed: failure"


def test_a_run_waiting_on_github_says_so():
    waiting = rules.RunState(1, "waiting", None, "https://x")
    assert not waiting.started and "an environment's reviewers" in waiting.progress()
