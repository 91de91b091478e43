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


def _failed(error: str, started: float, *, tail: str = "", link: str = "") -> CommandResult:
    return CommandResult(
        exit_code=None,
        timed_out=False,
        duration=time.monotonic() - started,
        tail=tail,
        error=error,
        link=link,
    )


async def deploy(
    needs: GitHubDeployNeeds,
    environment: EnvironmentConfig,
    values: Mapping[str, str],
    *,
    hold: Callable[[], Awaitable[bool]],
    lock_lost: str,
    on_line: Callable[[str], None] | None = None,
    say: Say | None = None,
) -> CommandResult:
    """Deploy `values` (RELEASE_* and FLAG* values, as a command gets them) to
    `environment` through GitHub. `hold` is asked before each look (False: the lock is gone,
    and `lock_lost` is the outcome's reason)."""
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
    if via.github_workflow:
        return await follow.workflow()
    return await follow.deployment()


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

    def timed_out(self, tail: str = "", link: str = "") -> CommandResult:
        return CommandResult(
            exit_code=None, timed_out=True, duration=self.elapsed(), tail=tail, link=link
        )

    # ---- a workflow run ---------------------------------------------------------------------

    async def workflow(self) -> CommandResult:
        via = self.via
        name = via.github_workflow
        correlation = f"rb-{secrets.token_hex(6)}"
        ref = rules.dispatch_ref(via.ref, self.values, self.config.repository.branch)
        inputs = rules.workflow_inputs(
            dict(via.inputs), self.values, via.correlation_input, correlation
        )
        since = time.time()
        dispatch_trouble = ""
        try:
            await self.github.dispatch(name, ref, inputs)
        except GitHubRefused as exc:
            return _failed(f"GitHub refused to start {name} on {ref}: {exc}", self.started)
        except GitHubDown as exc:
            # GitHub may have taken it all the same: look for the run, never dispatch twice
            # (two runs would be two deploys at once in one environment).
            dispatch_trouble = str(exc)
            log.warning("dispatch of %s may have failed (%s); looking for its run", name, exc)
        log.info("dispatched %s on %s as %s", name, ref, correlation)
        self.on_line(f"dispatched {name} on {ref}; waiting for GitHub to list the run")
        run = await self._find(name, correlation, since)
        if isinstance(run, CommandResult):
            if dispatch_trouble and run.error and "no run" in run.error:
                return _failed(
                    f"the dispatch of {name} failed ({dispatch_trouble}) and no run appeared",
                    self.started,
                )
            return run
        await self.say(
            f"▶️ GitHub Actions is deploying to *{self.environment.name}*: "
            f"{link(run.url, f'{name} run {run.id}')} ({escape(run.progress())})."
        )
        return await self._follow_run(run)

    async def _find(
        self, name: str, correlation: str, since: float
    ) -> rules.RunState | CommandResult:
        deadline = self.started + self.via.start_timeout_seconds
        trouble = ""
        while True:
            if not await self.hold():
                return _failed(self.lock_lost, self.started)
            try:
                found = await self.github.find_run(name, correlation, since)
            except GitHubDown as exc:
                found, trouble = None, str(exc)
            except GitHubRefused as exc:
                return _failed(f"GitHub refused to list the runs of {name}: {exc}", self.started)
            if found is not None:
                return found
            if time.monotonic() >= deadline or self.over_time():
                why = f" (GitHub: {trouble})" if trouble else ""
                return _failed(
                    f"no run of {name} started within {self.via.start_timeout_seconds:g} s of "
                    f"its dispatch{why}; GitHub accepted it, so check that the workflow's "
                    f"run-name shows inputs.{self.via.correlation_input}",
                    self.started,
                )
            await asyncio.sleep(self.poll)

    async def _follow_run(self, run: rules.RunState) -> CommandResult:
        found_at = time.monotonic()
        said_started = run.started
        shown = ""
        while True:
            line = run.progress()
            if line != shown:
                self.on_line(line)
                shown = line
            if run.started and not said_started:
                said_started = True
                await self.say(f"⚙️ {link(run.url, f'Run {run.id}')} is {escape(line)}.")
            if run.finished:
                return await self._concluded(run)
            if not await self.hold():
                await self._cancel(run, "the worker lost the environment lock")
                return _failed(self.lock_lost, self.started, link=run.url)
            if self.over_time():
                await self._cancel(run, "it ran out of time")
                return self.timed_out(link=run.url)
            if not run.started and time.monotonic() - found_at > self.via.start_timeout_seconds:
                await self._cancel(run, "no runner picked it up")
                return _failed(
                    f"run {run.id} stayed {run.status} for "
                    f"{self.via.start_timeout_seconds:g} s: no runner picked it up",
                    self.started,
                    link=run.url,
                )
            await asyncio.sleep(self.poll)
            try:
                run = await self.github.run(run.id)
            except GitHubDown:
                continue  # looked at again next time; the timeout bounds the wait
            except GitHubRefused as exc:
                return _failed(
                    f"GitHub refused to show run {run.id}: {exc}", self.started, link=run.url
                )

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

    async def _cancel(self, run: rules.RunState, why: str) -> None:
        """Stop the run: whatever it does next would be a deploy nobody holds the lock for."""
        try:
            await self.github.cancel(run.id)
        except (GitHubDown, GitHubRefused) as exc:
            log.warning("could not cancel run %s (%s): %s", run.id, why, exc)
            which = link(run.url, f"run {run.id}")
            await self.say(
                f"⚠️ I could not cancel {which} ({why}): {escape(str(exc))}. Cancel it on GitHub."
            )
        else:
            await self.say(f"⏹️ I cancelled {link(run.url, f'run {run.id}')}: {why}.")

    # ---- a GitHub Deployment ----------------------------------------------------------------

    async def deployment(self) -> CommandResult:
        env = self.environment
        tag = self.values.get("RELEASE_TAG", "")
        sha = self.values.get("RELEASE_SHA", "")
        try:
            deployment_id, resolved = await self.github.create_deployment(
                tag,
                env.name,
                payload=_payload(self.values),
                description=f"releasebot: {tag} to {env.name}",
                production=env.name == self.config.last_environment.name,
            )
        except GitHubRefused as exc:
            return _failed(f"GitHub refused the Deployment of {tag}: {exc}", self.started)
        except GitHubDown as exc:
            return _failed(
                f"the Deployment of {tag} could not be created ({exc}); if GitHub created it "
                f"all the same, look at {env.name}'s deployments on GitHub before deploying "
                "again",
                self.started,
            )
        if sha and resolved and resolved != sha:
            await self._mark(deployment_id, "error", f"{tag} is not the commit releasebot deploys")
            return _failed(
                f"GitHub's {tag} is {resolved[:10]}, not the released {sha[:10]} (was the tag "
                "moved?); the Deployment was marked an error",
                self.started,
            )
        await self.say(
            f"📦 GitHub Deployment {deployment_id} of `{tag}` to *{env.name}* created; "
            "waiting for its executor to report."
        )
        shown, said_started = "", False
        while True:
            try:
                state = await self.github.deployment_state(deployment_id)
            except GitHubDown:
                state = None  # looked at again next time; the timeouts bound the wait
            except GitHubRefused as exc:
                return _failed(
                    f"GitHub refused to show Deployment {deployment_id}: {exc}", self.started
                )
            if isinstance(state, rules.DeploymentState):
                line = state.progress()
                if line != shown:
                    self.on_line(f"Deployment {deployment_id}: {line}")
                    shown = line
                if state.started and not said_started:
                    said_started = True
                    await self.say(f"⚙️ Deployment {deployment_id} is {escape(line)}.")
                if state.finished:
                    return self._deployed(deployment_id, state)
            never_started = not said_started and (self.elapsed() > self.via.start_timeout_seconds)
            if never_started:
                await self._mark(deployment_id, "error", "no executor reported on it in time")
                return _failed(
                    f"nothing reported on Deployment {deployment_id} within "
                    f"{self.via.start_timeout_seconds:g} s: is an executor (a workflow on "
                    "`deployment`) listening?",
                    self.started,
                )
            if not await self.hold():
                await self._mark(deployment_id, "error", "releasebot lost the environment lock")
                return _failed(
                    f"{self.lock_lost}; the Deployment's executor may still be running: "
                    "check it on GitHub",
                    self.started,
                )
            if self.over_time():
                await self._mark(deployment_id, "error", "it ran out of time")
                return self.timed_out()
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
            payload=_payload(values),
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
    except (GitHubDown, GitHubRefused, TimeoutError) as exc:
        log.warning("could not record the deploy to %s on GitHub: %s", environment.name, exc)
