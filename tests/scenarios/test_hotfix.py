"""/release hotfix: a patch of production, with its own gates and approvals, marked HOTFIX."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.domain.config import Config, ConfigError
from bot.domain.versions import VersionError, next_hotfix
from tests.helpers.config import (
    STAGING_AND_PRODUCTION,
    automatic_gate,
    build_config,
    deploy_log,
    manual_gate,
    production_config,
)
from tests.helpers.messages import release_message, thread_text, wait_for_gates
from tests.helpers.repos import git
from tests.helpers.steps import in_production, live

HOTFIX = """
[hotfix]
branches = ["hotfix/*"]
gates = ["e2e", "qa"]
required = 1
"""


def test_next_hotfix_patches_what_runs():
    assert str(next_hotfix("0.15.0", ["v0.15.0"], "v", "production")) == "0.15.1-rc.1"
    assert str(next_hotfix("0.15.0", ["v0.15.1-rc.1"], "v", "production")) == "0.15.1-rc.2"
    assert str(next_hotfix("0.15.0", ["v0.15.1"], "v", "production")) == "0.15.2-rc.1"
    with pytest.raises(VersionError, match="nothing to hotfix"):
        next_hotfix(None, [], "v", "production")


def with_hotfix(table: str) -> Config:
    """A config whose production has three approvers, with the `[hotfix]` `table`."""
    return build_config(
        environments=STAGING_AND_PRODUCTION,
        gates=[automatic_gate("e2e", "Automated tests"), manual_gate("qa", "Manual QA")],
        approvals={"production": {"required": 2,
                                  "approvers": ["U0ALICE", "U0BOB", "S0RELMGR"]}},
        extra=table)


def test_hotfix_config_rules():
    ok = with_hotfix('[hotfix]\ngates = ["e2e", "qa"]\n')
    assert ok.hotfix.gates == ("e2e", "qa") and ok.hotfix.policy.required == 1
    # The hotfix count, with production's approvers.
    assert ok.release_policy("hotfix", "staging").approvers == ("U0ALICE", "U0BOB", "S0RELMGR")
    assert ok.release_policy("hotfix", "staging").required == 1
    for table, key in [('[hotfix]\nrequired = 0\n', "hotfix.required"),
                       ('[hotfix]\ngates = ["e2e"]\n', "hotfix.gates"),
                       ('[hotfix]\ngates = ["nope"]\n', "hotfix.gates[0]")]:
        with pytest.raises(ConfigError) as info:
            with_hotfix(table)
        assert info.value.key == key
    none = with_hotfix('[hotfix]\ngates = ["e2e"]\nrequired = 0\nallow_no_approvals = true\n')
    assert none.hotfix.policy.required == 0


async def test_a_hotfix_from_the_hotfix_branch_goes_to_production(start_bot, git_remote,
                                                                  tmp_path: Path):
    bot = await start_bot(production_config(git_remote, tmp_path, HOTFIX))
    await in_production(bot, git_remote)  # v0.15.0 runs in production
    # Meanwhile main moved on, and the fix is on a hotfix branch.
    git_remote.commit("new feature on main")
    git("fetch", "-q", "--tags", "origin", cwd=git_remote.work)
    git("checkout", "-q", "-b", "hotfix/checkout", "v0.15.0", cwd=git_remote.work)
    fix = git_remote.commit("fix checkout crash")
    git("push", "-q", "origin", "hotfix/checkout", cwd=git_remote.work)
    git("checkout", "-q", "main", cwd=git_remote.work)

    ack = bot.slack.text_of(await bot.command('hotfix --description "checkout crash" '
                                              '--issue INC-7', user="U0CAROL"))
    assert "Creating a hotfix" in ack
    message = await wait_for_gates(bot.slack, "v0.15.1-rc.1", count=1)
    assert git_remote.remote_tags()["v0.15.1-rc.1"] == fix
    text = bot.slack.text_of(message)
    assert "HOTFIX v0.15.1-rc.1" in text
    assert "Infrastructure validation" not in text  # not one of the hotfix gates
    thread = thread_text(bot.slack, message)
    assert "*HOTFIX* from `hotfix/checkout`" in thread and "review it afterwards" in thread
    assert "needs 1 more approval" in bot.slack.text_of(await bot.command("final"))

    await bot.click(message, "gate_approve", gate="qa")
    await bot.slack.wait_for(lambda: "Ready for production" in bot.slack.text_of(
        release_message(bot.slack, "v0.15.1-rc.1")))
    await bot.command("final")
    await live(bot, "v0.15.1")
    assert git_remote.remote_tags()["v0.15.1"] == fix
    assert deploy_log(tmp_path)[-1].startswith(f"production 0.15.1 v0.15.1 {fix}")
    actions = [e["action"] for e in await bot.services.store.audit_entries("0.15.1-rc.1")]
    assert actions[0] == "hotfix.create"


async def test_no_hotfix_without_a_production_version(start_bot, git_remote, tmp_path: Path):
    bot = await start_bot(production_config(git_remote, tmp_path, HOTFIX))
    assert "needs a description" in bot.slack.text_of(await bot.command("hotfix"))
    await bot.command('hotfix --description "x"')
    answer = await bot.slack.wait_for(lambda: [
        c for c in bot.slack.calls_to("response_url")
        if "nothing to hotfix" in bot.slack.text_of(c.params)])
    assert answer
    assert "v0.14.2-rc.1" not in git_remote.remote_tags()
