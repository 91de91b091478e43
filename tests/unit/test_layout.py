"""The layout's promises that no linter checks: serving the bot never loads the terminal demo,
and a machine without the development extra is told what to install instead of a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Makes `import fakeredis` fail, as on a machine (or image) installed without the dev extra.
WITHOUT_FAKEREDIS = """
import sys
class NoFakeredis:
    def find_spec(self, name, path=None, target=None):
        if name == "fakeredis" or name.startswith("fakeredis."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NoFakeredis())
"""


def run_python(code: str, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_serving_loads_no_devtools():
    out = run_python(
        "import sys\n"
        "import bot.runtime.cli, bot.runtime.web, bot.runtime.worker, bot.runtime.scheduler\n"
        "import bot.runtime.jobs, handlers\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('bot.devtools') or "
        "m.startswith('fakeredis'))\n"
        "print(loaded)\n"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_without_the_dev_extra_serve_and_shell_say_what_to_install(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(SLACK_BOT_TOKEN="xoxb-test", SLACK_SIGNING_SECRET="s3cr3t")
    config = tmp_path / "releasebot.toml"
    config.write_text(
        '[repository]\nurl = "/nowhere.git"\n\n[slack]\nchannel = "#releases"\n\n'
        '[[environments]]\nname = "staging"\ndeploy_command = "true"\n'
    )
    for argv in (["serve", "--config", str(config)], ["shell", "--demo"]):
        out = run_python(
            WITHOUT_FAKEREDIS + "import sys\nfrom bot.runtime.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n",
            *argv,
            env=env,
        )
        assert out.returncode == 2, (argv, out.stdout, out.stderr)
        assert "releasebot[dev]" in out.stderr and "Traceback" not in out.stderr, out.stderr
