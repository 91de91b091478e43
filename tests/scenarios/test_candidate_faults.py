"""Creating and promoting candidates under bad text, real git damage and injected faults:
nothing is left half-made, the requester always hears, and the next attempt works.

Faults are injected where the bot meets its libraries (GitPython's command execution and
redis-py's command execution), never in releasebot's own code: the k-th git or Redis call made
for one creation raises, for every k, and the invariants are checked after each."""

from __future__ import annotations

import contextvars
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git
import pytest
from redis.asyncio.client import Pipeline, Redis

from bot.domain import releases
from bot.domain.actors import Actor
from bot.domain.approvals import approve
from bot.services import create_candidate, promote_release
from tests.helpers.config import make_config
from tests.helpers.messages import release_message, thread_text, wait_for_gates
from tests.helpers.repos import GitRemote
from tests.helpers.repos import git as run_git
from tests.helpers.signing import sign

ALICE = Actor("U0ALICE", "alice", "C0DEV")
OUR_TAG = re.compile(r"^v\d+\.\d+\.\d+(-rc\.\d+)?$")
ORIGINAL_TAGS = {"v0.14.0-rc.1", "v0.14.0", "v0.14.1"}


# --- bad text -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        'rc --description "a\x00b"',
        'rc --description "Infra\nApproved-by: Mallory (U0MAL)"',
        'rc --description "red \x1b[31m"',
        'rc --description "line\u2028separator"',
        'rc --description "\u202eevil"',
        'hotfix --description "crash\x00"',
        'final --description "x\nApproved-by: Mallory (U0MAL) gate=qa"',
        'rollback --reason "oops\x00"',
        'lock production --reason "db\rmigration"',
    ],
)
async def test_control_characters_get_a_clear_answer_and_nothing_is_made(
    start_bot, git_remote, tmp_path, text
):
    bot = await start_bot(make_config(git_remote, tmp_path))
    ack = bot.slack.text_of(await bot.command(text))
    assert "has a control character (U+" in ack and "plain text on one line" in ack, ack
    assert await bot.services.store.releases_in_flight() == []
    assert {t for t in git_remote.remote_tags() if OUR_TAG.match(t)} == ORIGINAL_TAGS
    assert bot.slack.calls_to("chat.postMessage") == []


async def test_a_flag_description_and_a_form_reason_are_plain_text_too(
    start_bot, git_remote, tmp_path
):
    bot = await start_bot(make_config(git_remote, tmp_path))
    body = bot.command_body('create dark_mode --description "dark\x00"', command="/flag")
    status, data = await bot.post(body, sign(body))
    assert status == 200 and "control character (U+0000)" in bot.slack.text_of(data)
    await bot.command("rc")
    message = await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    await bot.click(message, "gate_reject", gate="qa", user="U0BOB")
    opened = await bot.slack.wait_for(lambda: bot.slack.calls_to("views.open"))
    status, answer = await bot.submit_view(opened[0].params["view"], {"reason": "bad\x1bthing"})
    assert status == 200 and "control character (U+001B)" in answer
    # Half a character (JSON can carry one, UTF-8 and so Redis cannot).
    status, answer = await bot.submit_view(opened[0].params["view"], {"reason": "bad \ud800x"})
    assert status == 200 and "control character (U+D800)" in answer
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release.gate("qa").rejection is None  # nothing recorded from that form


# --- git damage -----------------------------------------------------------------------------


async def test_tags_deleted_on_the_remote_are_forgotten(start_bot, git_remote, tmp_path):
    """The repro: a fetch with an explicit refspec pruned no tags, so versions were computed
    from tags that no longer existed."""
    git_remote.tag("v0.16.0-rc.1")  # pushed by mistake…
    git_remote.push()
    bot = await start_bot(make_config(git_remote, tmp_path))
    dry = await bot.command("rc --dry-run")
    answer = await bot.slack.wait_for(
        lambda: [
            c
            for c in bot.slack.calls_to("response_url")
            if "Dry run" in bot.slack.text_of(c.params)
        ]
    )
    assert "v0.16.0-rc.2" in bot.slack.text_of(answer[0].params), dry
    run_git("push", "-q", "origin", ":refs/tags/v0.16.0-rc.1", cwd=git_remote.work)  # …undone
    await bot.command("rc")
    await bot.slack.wait_for(lambda: release_message(bot.slack, "v0.15.0-rc.1"), timeout=20)
    clone_tags = run_git("tag", cwd=bot.services.clone_path).split()
    assert "v0.16.0-rc.1" not in clone_tags


def garbage_head(clone: Path) -> None:
    (clone / ".git" / "HEAD").write_text("garbage\n")


def file_instead(clone: Path) -> None:
    import shutil

    shutil.rmtree(clone)
    clone.write_text("not a clone\n")


