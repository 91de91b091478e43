"""The GitHub part of the settings: a token or an app, an API URL; every mistake names its
variable and none repeats a secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.adapters import github as client_module
from bot.adapters import github_config as config_module
from bot.adapters.github import DEFAULT_API_URL
from bot.runtime.settings import SettingsError, github_config

ROOT = Path(__file__).resolve().parents[2]
KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n-----END RSA PRIVATE KEY-----"


def test_nothing_set_means_no_github():
    assert github_config({}) is None


def test_a_token_and_the_default_api():
    config = github_config({"GITHUB_TOKEN": "ghp_x"})
    assert config is not None
    assert (config.api_url, config.token, config.app_id) == (DEFAULT_API_URL, "ghp_x", None)


def test_an_app_on_github_enterprise_server():
    config = github_config(
        {
            "GITHUB_APP_ID": "42",
            "GITHUB_APP_PRIVATE_KEY": KEY,
            "GITHUB_API_URL": "https://ghe.example/api/v3",
        }
    )
    assert config is not None
    assert (config.api_url, config.app_id, config.token) == (
        "https://ghe.example/api/v3",
        "42",
        None,
    )
    assert config.app_private_key and config.app_private_key.startswith("-----BEGIN")
    assert KEY not in repr(config)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"GITHUB_TOKEN": "t", "GITHUB_API_URL": "ftp://x"}, "GITHUB_API_URL"),
        ({"GITHUB_TOKEN": "t", "GITHUB_APP_ID": "1"}, "GITHUB_TOKEN"),
        ({"GITHUB_APP_PRIVATE_KEY": KEY}, "GITHUB_APP_ID"),
        ({"GITHUB_APP_ID": "1"}, "GITHUB_APP_PRIVATE_KEY"),
        ({"GITHUB_APP_ID": "ghp_secret", "GITHUB_APP_PRIVATE_KEY": KEY}, "GITHUB_APP_ID"),
        ({"GITHUB_APP_ID": "1", "GITHUB_APP_PRIVATE_KEY": "ghp_secret"}, "GITHUB_APP_PRIVATE_KEY"),
        ({"GITHUB_API_URL": "https://ghe.example/api/v3"}, "GITHUB_TOKEN"),
    ],
)
def test_each_mistake_names_its_variable_and_no_secret(env, named):
    with pytest.raises(SettingsError) as error:
        github_config(env)
    assert named in str(error.value)
    assert "ghp_secret" not in str(error.value)


def test_reading_the_settings_loads_no_github_client():
    """The settings need only GitHubConfig: importing them must not load gidgethub or aiohttp
    (the client's libraries), which a process that never calls GitHub has no use for."""
    code = (
        "import sys\n"
        "import bot.runtime.settings\n"
        "print(sorted(m for m in ('gidgethub', 'aiohttp', 'bot.adapters.github') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_client_module_still_offers_the_config():
    assert client_module.GitHubConfig is config_module.GitHubConfig
    assert client_module.DEFAULT_API_URL == config_module.DEFAULT_API_URL == DEFAULT_API_URL
