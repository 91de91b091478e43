"""Deploys GitHub runs, followed from the worker that holds the environment's lock.

An environment with `deploy = { github_workflow = ... }` is deployed by a workflow run: the bot
dispatches it with a correlation id among its inputs (GitHub answers a dispatch with no run
id; the workflow shows the id in its run-name), finds the run by that id, follows it to its
conclusion and reports where it is. One with `deploy = { github_deployment = true }` is
deployed by whatever executes GitHub Deployments: the bot creates one and follows the
statuses reported on it. Either way the deploy holds the environment's lock while GitHub
works, exactly as a command would, so the lock, the lease, the reaper, rollbacks and the
monitoring window are the same whichever way an environment deploys.

What GitHub says decides the outcome; a deploy never succeeds on a guess. A run or Deployment
nothing starts fails after `start_timeout_seconds`; one that outlasts the environment's
`timeout_seconds`, or whose worker loses the lock, is cancelled (a run) or marked failed (a
Deployment, which nothing can stop from here) and fails with that reason.

After a deploy by any other means, `record` leaves a Deployment and its status on GitHub, so
its environment pages show what the bot shipped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from bot.blocks.release import escape, link
from bot.domain import github_deploys as rules
from bot.domain.command_results import CommandResult
from bot.domain.config import EnvironmentConfig, GitHubDeployConfig
from bot.services.ports import GitHubDown, GitHubRefused, HasConfig, HasGitHubDeploys

log = logging.getLogger(__name__)

LOG_LINES = 20
# A Deployment recorded after a deploy is bookkeeping: it never holds the deploy up for long.
RECORD_SECONDS = 20.0

Say = Callable[[str], Awaitable[None]]


class GitHubDeployNeeds(HasConfig, HasGitHubDeploys, Protocol):
    """The config (the repository, how often to look) and GitHub's runs and Deployments."""


def _failed(
    error: str, started: float, *, tail: str = "", link: str = "", unsettled: str = ""
) -> CommandResult:
    return CommandResult(
        exit_code=None,
        timed_out=False,
        duration=time.monotonic() - started,
        tail=tail,
        error=error,
        link=link,
        unsettled=unsettled,
    )


async def deploy(
    needs: GitHubDeployNeeds,
    environment: EnvironmentConfig,
    values: Mapping[str, str],
    *,
    hold: Callable[[], Awaitable[bool]],
    lock_lost: str,
    keep_locked: Callable[[str], Awaitable[object]],
    on_line: Callable[[str], None] | None = None,
    say: Say | None = None,
) -> CommandResult:
    """Deploy `values` (RELEASE_* and FLAG* values, as a command gets them) to
    `environment` through GitHub. `hold` is asked before each look (False: the lock is gone,
    and `lock_lost` is the outcome's reason).

    Whenever it gives up on a deploy GitHub may still be running, it stops what it can, and
    what it cannot stop is the outcome's `unsettled` reason: the caller keeps the environment
    locked. A worker stopped meanwhile (shutdown, the queue's timeout) keeps it locked through
    `keep_locked` before it goes."""
    via = environment.deploy
    assert via is not None, "only for an environment GitHub deploys"
    started = time.monotonic()
    github = needs.github_deploys
    if github is None:
        return _failed(
            f"{environment.name} deploys through GitHub, but the bot has no GitHub access "
            "(set GITHUB_TOKEN, or GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY)",
            started,
        )
    follow = _Follow(needs, environment, via, values, hold, lock_lost, on_line, say, started)
    try:
        return await (follow.workflow() if via.github_workflow else follow.deployment())
    except asyncio.CancelledError:
        try:
            unsettled = await asyncio.wait_for(
                follow.settle("the worker stopped"), SETTLE_SECONDS + 5
            )
        except Exception:
            unsettled = "the worker stopped before it could stop what GitHub runs"
        if unsettled:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(keep_locked(unsettled), 5)
        raise
    except Exception as exc:
        # A GitHub answer of a shape nobody expected must not leave the deploy "running".
        log.exception("following the deploy to %s on GitHub failed", environment.name)
        try:
            unsettled = await asyncio.wait_for(
                follow.settle(f"an unexpected error ({type(exc).__name__})"), SETTLE_SECONDS + 5
            )
        except Exception:
            unsettled = "following it on GitHub failed before what GitHub runs could be stopped"
        return _failed(
            f"following the deploy on GitHub failed unexpectedly ({type(exc).__name__})",
            started,
            unsettled=unsettled,
        )


# How long a run the bot cancelled may take to stop before the environment stays locked.
SETTLE_SECONDS = 30.0


