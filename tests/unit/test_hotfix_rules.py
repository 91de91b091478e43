"""The hotfix rules on their own: the version a hotfix gets, and its config."""

from __future__ import annotations

import pytest

from bot.domain.config import Config, ConfigError
from bot.domain.versions import VersionError, next_hotfix
from tests.helpers.config import STAGING_AND_PRODUCTION, automatic_gate, build_config, manual_gate


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
        approvals={"production": {"required": 2, "approvers": ["U0ALICE", "U0BOB", "S0RELMGR"]}},
        extra=table,
    )


def test_hotfix_config_rules():
    ok = with_hotfix('[hotfix]\ngates = ["e2e", "qa"]\n')
    assert ok.hotfix.gates == ("e2e", "qa") and ok.hotfix.policy.required == 1
    # The hotfix count, with production's approvers.
    assert ok.release_policy("hotfix", "staging").approvers == ("U0ALICE", "U0BOB", "S0RELMGR")
    assert ok.release_policy("hotfix", "staging").required == 1
    for table, key in [
        ("[hotfix]\nrequired = 0\n", "hotfix.required"),
        ('[hotfix]\ngates = ["e2e"]\n', "hotfix.gates"),
        ('[hotfix]\ngates = ["nope"]\n', "hotfix.gates[0]"),
    ]:
        with pytest.raises(ConfigError) as info:
            with_hotfix(table)
        assert info.value.key == key
    none = with_hotfix('[hotfix]\ngates = ["e2e"]\nrequired = 0\nallow_no_approvals = true\n')
    assert none.hotfix.policy.required == 0


def test_a_hotfix_depends_on_the_tags_of_its_line_only():
    from bot.domain.versions import patch_line

    assert patch_line("0.15.0", "v") == ("v0.15.*",)
    assert patch_line("1.2.3-rc.4", "release/") == ("release/1.2.*",)
    assert patch_line(None, "v") == () and patch_line("main", "v") == ()
