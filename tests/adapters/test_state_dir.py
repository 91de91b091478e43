"""The state directory holds the bot's clone (and the credentials its remote URL may carry):
the bot keeps it private, and refuses one that other users share instead of closing it on
them (a benchmark once passed /tmp, and /tmp became 0700 for everyone)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.runtime.container import Services, StateDirShared
from tests.helpers.bot import make_settings
from tests.helpers.config import build_config


def test_a_shared_state_directory_is_refused_and_left_as_it_was(tmp_path: Path, slack):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(StateDirShared, match="shared with other users"):
        Services.create(make_settings("rbtest:state:", slack, shared), build_config())
    assert shared.stat().st_mode & 0o7777 == 0o1777


async def test_the_bots_own_state_directory_is_made_private(tmp_path: Path, slack):
    own = tmp_path / "own"
    own.mkdir(mode=0o755)
    services = Services.create(make_settings("rbtest:state:", slack, own), build_config())
    try:
        assert own.stat().st_mode & 0o777 == 0o700
    finally:
        await services.close()


def test_serve_says_what_is_wrong_with_a_shared_state_directory(tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    config = tmp_path / "releasebot.toml"
    config.write_text(
        '[repository]\nurl = "/nowhere.git"\n\n[slack]\nchannel = "#releases"\n\n'
        '[[environments]]\nname = "staging"\ndeploy_command = "true"\n'
    )
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": "s3cr3t",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "RELEASEBOT_STATE_DIR": str(shared),
    }
    out = subprocess.run(
        [sys.executable, "-m", "bot.runtime.cli", "serve", "--port", "0", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "RELEASEBOT_STATE_DIR" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert shared.stat().st_mode & 0o7777 == 0o1777