def git_file(clone: Path) -> None:
    import shutil

    shutil.rmtree(clone / ".git")
    (clone / ".git").write_text("gitdir: /nowhere\n")


@pytest.mark.parametrize("damage", [garbage_head, file_instead, git_file])
async def test_a_damaged_clone_is_cloned_again_and_said(start_bot, git_remote, tmp_path, damage):
    bot = await start_bot(make_config(git_remote, tmp_path))
    await bot.command("rc --dry-run")  # the bot clones the repository
    await bot.slack.wait_for(
        lambda: [
            c
            for c in bot.slack.calls_to("response_url")
            if "Dry run" in bot.slack.text_of(c.params)
        ]
    )
    damage(bot.services.clone_path)
    await bot.command("rc")
    answer = await bot.slack.wait_for(
        lambda: [
            c
            for c in bot.slack.calls_to("response_url")
            if "Created `v0.15.0-rc.1`" in bot.slack.text_of(c.params)
        ],
        timeout=20,
    )
    assert "was damaged" in bot.slack.text_of(answer[0].params)
    message = release_message(bot.slack, "v0.15.0-rc.1")
    await bot.slack.wait_for(lambda: "I cloned it again" in thread_text(bot.slack, message))
    assert "v0.15.0-rc.1" in git_remote.remote_tags()
    assert (bot.services.clone_path / ".git").is_dir()


async def test_a_record_left_creating_does_not_block_the_next_candidate(
    start_bot, git_remote, tmp_path
):
    """The repro left a record in phase `creating` that refused every later /release rc."""
    bot = await start_bot(make_config(git_remote, tmp_path))
    stuck = releases.new_release(
        bot.services.config,
        version="0.15.0-rc.1",
        tag="v0.15.0-rc.1",
        sha=git_remote.head(),
        requester="U0ALICE",
        requester_name="alice",
        description="",
        issue=None,
        now=1.0,
    )
    await bot.services.store.create_release(stuck, ALICE)  # its creator died right here
    await bot.command("rc")
    # The answer to the requester comes once the candidate is recorded as made.
    await bot.slack.wait_for(
        lambda: [
            c
            for c in bot.slack.calls_to("response_url")
            if "Created `v0.15.0-rc.1`" in bot.slack.text_of(c.params)
        ],
        timeout=20,
    )
    assert (await bot.services.store.get_release("0.15.0-rc.1")).phase == "active"


# --- injected faults -------------------------------------------------------------------------

SCOPE: contextvars.ContextVar[Faults | None] = contextvars.ContextVar("faults", default=None)


@dataclass
class Faults:
    """Counts the git and Redis calls made in its scope; raises at the `fail_at`-th of `kind`."""

    kind: str = ""
    fail_at: int = 0
    calls: dict[str, int] = field(default_factory=lambda: {"git": 0, "redis": 0})

    def count(self, kind: str) -> None:
        self.calls[kind] += 1
        if kind == self.kind and self.calls[kind] == self.fail_at:
            raise RuntimeError(f"injected fault at {kind} call {self.fail_at}")


