"""`releasebot check-config --online`, run as a process against the GitHub stand-in: what the
config asks of GitHub is asked of it, each problem named by its config key or variable."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bot.devtools.github_stand_in import GitHubStandIn
from tests.helpers.config import config_text, environment
from tests.helpers.keys import key_pair

OWNER, REPO = "acme", "site"


def config(
    tmp_path: Path, workflow: str = "deploy.yml", inputs: dict[str, str] | None = None
) -> Path:
    deploy = {"github_workflow": workflow, "inputs": inputs or {"version": "{version}"}}
    text = config_text(
        environments=[environment("staging"), {"name": "production", "deploy": deploy}],
        extra=f'[github]\nrepository = "{OWNER}/{REPO}"\n',
    )
    path = tmp_path / "releasebot.toml"
    path.write_text(text)
    return path


async def check(path: Path, **env: str) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.runtime.cli",
        "check-config",
        "--online",
        "--config",
        str(path),
        env={**clean, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def github():
    async with GitHubStandIn() as stand_in:
        stand_in.repo(OWNER, REPO)
        yield stand_in


def token_env(github: GitHubStandIn) -> dict[str, str]:
    return {"GITHUB_TOKEN": github.token, "GITHUB_API_URL": github.base_url}


async def test_a_config_github_can_serve_passes(tmp_path: Path, github: GitHubStandIn):
    github.add_workflow(OWNER, REPO, "deploy.yml", inputs=("version", "correlation_id"))
    github.token_scopes = ("repo", "workflow")
    code, out, err = await check(config(tmp_path), **token_env(github))
    assert code == 0, err
    assert "GitHub: OK: the token sees acme/site" in out
    assert "takes workflow_dispatch with the inputs given" in out
    assert "classic token has the `repo` scope" in out


async def test_each_problem_is_named_by_its_key(tmp_path: Path, github: GitHubStandIn):
    # The workflow does not declare `version`, and another one does not exist.
    github.add_workflow(OWNER, REPO, "deploy.yml", inputs=("correlation_id",))
    code, _, err = await check(config(tmp_path), **token_env(github))
    assert code == 1
    assert "environments[1].deploy.github_workflow" in err
    assert "does not declare the inputs version" in err
    code, _, err = await check(config(tmp_path, workflow="ship.yml"), **token_env(github))
    assert code == 1 and "no workflow ship.yml in acme/site" in err


async def test_a_workflow_whose_run_name_hides_the_id_is_refused(
    tmp_path: Path, github: GitHubStandIn
):
    github.add_workflow(
        OWNER, REPO, "deploy.yml", inputs=("version", "correlation_id"), run_name="Deploy {version}"
    )
    code, _, err = await check(config(tmp_path), **token_env(github))
    assert code == 1 and "run-name does not show inputs.correlation_id" in err


async def test_without_credentials_it_says_which_variable(tmp_path: Path, github: GitHubStandIn):
    code, _, err = await check(config(tmp_path))
    assert code == 1 and "GITHUB_TOKEN: not set" in err


async def test_an_unknown_repository_is_named(tmp_path: Path, github: GitHubStandIn):
    path = config(tmp_path)
    path.write_text(path.read_text().replace(f"{OWNER}/{REPO}", "acme/elsewhere"))
    code, _, err = await check(path, **token_env(github))
    assert code == 1 and "github.repository: acme/elsewhere: GitHub answered 404" in err


async def test_an_app_lacking_a_permission_is_named(tmp_path: Path) -> None:
    private, public = key_pair()
    async with GitHubStandIn(app_id=4242, app_public_key=public) as github:
        github.repo(OWNER, REPO)
        github.add_workflow(OWNER, REPO, "deploy.yml", inputs=("version", "correlation_id"))
        app = {
            "GITHUB_APP_ID": "4242",
            "GITHUB_APP_PRIVATE_KEY": private,
            "GITHUB_API_URL": github.base_url,
        }
        code, out, err = await check(config(tmp_path), **app)
        assert code == 0, err
        assert "the app's installation has" in out and "actions: write" in out
        github.installation_permissions["actions"] = "read"
        code, _, err = await check(config(tmp_path), **app)
        assert code == 1
        assert "GITHUB_APP_ID: the app's installation on acme/site lacks actions: write" in err
