"""Deploy windows and freezes enforced (issue 19): a freeze refuses a promotion, saying when
production opens; a rollback goes through it; a deploy queued while its environment is closed
waits and starts, by itself, when it opens, while one already running when a freeze starts
finishes. The bot's clock is the test's where it can be; the one deploy that waits for a real
opening waits seconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from tests.helpers.config import deploy_log, make_config, production_config
from tests.helpers.messages import release_message, thread_saying
from tests.helpers.repos import GitRemote
from tests.helpers.steps import StartBot, in_production, live, ready_for_production, rolled_back

# Christmas 2030, noon in Berlin: inside the freeze below.
CHRISTMAS = datetime(2030, 12, 24, 11, 0, tzinfo=UTC).timestamp()
HOLIDAYS = """
[[freezes]]
from = "2030-12-20 00:00"
until = "2031-01-06 09:00"
timezone = "Europe/Berlin"
reason = "end-of-year holidays"
"""


def freeze_until(seconds: float, reason: str, environments: str = '["production"]') -> str:
    """A [[freezes]] entry from a minute ago until `seconds` from now, in real time."""
    now = time.time()
    start = datetime.fromtimestamp(now - 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    until = datetime.fromtimestamp(now + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"""
[[freezes]]
from = {start}
until = {until}
reason = "{reason}"
environments = {environments}
"""


async def test_a_freeze_refuses_a_final_and_lets_a_rollback_through(
    start_bot: StartBot, git_remote: GitRemote, tmp_path: Path
) -> None:
    bot = await start_bot(production_config(git_remote, tmp_path, HOLIDAYS))
    await in_production(bot, git_remote)  # before the freeze: v0.15.0 is live
    bot.services.store.clock = lambda: CHRISTMAS  # the bot's clock: inside the freeze
    await ready_for_production(bot, "v0.16.0-rc.1", rc="rc --allow-empty")
    answer = bot.slack.text_of(await bot.command("final"))
    assert (
        "*production* is closed for changes: frozen" in answer and "end-of-year holidays" in answer
    )
    assert "09:00 Europe/Berlin, in 12 days" in answer  # the team's zone, from the bot's now
    assert "`v0.16.0-rc.1` was not promoted" in answer
    refused = [
        e
        for e in await bot.services.store.audit_entries()
        if e["action"] == "release.promote" and e["outcome"] == "refused"
    ]
    assert refused and "end-of-year holidays" in refused[-1]["reason"]
    assert "v0.16.0" not in git_remote.remote_tags()
    # A rollback reduces risk: the freeze never stops it.
    await bot.command('rollback --reason "checkout errors"', user="U0BOB", user_name="bob")
    await rolled_back(bot)
    versions = await bot.services.store.environment_versions(["production"])
    assert versions["production"]["version"] == "0.14.1"


async def test_a_deploy_queued_while_closed_waits_and_starts_when_it_opens(
    start_bot: StartBot, git_remote: GitRemote, tmp_path: Path
) -> None:
    # Staging is frozen until four seconds from now (real time: the waiting deploy is
    # queued again for the opening, on the queue's own clock).
    freeze = freeze_until(4, "database migration", environments='["staging"]')
    bot = await start_bot(make_config(git_remote, tmp_path, extra=freeze))
    await bot.command("rc")
    message = await bot.slack.wait_for(lambda: release_message(bot.slack, "v0.15.0-rc.1"))
    text = await thread_saying(bot.slack, message, "waits")
    assert "database migration" in text and "It starts then, by itself" in text
    assert deploy_log(tmp_path) == []  # nothing ran while it was closed
    await thread_saying(bot.slack, message, "Deployed v0.15.0-rc.1 to *staging*", timeout=30)
    assert deploy_log(tmp_path)[0].startswith("staging 0.15.0-rc.1")
    waits = [e for e in await bot.services.store.audit_entries() if e["action"] == "deploy.wait"]
    assert len(waits) == 1 and waits[0]["environment"] == "staging"


async def test_a_freeze_that_starts_while_a_deploy_runs_lets_it_finish_and_holds_the_next(
    start_bot: StartBot, git_remote: GitRemote, tmp_path: Path
) -> None:
    # Production's deploy script holds, mid-run, until the test creates `go`: the freeze
    # starts while it really runs (its lock held, its record "running").
    go = tmp_path / "go"
    bot = await start_bot(
        production_config(git_remote, tmp_path, production_env=f"DEPLOY_GO_FILE={go}")
    )
    store = bot.services.store
    await store.set_environment_version(
        "production", "0.14.1", "v0.14.1", git_remote.remote_tags()["v0.14.1"]
    )
    await ready_for_production(bot)
    await bot.command("final")
    await bot.slack.wait_for(
        lambda: any(line.startswith("production 0.15.0 v0.15.0") for line in deploy_log(tmp_path)),
        timeout=30,
    )
    release = await store.get_release("0.15.0-rc.1")
    assert release is not None and release.deploys["production"].status == "running"
    assert await bot.services.locks.holder("production") is not None

    answer = bot.slack.text_of(
        await bot.command(
            'freeze production --until 3h --reason "incident review"',
            user="U0CAROL",
            user_name="carol",
        )
    )
    assert "*production* is frozen until" in answer and "incident review" in answer
    assert await bot.services.freeze_records.active("production", store.clock())

    # Let it go: it was started before the freeze, so it finishes, its gates run, it goes
    # live, and it frees production. Neither cancelled nor held for the opening.
    go.touch()
    await live(bot, "v0.15.0")
    release = await store.get_release("0.15.0-rc.1")
    assert release is not None and release.deploys["production"].status == "succeeded"
    versions = await store.environment_versions(["production"])
    assert versions["production"]["version"] == "0.15.0"
    assert await bot.services.locks.holder("production") is None
    production_runs = [ln for ln in deploy_log(tmp_path) if ln.startswith("production")]
    assert len(production_runs) == 1  # run once, not queued again for the opening
    entries = await store.audit_entries()
    finished = [(e["environment"], e["outcome"]) for e in entries if e["action"] == "deploy.finish"]
    assert ("production", "succeeded") in finished
    assert not [e for e in entries if e["action"] == "deploy.wait"]

    # The freeze holds what comes next: the next candidate is not promoted.
    await ready_for_production(bot, "v0.16.0-rc.1", rc="rc --allow-empty")
    refused = bot.slack.text_of(await bot.command("final"))
    assert "*production* is closed for changes" in refused and "incident review" in refused
    assert "`v0.16.0-rc.1` was not promoted" in refused
    assert "v0.16.0" not in git_remote.remote_tags()
    versions = await store.environment_versions(["production"])
    assert versions["production"]["version"] == "0.15.0"
    assert len([ln for ln in deploy_log(tmp_path) if ln.startswith("production")]) == 1


async def test_a_final_asked_for_when_open_runs_once_at_the_opening(
    start_bot: StartBot, git_remote: GitRemote, tmp_path: Path
) -> None:
    # Production is frozen until five seconds from now (real time: the promotion is queued
    # for the opening on the queue's own clock); two workers share the queue.
    config = production_config(
        git_remote, tmp_path, freeze_until(5, "payment provider maintenance")
    )
    bot = await start_bot(config)
    await start_bot(config, role="worker", name="second")
    message = await ready_for_production(bot, rc="rc")
    refused = bot.slack.text_of(await bot.command("final"))
    assert "payment provider maintenance" in refused and "--when-open" in refused
    answer = bot.slack.text_of(await bot.command("final --when-open"))
    assert "will be promoted then" in answer and "checked again" in answer
    assert "v0.15.0" not in git_remote.remote_tags()
    await thread_saying(bot.slack, message, "`v0.15.0` is live in *production*", timeout=30)
    entries = await bot.services.store.audit_entries()
    assert [e["outcome"] for e in entries if e["action"] == "release.final-tag"] == ["ok"]
    assert [e for e in entries if e["action"] == "release.promote" and e["outcome"] == "scheduled"]
    assert [ln for ln in deploy_log(tmp_path) if ln.startswith("production")] != []
    assert len([ln for ln in deploy_log(tmp_path) if ln.startswith("production")]) == 1


async def test_an_emergency_override_goes_through_a_freeze_with_its_own_approvals(
    start_bot: StartBot, git_remote: GitRemote, tmp_path: Path
) -> None:
    bot = await start_bot(production_config(git_remote, tmp_path, HOLIDAYS))
    bot.services.store.clock = lambda: CHRISTMAS  # inside the freeze from the start
    message = await ready_for_production(bot, rc="rc")
    wrong = bot.slack.text_of(await bot.command("final --emergency"))
    assert "needs a reason" in wrong
    answer = bot.slack.text_of(
        await bot.command(
            'final --emergency --reason "payments are down"', user="U0ALICE", user_name="alice"
        )
    )
    assert "EMERGENCY override" in answer and "needs 2 approvals" in answer
    await bot.slack.wait_for(lambda: "Approve emergency override" in bot.slack.text_of(message))
    shown = message  # the stand-in updates it in place: it has the button now
    # Never the one who asked; then two others.
    await bot.click(shown, "override_approve", user="U0ALICE", user_name="alice")
    await bot.slack.wait_for(
        lambda: any(
            "someone else has to approve it" in bot.slack.text_of(c.params)
            for c in bot.slack.calls_to("response_url")
        )
    )
    await bot.click(shown, "override_approve", user="U0BOB", user_name="bob")
    assert "v0.15.0" not in git_remote.remote_tags()
    await bot.click(shown, "override_approve", user="U0CAROL", user_name="carol")
    text = await thread_saying(bot.slack, message, "review it", timeout=30)
    assert "`v0.15.0` is live in *production*" in text
    assert "EMERGENCY" in bot.slack.text_of(message)
    assert "EMERGENCY-override: asked-by=alice" in git_remote.tag_message("v0.15.0")
    assert "approved-by=bob (U0BOB), carol (U0CAROL)" in git_remote.tag_message("v0.15.0")
    actions = [e["action"] for e in await bot.services.store.audit_entries()]
    assert "override.ask" in actions and actions.count("override.approve") >= 2
