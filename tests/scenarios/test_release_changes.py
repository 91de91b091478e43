"""What approvers see of a release's contents, on a real repository: the summary on the
release message, the grouped list in its thread, what is new since the previous candidate,
the final tag's annotation, `/release changes`, a rollback's "takes away", an empty candidate
refused, and `releasebot notes`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from bot.devtools.slack_stand_in import validate_blocks
from tests.helpers.config import config_text, environment, production_config, write_config
from tests.helpers.messages import release_message, thread_text, wait_for_gates
from tests.helpers.repos import git
from tests.helpers.steps import in_production, rolled_back


def conventional_history(git_remote) -> None:
    git_remote.commit("feat(checkout): one-page checkout (#41)")
    git_remote.commit("fix: rounding of totals\n\nRisk: prices shown change by a cent")
    git_remote.commit("perf!: drop the legacy cache\n\nBREAKING CHANGE: clients must retry")
    git_remote.push()


PEOPLE = """
[changes]
notify_authors = true
[changes.people]
"Dev@Example.com" = "U0DEV"
"""


async def test_a_candidate_shows_what_it_brings_and_what_is_new_since_the_last_one(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(production_config(git_remote, tmp_path, extra=PEOPLE))
    conventional_history(git_remote)
    await bot.command("rc", user="U0ALICE", user_name="alice")
    message = await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    # Counted from the newest final tag (production runs nothing the bot knows yet).
    summary = "4 changes by 1 person · 1 breaking · 1 risk"
    assert f"📦 {summary} (listed in the thread)" in bot.slack.text_of(message)
    thread = thread_text(bot.slack, message)
    assert "Breaking changes" in thread and "Features" in thread and "Fixes" in thread
    assert "prices shown change by a cent" in thread  # the Risk: trailer
    assert "#41" in thread
    assert "📣 Changes by <@U0DEV> are in this release." in thread  # git's dev@example.com
    listed = [m for m in bot.slack.thread(message.ts) if "What is in it" in (m.text or "")]
    assert len(listed) == 1 and validate_blocks(listed[0].blocks) == []

    git_remote.commit("fix: typo on the receipt")
    git_remote.push()
    await bot.command("rc", user="U0ALICE", user_name="alice")
    second = await wait_for_gates(bot.slack, "v0.15.0-rc.2")
    assert "📦 5 changes" in bot.slack.text_of(second)
    assert "Since `v0.15.0-rc.1`: 1 change by 1 person" in thread_text(bot.slack, second)

    before = len(bot.slack.calls_to("response_url"))
    await bot.command("changes v0.15.0-rc.1")
    [answer] = await bot.slack.wait_for(
        lambda: [
            c
            for c in bot.slack.calls_to("response_url")[before:]
            if "What is in it" in c.params.get("text", "")
        ]
    )
    assert validate_blocks(answer.params["blocks"]) == []
    assert summary in bot.slack.text_of(answer.params)


async def test_the_final_tag_keeps_the_changes_and_a_rollback_says_what_it_takes_away(
    start_bot, git_remote, tmp_path: Path
):
    bot = await start_bot(production_config(git_remote, tmp_path))
    conventional_history(git_remote)
    await in_production(bot, git_remote)  # v0.14.1 ran; v0.15.0 replaced it
    annotation = git("tag", "-l", "--format=%(contents)", "v0.15.0", cwd=git_remote.bare)
    approvals = annotation.index("Approved-by:")
    changes = annotation.index("Changes since production (v0.14.1): 4 changes by 1 person")
    assert approvals < changes
    assert "Features:\n  " in annotation and "checkout: one-page checkout (#41)" in annotation
    # No commit subject can start a line of the annotation (an "Approved-by:" forged in git).
    for line in annotation[changes:].splitlines()[1:]:
        assert not line or line.startswith("  ") or line.endswith(":"), line

    # Nothing new since what production runs: no candidate, unless asked for anyway.
    before = len(bot.slack.calls_to("response_url"))
    await bot.command("rc", user="U0ALICE", user_name="alice")
    await bot.slack.wait_for(
        lambda: [
            c
            for c in bot.slack.calls_to("response_url")[before:]
            if "Nothing changed since production" in bot.slack.text_of(c.params)
            and "--allow-empty" in bot.slack.text_of(c.params)
        ]
    )
    assert release_message(bot.slack, "v0.16.0-rc.1") is None

    await bot.command('rollback --reason "checkout errors"', user="U0BOB", user_name="bob")
    text = await rolled_back(bot)
    assert "to `v0.14.1` takes away 4 changes by 1 person" in text
    assert "one-page checkout" in text


async def what_a_rollback_takes_away(web) -> list[str]:
    """Bob rolls production back; what the thread then hears it takes away."""
    await web.command('rollback production --reason "errors"', user="U0BOB", user_name="bob")
    return await web.slack.wait_for(
        lambda: [
            web.slack.text_of(m)
            for m in web.slack.messages().values()
            if "takes away" in web.slack.text_of(m)
        ],
        timeout=30,
    )


async def test_a_rollback_that_is_a_workers_first_job_still_says_what_it_takes_away(
    start_bot, git_remote, tmp_path: Path
):
    # A worker just started has no clone yet: what the rollback removes is read once the
    # target is checked out (which clones), not before, when there was nothing to read.
    config = production_config(git_remote, tmp_path)
    web = await start_bot(config, role="web", name="web")
    tags = git_remote.remote_tags()
    store = web.services.store
    await store.set_environment_version("production", "0.14.0", "v0.14.0", tags["v0.14.0"])
    await store.set_environment_version("production", "0.14.1", "v0.14.1", tags["v0.14.1"])
    await start_bot(config, role="worker", name="fresh-worker")
    assert not (tmp_path / "state-fresh-worker" / "repo").exists()

    said = await what_a_rollback_takes_away(web)
    assert "Rolling back *production* to `v0.14.0` takes away 1 change" in said[0]
    assert "fourth" in said[0]


async def test_a_rollback_by_a_worker_whose_clone_is_older_than_what_runs_says_what_goes(
    start_bot, git_remote, tmp_path: Path
):
    # The worker's clone has the target, so its checkout fetches nothing; what runs now was
    # released after that clone was last fetched (by another worker): it fetches to say.
    config = production_config(git_remote, tmp_path)
    web = await start_bot(config, role="web", name="web")
    state = tmp_path / "state-w"  # the worker's (start_bot names it after the bot)
    state.mkdir(mode=0o700)
    git("clone", "-q", "--no-checkout", str(git_remote.bare), "repo", cwd=state)
    git_remote.commit("fifth: a faster checkout")
    git_remote.tag("v0.14.2", annotated=True)
    git_remote.push()
    tags = git_remote.remote_tags()
    store = web.services.store
    await store.set_environment_version("production", "0.14.1", "v0.14.1", tags["v0.14.1"])
    await store.set_environment_version("production", "0.14.2", "v0.14.2", tags["v0.14.2"])
    await start_bot(config, role="worker", name="w")

    said = await what_a_rollback_takes_away(web)
    assert "Rolling back *production* to `v0.14.1` takes away 2 changes" in said[0]
    assert "a faster checkout" in said[0]


async def test_releasebot_notes_prints_markdown_and_json(git_remote, tmp_path: Path):
    conventional_history(git_remote)
    git("tag", "-a", "v0.15.0", "-m", "v0.15.0", cwd=git_remote.work)
    git("push", "-q", "origin", "v0.15.0", cwd=git_remote.work)
    path = write_config(
        tmp_path,
        config_text(
            url=str(git_remote.bare),
            environments=[environment("production", "true")],
            extra='[changes]\npr_url = "https://github.com/acme/site/pull/{n}"\n',
        ),
    )
    env = {**os.environ, "RELEASEBOT_STATE_DIR": str(tmp_path / "notes-state")}

    async def notes(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.runtime.cli",
            "notes",
            *args,
            "--config",
            str(path),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        return process.returncode or 0, out.decode(), err.decode()

    code, out, err = await notes("v0.15.0")
    assert code == 0, err
    assert out.startswith("# v0.15.0 (since v0.14.1)\n")
    assert "## Features" in out and "[#41](https://github.com/acme/site/pull/41)" in out
    assert "## Risks" in out and "prices shown change by a cent" in out
    code, out, _ = await notes("0.15.0", "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["version"] == "v0.15.0" and data["since"] == "v0.14.1"
    code, _, err = await notes("v9.9.9")
    assert code == 2 and "has no tag v9.9.9" in err