class _Follow:
    """One deploy GitHub runs, from its start to its outcome."""

    def __init__(
        self,
        needs: GitHubDeployNeeds,
        environment: EnvironmentConfig,
        via: GitHubDeployConfig,
        values: Mapping[str, str],
        hold: Callable[[], Awaitable[bool]],
        lock_lost: str,
        on_line: Callable[[str], None] | None,
        say: Say | None,
        started: float,
    ) -> None:
        github = needs.github_deploys
        assert github is not None
        self.github = github
        self.config = needs.config
        self.environment = environment
        self.via = via
        self.values = values
        self.hold = hold
        self.lock_lost = lock_lost
        self.on_line = on_line or (lambda _line: None)
        self._say = say
        self.started = started
        self.poll = needs.config.github.poll_seconds
        # What GitHub may be running for this deploy, for `settle`.
        self.dispatched = False
        self.correlation = f"rb-{secrets.token_hex(6)}"
        self.since = time.time()
        self.run: rules.RunState | None = None
        self.deployment_id: int | None = None
        self.deployment_maybe = False  # a create whose answer was lost
        self.deployment_done = False

    async def say(self, text: str) -> None:
        if self._say is not None:
            try:
                await self._say(text)
            except Exception:  # the deploy goes on; the outcome is said again at its end
                log.warning("could not say in the thread: %s", text, exc_info=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def over_time(self) -> bool:
        return self.elapsed() > self.environment.timeout_seconds

    async def given_up(
        self, why: str, *, error: str | None = None, timed_out: bool = False, link: str = ""
    ) -> CommandResult:
        """The outcome of a deploy the bot stops following: what GitHub runs for it is
        stopped, or named as what keeps the environment locked."""
        unsettled = await self.settle(why)
        return CommandResult(
            exit_code=None,
            timed_out=timed_out,
            duration=self.elapsed(),
            tail="",
            error=None if timed_out else (error or why),
            link=link or (self.run.url if self.run else ""),
            unsettled=unsettled,
        )

    async def settle(self, why: str) -> str:
        """Stop whatever GitHub runs for this deploy; "" once nothing does, else why the
        environment must stay locked (a run that would not stop, a dispatch whose run never
        showed, a Deployment's executor, which nothing stops from here)."""
        if self.via.github_workflow:
            return await self._settle_run(why)
        if self.deployment_id is not None and not self.deployment_done:
            await self._mark(self.deployment_id, "error", f"releasebot gave up: {why}")
            return (
                f"Deployment {self.deployment_id}'s executor may still be deploying ({why}); "
                "nothing stops it from here"
            )
        if self.deployment_maybe:
            return (
                "GitHub may have created the Deployment whose answer was lost; its executor may "
                "be deploying"
            )
        return ""

    async def _settle_run(self, why: str) -> str:
        name = self.via.github_workflow
        if self.run is None and self.dispatched:
            with contextlib.suppress(GitHubDown, GitHubRefused):
                self.run = await self.github.find_run(name, self.correlation, self.since)
            if self.run is None:
                return (
                    f"GitHub accepted the dispatch of {name} ({self.correlation}), but its run "
                    f"never showed ({why}); if it runs, it deploys"
                )
        run = self.run
        if run is None or run.finished:
            return ""
        try:
            await self.github.cancel(run.id)
        except (GitHubDown, GitHubRefused) as exc:
            log.warning("could not cancel run %s (%s): %s", run.id, why, exc)
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(GitHubDown, GitHubRefused):
                run = self.run = await self.github.run(run.id)
                if run.finished:
                    await self.say(f"⏹️ I stopped {link(run.url, f'run {run.id}')}: {why}.")
                    return ""
            await asyncio.sleep(min(self.poll, 2.0))
        return f"run {run.id} did not stop after I cancelled it ({why}): {run.url}"

    # ---- a workflow run ---------------------------------------------------------------------

    async def workflow(self) -> CommandResult:
        via = self.via
        name = via.github_workflow
        ref = rules.dispatch_ref(via.ref, self.values, self.config.repository.branch)
        inputs = rules.workflow_inputs(
            dict(via.inputs), self.values, via.correlation_input, self.correlation
        )
        self.since = time.time()
        try:
            await self.github.dispatch(name, ref, inputs)
        except GitHubRefused as exc:
            return _failed(f"GitHub refused to start {name} on {ref}: {exc}", self.started)
        except GitHubDown as exc:
            # GitHub may have taken it all the same: look for the run, never dispatch twice
            # (two runs would be two deploys at once in one environment).
            log.warning("dispatch of %s may have failed (%s); looking for its run", name, exc)
        self.dispatched = True
        log.info("dispatched %s on %s as %s", name, ref, self.correlation)
        self.on_line(f"dispatched {name} on {ref}; waiting for GitHub to list the run")
        found = await self._find(name)
        if isinstance(found, CommandResult):
            return found
        self.run = found
        sha = self.values.get("RELEASE_SHA", "")
        if sha and found.head_sha and found.head_sha != sha:
            return await self.given_up(
                f"{ref} ran {found.head_sha[:10]}, not the released {sha[:10]} (was the tag moved?)"
            )
        await self.say(
            f"▶️ GitHub Actions is deploying to *{self.environment.name}*: "
            f"{link(found.url, f'{name} run {found.id}')} ({escape(found.progress())})."
        )
        return await self._follow_run(found)

    async def _find(self, name: str) -> rules.RunState | CommandResult:
        deadline = self.started + self.via.start_timeout_seconds
        trouble = ""
        while True:
            if not await self.hold():
                return await self.given_up(self.lock_lost)
            try:
                found = await self.github.find_run(name, self.correlation, self.since)
            except GitHubDown as exc:
                found, trouble = None, str(exc)
            except GitHubRefused as exc:
                return await self.given_up(f"GitHub refused to list the runs of {name}: {exc}")
            if found is not None:
                return found
            if time.monotonic() >= deadline or self.over_time():
                why = f" (GitHub: {trouble})" if trouble else ""
                return await self.given_up(
                    f"no run of {name} showed within {self.via.start_timeout_seconds:g} s of "
                    f"its dispatch{why}; check that the workflow's run-name shows "
                    f"inputs.{self.via.correlation_input}"
                )
            await asyncio.sleep(self.poll)

    async def _follow_run(self, run: rules.RunState) -> CommandResult:
        found_at = time.monotonic()
        ever_started = run.started
        shown = ""
        while True:
            self.run = run
            line = run.progress()
            if line != shown:
                self.on_line(line)
                shown = line
            if run.started and not ever_started:
                ever_started = True
                await self.say(f"⚙️ {link(run.url, f'Run {run.id}')} is {escape(line)}.")
            if run.finished:
                return await self._concluded(run)
            if not await self.hold():
                return await self.given_up(self.lock_lost)
            if self.over_time():
                return await self.given_up("it ran out of time", timed_out=True)
            if not ever_started and time.monotonic() - found_at > self.via.start_timeout_seconds:
                return await self.given_up(
                    f"run {run.id} stayed {run.status} for {self.via.start_timeout_seconds:g} s "
                    "and never started"
                    + (" (no runner picked it up)" if run.status != "waiting" else "")
                )
            await asyncio.sleep(self.poll)
            try:
                run = await self.github.run(run.id)
            except GitHubDown:
                continue  # looked at again next time; the timeout bounds the wait
            except GitHubRefused as exc:
                return await self.given_up(f"GitHub refused to show run {run.id}: {exc}")

    async def _concluded(self, run: rules.RunState) -> CommandResult:
        if run.conclusion == rules.SUCCEEDED:
            return CommandResult(
                exit_code=0, timed_out=False, duration=self.elapsed(), tail="", link=run.url
            )
        tail = ""
        with contextlib.suppress(GitHubDown, GitHubRefused):
            tail = await self.github.log_tail(run, LOG_LINES)
        return CommandResult(
            exit_code=1,
            timed_out=False,
            duration=self.elapsed(),
            tail=tail or "(GitHub gave no log lines; the run's page has them)",
            outcome=f"ended {run.conclusion or 'without a conclusion'} on GitHub Actions",
            link=run.url,
        )

    # ---- a GitHub Deployment ----------------------------------------------------------------

    async def deployment(self) -> CommandResult:
        env = self.environment
        tag = self.values.get("RELEASE_TAG", "")
        # The commit itself, not the tag: what is deployed is exactly what was approved,
        # even if someone moved the tag meanwhile.
        sha = self.values.get("RELEASE_SHA", "") or tag
        try:
            self.deployment_id, _ = await self.github.create_deployment(
                sha,
                env.name,
                task=DEPLOY_TASK,
                payload=_payload(self.values),
                description=f"releasebot: {tag} to {env.name}",
                production=env.name == self.config.last_environment.name,
            )
        except GitHubRefused as exc:
            return _failed(f"GitHub refused the Deployment of {tag}: {exc}", self.started)
        except GitHubDown as exc:
            self.deployment_maybe = True
            return await self.given_up(f"the Deployment of {tag} could not be created ({exc})")
        deployment_id = self.deployment_id
        await self.say(
            f"📦 GitHub Deployment {deployment_id} of `{tag}` to *{env.name}* created; "
            "waiting for its executor to report."
        )
        shown, ever_started = "", False
        while True:
            try:
                state = await self.github.deployment_state(deployment_id)
            except GitHubDown:
                state = None  # looked at again next time; the timeouts bound the wait
            except GitHubRefused as exc:
                return await self.given_up(
                    f"GitHub refused to show Deployment {deployment_id}: {exc}"
                )
            if state is not None:
                line = state.progress()
                if line != shown:
                    self.on_line(f"Deployment {deployment_id}: {line}")
                    shown = line
                if state.started and not ever_started:
                    ever_started = True
                    await self.say(f"⚙️ Deployment {deployment_id} is {escape(line)}.")
                if state.finished:
                    self.deployment_done = True
                    return self._deployed(deployment_id, state)
            if not ever_started and self.elapsed() > self.via.start_timeout_seconds:
                return await self.given_up(
                    f"nothing reported on Deployment {deployment_id} within "
                    f"{self.via.start_timeout_seconds:g} s: is an executor (a workflow on "
                    "`deployment`) listening?"
                )
            if not await self.hold():
                return await self.given_up(self.lock_lost)
            if self.over_time():
                return await self.given_up("it ran out of time", timed_out=True)
            await asyncio.sleep(self.poll)

    def _deployed(self, deployment_id: int, state: rules.DeploymentState) -> CommandResult:
        if state.succeeded:
            return CommandResult(
                exit_code=0, timed_out=False, duration=self.elapsed(), tail="", link=state.log_url
            )
        said = f": {state.description}" if state.description else ""
        return CommandResult(
            exit_code=1,
            timed_out=False,
            duration=self.elapsed(),
            tail=state.description or "(the executor said nothing more)",
            outcome=f"ended {state.state} (GitHub Deployment {deployment_id}{said})",
            link=state.log_url,
        )

    async def _mark(self, deployment_id: int, state: str, why: str) -> None:
        try:
            await self.github.set_deployment_state(
                deployment_id, state, description=why[:140], log_url=""
            )
        except (GitHubDown, GitHubRefused) as exc:
            log.warning("could not mark Deployment %s %s: %s", deployment_id, state, exc)


# The task of a Deployment an executor is to run, and of the bot's record of a deploy it ran
# another way: an executor acting on `deployment` events must act on DEPLOY_TASK only.
DEPLOY_TASK = "deploy"
RECORD_TASK = "deploy:record"


def _payload(values: Mapping[str, str]) -> dict[str, str | bool]:
    """What a Deployment carries for its executor (and for people reading it on GitHub)."""
    return {
        "version": values.get("RELEASE_VERSION", ""),
        "tag": values.get("RELEASE_TAG", ""),
        "sha": values.get("RELEASE_SHA", ""),
        "environment": values.get("RELEASE_ENV", ""),
        "rollback": values.get("RELEASE_ROLLBACK", "") == "1",
        "flags_commit": values.get("FLAGS_COMMIT", ""),
        "deployed_by": "releasebot",
    }


async def record(
    needs: GitHubDeployNeeds,
    environment: EnvironmentConfig,
    values: Mapping[str, str],
    result: CommandResult,
) -> None:
    """After a deploy by a command or a workflow, a Deployment and its status on GitHub say
    what the bot shipped where. Bookkeeping: a failure is logged, never the deploy's."""
    github = needs.github_deploys
    config = needs.config
    if github is None or not config.github.repository or not config.github.record_deployments:
        return
    if environment.deploy is not None and environment.deploy.github_deployment:
        return  # it is a Deployment already, with its executor's statuses
    tag = values.get("RELEASE_TAG", "")
    if not tag:
        return

    async def write() -> None:
        deployment_id, _ = await github.create_deployment(
            tag,
            environment.name,
            task=RECORD_TASK,
            payload={**_payload(values), "record_only": True},
            description=f"releasebot: {tag} to {environment.name}",
            production=environment.name == config.last_environment.name,
        )
        await github.set_deployment_state(
            deployment_id,
            "success" if result.ok else "failure",
            description=result.summary()[:140],
            log_url=result.link,
        )

    try:
        await asyncio.wait_for(write(), RECORD_SECONDS)
    except Exception as exc:  # bookkeeping: never the deploy's outcome
        log.warning("could not record the deploy to %s on GitHub: %s", environment.name, exc)
