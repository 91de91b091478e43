"""One deploy engine for release deploys, rollbacks and flag deploys.

Whatever is deployed, the same steps hold it together: take the environment's lock (refused
if anyone holds it), record the deploy's lease and its running-deploy entry (the reaper reports
a deploy whose lease lapsed: its worker died), keep both alive with the lock, check out what is
deployed, run the command under the process supervisor, let the caller record the outcome, and
clean up. What each kind records (a release's deploy, a rollback request, a flag request) and
says in Slack stays with its caller; the lock, the lease, the supervisor and the clean-up are
here, once.

The lock is the promise that two deploys never run in one environment: a command runs only
while the lock is safe (`RenewingLock.stop_at`, bot.adapters.redis.locks), its supervisor kills
it when that passes without a renewal (even if this worker is frozen), and every step after the
command asks again (`hold`) before it does anything more."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, ParamSpec, Protocol, TypeVar

from bot.domain.command_results import CommandResult
from bot.domain.config import CommandEnv, Config, EnvironmentConfig
from bot.domain.locks import LockHeld, LockInfo, LockKind
from bot.services import github_deploys
from bot.services.ports import (
    EnvironmentLock,
    GitError,
    HasConfig,
    HasGitHubDeploys,
    HasLocks,
    HasRepository,
    HasRunner,
    HasRunningDeploys,
    HasTransientErrors,
)

log = logging.getLogger(__name__)


class EngineNeeds(
    HasConfig,
    HasRepository,
    HasLocks,
    HasRunningDeploys,
    HasRunner,
    HasTransientErrors,
    HasGitHubDeploys,
    Protocol,
):
    """What every deploy holds and runs (a command, or a deploy GitHub runs)."""


T = TypeVar("T")
P = ParamSpec("P")

DeployKind = Literal["release", "rollback", "flags"]


class EnvironmentBusy(Exception):
    """Someone holds the environment: nothing was started."""

    def __init__(self, info: LockInfo) -> None:
        super().__init__(f"held by {info.holder}: {info.reason}")
        self.info = info


class GivenUp(Exception):
    """The job was given up on before it started (its worker froze after taking it, and the
    queue swept it): it is never run late, behind the back of people who saw it fail."""


class NotRecorded(Exception):
    """An outcome could not be written: Redis stayed unreachable for the whole retry time."""


@dataclass(frozen=True)
class Target:
    """What is deployed where, on whose behalf, and how the reaper finds its record."""

    kind: DeployKind
    deploy_id: str
    environment: EnvironmentConfig
    subject: str  # the record reported on: a release version, a rollback or flag request id
    holder: str  # shown as the lock's holder
    reason: str  # shown as the lock's reason
    # Reports the deploy failed when it did not end normally (the worker is shutting down);
    # the reaper does the same for a worker that died.
    on_stopped: Callable[[str], Awaitable[object]]

    def running_entry(self) -> dict[str, str]:
        entry: dict[str, str] = {
            "kind": self.kind,
            "environment": self.environment.name,
            "subject": self.subject,
        }
        if self.kind == "release":
            entry["version"] = self.subject  # as entries written before the kinds had it
        elif self.kind == "rollback":
            entry["rollback"] = self.subject
        return entry


def job_heartbeat(config: Config) -> int:
    """saq's heartbeat for a deploy job. saq aborts a job that stops heartbeating; our own
    liveness signal is the lease (the reaper reports a lost deploy within the lock's TTL), so
    this only has to be long enough never to abort a worker that is waiting out a Redis outage
    to record its outcome."""
    worker = config.worker
    return int(
        max(worker.lock_ttl_seconds * 2, 10, worker.record_retry_seconds + worker.lock_ttl_seconds)
    )


def job_timeout(config: Config, command_seconds: float) -> int:
    """saq's timeout for a deploy job: its commands, plus the time it may wait out a Redis
    outage to record their outcome, plus room for the git work."""
    return int(command_seconds + config.worker.record_retry_seconds + 120)


def checkout_failed(what: str, exc: GitError) -> CommandResult:
    return CommandResult(
        exit_code=None,
        timed_out=False,
        duration=0.0,
        tail=str(exc),
        error=f"could not check out {what}",
    )


LOCK_LOST = "stopped: the worker lost the environment lock (frozen or cut off from Redis)"


class Deploy:
    """A deploy that holds its environment: check out, run, and ask before each next step."""

    def __init__(self, services: EngineNeeds, target: Target, lock: EnvironmentLock) -> None:
        self.services = services
        self.target = target
        self.lock = lock
        self.worktree: Path | None = None
        self.handed_over = False

    async def checkout(self, tag: str, sha: str) -> Path:
        """A fresh tree of `tag`, which must still point at `sha` (raises GitError)."""
        self.worktree = await self.services.git.checkout(tag, sha)
        return self.worktree

    async def checkout_with_file(self, ref: str, file: str, content: str) -> Path:
        """A fresh tree of `ref` with `file` replaced (a flag change on what runs)."""
        self.worktree = await self.services.git.checkout_with_file(ref, file, content)
        return self.worktree

    async def hold(self) -> bool:
        """Before anything more is done under the lock: is it still ours, and safe? A lock that
        lapsed while nobody else took it (Redis was away) is taken again; one that someone
        else holds is not."""
        if self.lock.safe:
            return True
        return await self.lock.retake()

    async def run(
        self,
        command: str,
        env: Mapping[str, str],
        given: CommandEnv,
        timeout: float,
        on_line: Callable[[str], None] | None = None,
    ) -> CommandResult:
        """Run `command` in the checked-out tree while the lock is safe, with a clean
        environment: `env` (this deploy's RELEASE_*/FLAG_* values) and what the config
        `given` passes it, nothing of the bot's; as `worker.run_as` if set."""
        assert self.worktree is not None, "check out first"
        if not await self.hold():
            return CommandResult(
                exit_code=None, timed_out=False, duration=0.0, tail="", error=LOCK_LOST
            )
        result = await self.services.runner.run(
            command,
            cwd=self.worktree,
            own=env,
            given=given,
            timeout=timeout,
            stop=self.lock,
            on_line=on_line,
        )
        if not result.ok and not result.timed_out and not self.lock.safe:
            # Killed by its supervisor at the lock's stop time (or it failed meanwhile):
            # either way it did not run to its end under the lock.
            return CommandResult(
                exit_code=result.exit_code,
                timed_out=False,
                duration=result.duration,
                tail=result.tail,
                error=LOCK_LOST,
            )
        return result

    async def deploy(
        self,
        values: Mapping[str, str],
        on_line: Callable[[str], None] | None = None,
        say: Callable[[str], Awaitable[None]] | None = None,
    ) -> CommandResult:
        """Deploy the environment the way its config says: its deploy command in the
        checked-out tree (see `run`), or through GitHub (bot.services.github_deploys), which
        `say`s in the thread where the run is. `values` are the RELEASE_* (and FLAG*) values;
        a release's deploy and a rollback are then recorded as a GitHub Deployment."""
        env = self.target.environment
        if env.deploy is None:
            result = await self.run(
                env.deploy_command, values, env.command_env, env.timeout_seconds, on_line
            )
        elif not await self.hold():
            result = CommandResult(
                exit_code=None, timed_out=False, duration=0.0, tail="", error=LOCK_LOST
            )
        else:
            result = await github_deploys.deploy(
                self.services,
                env,
                values,
                hold=self.hold,
                lock_lost=LOCK_LOST,
                keep_locked=self.keep_locked,
                on_line=on_line,
                say=say,
            )
            if result.unsettled:
                await self.keep_locked(result.unsettled)
        if self.target.kind in ("release", "rollback"):
            await github_deploys.record(self.services, env, values, result)
        return result

    async def keep_locked(self, unsettled: str) -> None:
        """GitHub may still be deploying what the bot gave up on: the environment stays
        locked, saying why, until someone who checked GitHub unlocks it."""
        try:
            kept = await self.hand_over(
                "releasebot", f"GitHub may still be deploying: {unsettled}"[:300], "manual"
            )
        except Exception:
            kept = False
        if not kept:
            log.error(
                "%s: could not keep the lock while GitHub may still be deploying: %s",
                self.target.environment.name,
                unsettled,
            )

    async def hand_over(self, holder: str, reason: str, kind: LockKind) -> bool:
        """Keep the environment locked after the deploy (a rollback's lasting lock)."""
        self.handed_over = await self.lock.hand_over(holder, reason, kind)
        return self.handed_over


@contextlib.asynccontextmanager
async def deploying(
    services: EngineNeeds, target: Target, job: Any = None
) -> AsyncIterator[Deploy]:
    """Hold `target.environment` for one deploy; raises EnvironmentBusy or GivenUp before
    anything is started. On exit everything is cleaned up, and a deploy cut short by the
    worker's shutdown is reported through `target.on_stopped`."""
    if job is not None and (getattr(job, "error", None) or getattr(job, "completed", 0)):
        raise GivenUp(
            f"the queue gave this job up ({job.error or 'finished'}) before the "
            "worker got to it; the worker was frozen or cut off meanwhile"
        )
    lock = services.locks.for_deploy(target.environment.name, target.deploy_id)
    try:
        await lock.acquire(target.holder, target.reason)
    except LockHeld as exc:
        raise EnvironmentBusy(exc.info) from None
    deploy = Deploy(services, target, lock)
    beat = asyncio.create_task(_job_heartbeat(job, lock.ttl)) if job is not None else None
    try:
        await services.running_deploys.add(target.deploy_id, target.running_entry())
        try:
            yield deploy
        except asyncio.CancelledError:
            # The worker is shutting down: the command was killed; say so now rather than
            # leave it "running" until the reaper notices.
            with contextlib.suppress(Exception):
                await target.on_stopped("worker stopped during the deploy")
            raise
    finally:
        if beat is not None:
            beat.cancel()
        await _clean_up(services, deploy)


async def _clean_up(services: EngineNeeds, deploy: Deploy) -> None:
    try:
        await services.running_deploys.finish(deploy.target.deploy_id)
    except Exception:
        # Left to the reaper: the lease expires with the lock, then it reports the deploy if
        # its record was not finished.
        log.warning("could not clear the running deploy %s", deploy.target.deploy_id)
    if not deploy.handed_over:
        with contextlib.suppress(Exception):
            await deploy.lock.release()
    if deploy.worktree is not None:
        with contextlib.suppress(Exception):
            await services.git.remove_tree(deploy.worktree)


async def _job_heartbeat(job: Any, ttl: float) -> None:
    """saq's own record of the job stays fresh while the deploy runs (its sweeper aborts jobs
    that stop heartbeating). Our liveness signal is the lease; this is bookkeeping."""
    while True:
        await asyncio.sleep(ttl / 4)
        with contextlib.suppress(Exception):
            await job.update()


async def durably(
    services: EngineNeeds,
    what: str,
    write: Callable[P, Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Write an outcome, waiting out a Redis that is unreachable (restarting, cut off) for up
    to `worker.record_retry_seconds`; raises NotRecorded after that. The outcome of a deploy
    that ran is never dropped for a blip."""
    limit = services.config.worker.record_retry_seconds
    deadline = time.monotonic() + limit
    delay = 0.1
    failures = 0
    while True:
        try:
            result = await write(*args, **kwargs)
        except services.transient_errors as exc:
            failures += 1
            if failures == 1:
                log.warning(
                    "Redis unreachable while recording %s; retrying for up to %gs", what, limit
                )
            if time.monotonic() + delay > deadline:
                raise NotRecorded(f"Redis stayed unreachable for {limit:g}s") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            continue
        if failures:
            log.warning("recorded %s after %d failed attempts", what, failures)
        return result
