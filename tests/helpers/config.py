"""One builder for releasebot's TOML config, so that a test writes down only what it is about,
and the configs the scenario tests run the bot with.

`config_text` lays out a whole file from keyword overrides; `extra` is TOML text appended as
it is, for the fragment a test is about (a policy, a gate, checks). A `[[environments.checks]]`
in `extra` belongs to the last environment, as in any TOML file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomlkit

from bot.domain.config import Config, parse_config
from tests.helpers.repos import GitRemote

# The deploy and gate scripts the tests' configs run.
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def environment(name: str, deploy_command: str = "true", **keys: Any) -> dict[str, Any]:
    """An `[[environments]]` entry."""
    return {"name": name, "deploy_command": deploy_command, **keys}


def automatic_gate(
    id: str, name: str, *, stage: str = "staging", command: str = "true", **keys: Any
) -> dict[str, Any]:
    """An automatic `[[gates]]` entry (a command)."""
    return {"id": id, "name": name, "stage": stage, "command": command, **keys}


def manual_gate(id: str, name: str, *, stage: str = "staging", **keys: Any) -> dict[str, Any]:
    """A `[[gates]]` entry that someone approves."""
    return {"id": id, "name": name, "stage": stage, "manual": True, **keys}


STAGING_AND_PRODUCTION = (environment("staging"), environment("production"))


def config_text(
    *,
    url: str = "/tmp/repo",
    channel: str = "#releases",
    environments: Sequence[Mapping[str, Any]] = (environment("production"),),
    gates: Sequence[Mapping[str, Any]] = (),
    extra: str = "",
    **tables: Mapping[str, Any],
) -> str:
    """A config file: `[repository]` with `url` (more keys with `repository={...}`), `[slack]`
    with `channel`, any other table by its name (`worker={...}`, `approvals={...}`, ...), the
    environments and the gates, then `extra`."""
    document: dict[str, Any] = {
        "repository": {"url": url, **tables.pop("repository", {})},
        "slack": {"channel": channel, **tables.pop("slack", {})},
        **tables,
        "environments": [dict(e) for e in environments],
    }
    if gates:
        document["gates"] = [dict(g) for g in gates]
    return tomlkit.dumps(document) + (f"\n{extra}\n" if extra else "")


def parse(text: str) -> Config:
    return parse_config(tomllib.loads(text))


def build_config(**overrides: Any) -> Config:
    """`config_text(**overrides)`, parsed as the bot parses its file."""
    return parse(config_text(**overrides))


def write_config(tmp_path: Path, text: str) -> Path:
    """The config as a file, for bots started as processes (`releasebot serve --config`)."""
    path = tmp_path / "releasebot.toml"
    path.write_text(text)
    return path


# --- the configs the scenario tests run the bot with ----------------------------------------


def deploy_log(tmp_path: Path) -> list[str]:
    """What the deploys of `make_config` did, one line each (tests/scripts/deploy.sh)."""
    path = tmp_path / "deploys.log"
    return path.read_text().splitlines() if path.exists() else []


def make_config(
    remote: GitRemote,
    tmp_path: Path,
    *,
    deploy_env: str = "",
    production_env: str = "",
    gate_env: str = "",
    lock_ttl: float = 3.0,
    extra: str = "",
    production_url: str = "",
) -> Config:
    """Staging and production deployed by tests/scripts/deploy.sh (into `deploy_log`), two
    automatic gates and a manual one; `deploy_env` and `gate_env` are set for staging's deploy
    and the gates (e.g. `DEPLOY_FAIL=disk-full`, `GATE_FAIL=infra`), `production_env` for
    production's (e.g. `DEPLOY_GO_FILE=...`, to hold it mid-run)."""
    log = tmp_path / "deploys.log"
    production = {"url": production_url} if production_url else {}
    return parse(
        config_text(
            url=str(remote.bare),
            repository={"branch": "main"},
            worker={
                "lock_ttl_seconds": lock_ttl,
                "reap_interval_seconds": 0.5,
                "concurrency": 2,
                "shutdown_grace_seconds": 0,
            },
            environments=[
                environment(
                    "staging",
                    f"DEPLOY_LOG={log} {deploy_env} sh {SCRIPTS}/deploy.sh",
                    url="http://127.0.0.1:1/staging",
                    timeout_seconds=20,
                ),
                environment(
                    "production",
                    f"DEPLOY_LOG={log} {production_env} sh {SCRIPTS}/deploy.sh",
                    timeout_seconds=20,
                    **production,
                ),
            ],
            gates=[
                automatic_gate(
                    "e2e", "Automated tests", command=f"{gate_env} sh {SCRIPTS}/gate.sh e2e"
                ),
                automatic_gate(
                    "infra",
                    "Infrastructure validation",
                    command=f"{gate_env} sh {SCRIPTS}/gate.sh infra",
                ),
                manual_gate("qa", "Manual QA"),
            ],
            extra=extra,
        )
    )


SMOKE = f"""
[[gates]]
id = "smoke"
name = "Smoke tests"
stage = "production"
command = "sh {SCRIPTS}/gate.sh smoke"
"""


def production_config(
    remote: GitRemote, tmp_path: Path, extra: str = "", production_env: str = ""
) -> Config:
    """`make_config` with smoke tests after the production deploy, for tests that promote."""
    return make_config(remote, tmp_path, extra=SMOKE + extra, production_env=production_env)


def worker_config_text(remote: GitRemote, tmp_path: Path, deploy_env: str = "") -> str:
    """A config file for bots run as processes: staging only, deployed into `deploy_log`, one
    gate, and a 2 s lock so that a killed worker's lock expires quickly."""
    log = tmp_path / "deploys.log"
    return config_text(
        url=str(remote.bare),
        worker={"lock_ttl_seconds": 2, "reap_interval_seconds": 0.5, "shutdown_grace_seconds": 0},
        environments=[
            environment(
                "staging",
                f"DEPLOY_LOG={log} {deploy_env} sh {SCRIPTS}/deploy.sh",
                timeout_seconds=60,
            )
        ],
        gates=[automatic_gate("e2e", "Automated tests", command=f"sh {SCRIPTS}/gate.sh e2e")],
    )