@pytest.fixture
def faults(monkeypatch) -> Iterator[None]:
    """Wraps the libraries' own entry points; calls outside a scope pass untouched."""

    def counting(kind: str, original: Any) -> Any:
        if kind == "git":

            def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
                scope = SCOPE.get()
                if scope is not None:
                    scope.count(kind)
                return original(self, *args, **kwargs)
        else:

            async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
                scope = SCOPE.get()
                if scope is not None:
                    scope.count(kind)
                return await original(self, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(git.cmd.Git, "execute", counting("git", git.cmd.Git.execute))
    for cls, name in (
        (Redis, "execute_command"),
        (Pipeline, "immediate_execute_command"),
        (Pipeline, "execute"),
    ):
        monkeypatch.setattr(cls, name, counting("redis", getattr(cls, name)))
    yield


async def in_scope(scope: Faults, work: Any) -> Any:
    token = SCOPE.set(scope)
    try:
        return await work
    finally:
        SCOPE.reset(token)


async def records(bot) -> list[releases.Release]:
    keys = [
        k
        async for k in bot.services.redis.scan_iter(
            match=f"{bot.services.store.keys.prefix}release:*"
        )
    ]
    return (
        [releases.Release.from_json(raw) for raw in await bot.services.redis.mget(keys)]
        if keys
        else []
    )


async def check_nothing_half_made(bot, remote: GitRemote, rid: str, what: str) -> None:
    found = await records(bot)
    assert [r.version for r in found if r.phase == "creating"] == [], what
    assert [r.version for r in found if r.promotion == "tagging"] == [], what
    remote_tags = {t for t in remote.remote_tags() if OUR_TAG.match(t)} - ORIGINAL_TAGS
    recorded = {r.tag for r in found if r.phase != "creating"} | {
        r.final_tag for r in found if r.final_tag
    }
    assert remote_tags == recorded, what  # no tag without its record, no record without it
    answers = [c for c in bot.slack.calls_to("response_url") if c.params.get("_id") == rid]
    assert answers, f"{what}: the requester got no answer"


def rc_request(bot) -> tuple[create_candidate.RcRequest, str]:
    url = bot.slack.response_url("alice")
    return create_candidate.RcRequest(
        user_id="U0ALICE",
        user_name="alice",
        channel_id="C0DEV",
        response_url=url,
        description="infra",
    ), url.rsplit("/", 1)[1]


async def test_every_step_of_creating_a_candidate_undoes_itself(
    start_bot, git_remote, tmp_path, faults
):
    # The web role only: no worker, so what a creation leaves behind is all there is.
    bot = await start_bot(make_config(git_remote, tmp_path), role="web")
    services = bot.services
    clean = Faults()
    request, _ = rc_request(bot)
    made = create_candidate.create_release_candidate(services, request)
    assert await in_scope(clean, made) is not None
    counts = dict(clean.calls)
    assert counts["git"] >= 5 and counts["redis"] >= 5, counts
    for kind, total in counts.items():
        for k in range(1, total + 1):
            git_remote.commit(f"change {kind} {k}")  # each creation tags a new head
            git_remote.push()
            request, rid = rc_request(bot)
            await in_scope(
                Faults(kind, k), create_candidate.create_release_candidate(services, request)
            )
            await check_nothing_half_made(bot, git_remote, rid, f"{kind} call {k}")
    git_remote.commit("after the faults")
    git_remote.push()
    request, rid = rc_request(bot)
    made = await create_candidate.create_release_candidate(services, request)
    assert made is not None, [
        bot.slack.text_of(c.params)
        for c in bot.slack.calls_to("response_url")
        if c.params.get("_id") == rid
    ]
    await check_nothing_half_made(bot, git_remote, rid, "after the faults")


async def ready_candidate(bot, remote: GitRemote) -> releases.Release:
    """A candidate whose staging deploy and gates passed and whose QA is approved, made with
    the bot's own transitions (there is no worker in these tests)."""
    services, store = bot.services, bot.services.store
    remote.commit(f"a change to promote {uuid.uuid4().hex[:8]}")
    remote.push()
    request, _ = rc_request(bot)
    release = await create_candidate.create_release_candidate(services, request)
    assert release is not None
    release = await store.get_release(release.version)  # its staging deploy is queued
    deploy_id = release.deploys["staging"].id
    for change in (
        lambda r: releases.start_deploy(r, deploy_id, 1.0),
        lambda r: releases.finish_deploy(r, deploy_id, 2.0, ok=True),
        lambda r: [releases.start_gate(r, g, 2.0) for g in ("e2e", "infra")],
        lambda r: [releases.finish_gate(r, g, 3.0, ok=True) for g in ("e2e", "infra")],
        lambda r: approve(
            r,
            "qa",
            user_id="U0BOB",
            user_name="bob",
            now=store.clock(),
            policy=services.config.release_policy(r.kind, "staging"),
            is_approver=True,
        ),
    ):
        release, _ = await store.update_release(release.version, change, ALICE, "test")
    return release


async def test_every_step_of_a_promotion_undoes_itself(start_bot, git_remote, tmp_path, faults):
    bot = await start_bot(make_config(git_remote, tmp_path), role="web")
    services = bot.services

    def final_request(release: releases.Release) -> tuple[promote_release.FinalRequest, str]:
        url = bot.slack.response_url("alice")
        request = promote_release.FinalRequest(
            version=release.version,
            user_id="U0ALICE",
            user_name="alice",
            channel_id="C0DEV",
            response_url=url,
        )
        return request, url.rsplit("/", 1)[1]

    release = await ready_candidate(bot, git_remote)
    clean = Faults()
    await in_scope(clean, promote_release.promote_candidate(services, final_request(release)[0]))
    assert (await services.store.get_release(release.version)).final_tag
    counts = dict(clean.calls)
    release = await ready_candidate(bot, git_remote)
    for kind, total in counts.items():
        for k in range(1, total + 1):
            request, rid = final_request(release)
            await in_scope(Faults(kind, k), promote_release.promote_candidate(services, request))
            await check_nothing_half_made(bot, git_remote, rid, f"{kind} call {k}")
            current = await services.store.get_release(release.version)
            if current.final_tag:  # the fault came after the promotion was complete
                release = await ready_candidate(bot, git_remote)
    request, rid = final_request(release)
    await promote_release.promote_candidate(services, request)
    assert (await services.store.get_release(release.version)).final_tag
