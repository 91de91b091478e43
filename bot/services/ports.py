"""The ports use cases talk through: what they need of the outside world, not who provides it.

A use-case module declares, as a Protocol of read-only properties, the few ports it uses (its
"needs"), built from the ports below. The composition root (`bot.runtime.container`) is one
object that provides them all, so every caller passes it unchanged, while each use case sees,
and the type checker lets it touch, only what its needs name: no raw Redis client, no Slack
client, no service locator. Adapters satisfy these protocols structurally; nothing here imports
them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bot.blocks.release import Block
from bot.domain.actors import Actor
from bot.domain.changes import Changeset
from bot.domain.ci_checks import CiCheck
from bot.domain.command_results import CommandResult
from bot.domain.config import CheckConfig, CommandEnv, Config
from bot.domain.flag_requests import FlagRequest, Ramp
from bot.domain.freeze_requests import Audited, FreezeRequest
from bot.domain.github_deploys import DeploymentState, RunState
from bot.domain.health.checks import CheckId, Observation, Result
from bot.domain.health.incidents import CheckState
from bot.domain.health.windows import Aggregate, AggregateId, Delta, Window
from bot.domain.locks import LockInfo, LockKind
from bot.domain.outbox import Entry, Group, Place
from bot.domain.releases import Release
from bot.domain.rollbacks import RollbackRequest
from bot.domain.windows import Freeze

# Seconds since the epoch; tests and the demo give their own.
Clock = Callable[[], float]

T = TypeVar("T")


class AuditLog(Protocol):
    """The append-only audit trail (the Redis stream `audit`)."""

    async def audit(self, actor: Actor, action: str, **fields: str) -> str: ...


class ReleaseStore(AuditLog, Protocol):
    """Releases, rollback requests and what each environment runs (bot.adapters.redis.store).
    Every update applies a pure change atomically with its audit entry, or writes nothing
    (the change raised TransitionError)."""

    @property
    def clock(self) -> Clock: ...

    async def create_release(self, release: Release, actor: Actor) -> None: ...

    async def discard_release(self, version: str, actor: Actor, reason: str) -> None: ...

    async def get_release(self, version: str) -> Release | None: ...

    async def recent_releases(self, count: int) -> list[Release]: ...

    async def releases_in_flight(self) -> list[Release]: ...

    async def update_release(
        self,
        version: str,
        change: Callable[[Release], T],
        actor: Actor,
        action: str,
        *,
        environment: str = "",
        outcome: str = "ok",
        reason: str = "",
    ) -> tuple[Release, T]: ...

    async def create_rollback(self, request: RollbackRequest, actor: Actor) -> None: ...

    async def get_rollback(self, request_id: str) -> RollbackRequest | None: ...

    async def update_rollback(
        self,
        request_id: str,
        change: Callable[[RollbackRequest], T],
        actor: Actor,
        action: str,
        *,
        outcome: str = "ok",
        reason: str = "",
    ) -> tuple[RollbackRequest, T]: ...

    async def set_environment_version(
        self,
        environment: str,
        version: str,
        tag: str,
        sha: str,
        release: str = "",
        deployed_at: float | None = None,
        rolled_back_from: str = "",
        adopted: str = "",
    ) -> bool: ...

    async def adopt_unknown(
        self, environment: str, version: str, tag: str, sha: str, adopted: str
    ) -> bool: ...

    async def mark_failed_in(self, environment: str, version: str, tag: str, why: str) -> None: ...

    async def note_progress(self, version: str, environment: str, line: str) -> None: ...

    async def environment_history(self, environment: str) -> list[dict[str, str]]: ...

    async def environment_versions(self, names: list[str]) -> dict[str, dict[str, str]]: ...

    async def first_time(self, key: str, ttl_seconds: int = 3600) -> bool: ...

    def audit_trail(self, release: str | None = None) -> AsyncIterator[dict[str, str]]: ...

    async def latest_audit(self, count: int) -> tuple[list[dict[str, str]], int]: ...

    def audit_since(self, since: float) -> AsyncIterator[dict[str, str]]: ...

    async def release_by_final_version(self, final_version: str) -> str | None: ...


@dataclass(frozen=True)
class Status:
    """What `/release status` is made of, read in one round trip."""

    versions: dict[str, dict[str, str]]
    in_flight: list[Release]
    raw_locks: dict[str, bytes]
    # Each environment's history, newest first (bot.domain.rollbacks reads it).
    histories: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    # The rollbacks and flag changes waiting for approvals, oldest first.
    waiting_rollbacks: list[RollbackRequest] = field(default_factory=list)
    waiting_flag_requests: list[FlagRequest] = field(default_factory=list)
    # When the kill switch last turned each flag off (what it voids: flag_requests.voided).
    flag_kills: dict[str, float] = field(default_factory=dict)

    def summary(
        self, open_incidents: int = 0, freezes: dict[str, list[Freeze]] | None = None
    ) -> StatusSummary:
        return StatusSummary(
            {name: v["tag"] for name, v in self.versions.items() if v.get("tag")},
            [r.final_tag or r.tag for r in self.in_flight],
            self.raw_locks,
            open_incidents,
            freezes or {},
        )


@dataclass(frozen=True)
class StatusSummary:
    """What a service's line in the status of a bot of several is made of: its status less
    the releases' details (their tags only) and the histories."""

    tags: dict[str, str]  # the tag each environment runs (none: nothing deployed yet)
    in_flight: list[str]  # the tags of the releases in flight, oldest first
    raw_locks: dict[str, bytes]
    # Incidents open now: each environment's outage and failed deploy (bot.domain.health).
    open_incidents: int = 0
    # The freezes set from Slack, by environment (ended ones too: shown are those holding at
    # the moment the line is drawn; the config's are in the config).
    freezes: dict[str, list[Freeze]] = field(default_factory=dict)


class StatusReader(Protocol):
    async def status(self, environments: list[str]) -> Status: ...


class HasStatusReader(Protocol):
    @property
    def status_reader(self) -> StatusReader: ...


class Chat(Protocol):
    """What the bot says in Slack. None of these raise: a report of what happened must not undo
    or stop it (a failure is logged)."""

    async def post(
        self, channel: str, blocks: list[Block], text: str, thread_ts: str | None = None
    ) -> dict[str, Any] | None: ...

    async def thread(self, version: str, blocks: list[Block], text: str) -> None: ...

    async def reply(self, channel: str, thread_ts: str, blocks: list[Block], text: str) -> None:
        """In the thread `thread_ts` ("" for the channel), paced and coalesced (the outbox)."""

    async def say(self, channel: str, entries: list[Entry]) -> None:
        """Put entries in the channel's outbox: said in order, paced, grouped."""

    def wake(self, channels: list[str]) -> None:
        """Entries were put in these outboxes in a transaction (MonitorState.commit)."""

    async def answer(self, response_url: str | None, blocks: list[Block], text: str) -> None: ...

    async def update(self, channel: str, ts: str, blocks: list[Block], text: str) -> None: ...

    def refresh(self, version: str) -> None: ...

    def show_progress(self, version: str) -> None:
        """Redraw the release message for a running deploy's elapsed time and latest line,
        though nothing in the release's record changed."""
        ...


class JobQueue(Protocol):
    """Work for the workers (saq): enqueue returns the job, or None when it already exists."""

    async def enqueue(self, job_or_func: Any, **kwargs: Any) -> Any: ...


# --- the team's CI (bot.adapters.ci_github) -------------------------------------------------


class CiUnavailable(Exception):
    """The CI's API did not answer usefully (down, rate limited past our patience, refused):
    a gate waiting on it waits on, and fails at its timeout with this reason."""


class CiChecks(Protocol):
    """The commit statuses and check runs on a commit of the released repository."""

    async def checks(self, sha: str) -> list[CiCheck]: ...  # raises CiUnavailable

    async def close(self) -> None: ...


class HasCi(Protocol):
    @property
    def ci(self) -> CiChecks | None: ...  # None: no GitHub access configured


# --- freezes set from Slack (bot.adapters.redis.freezes) -------------------------------------


@dataclass(frozen=True)
class FreezeEndNews:
    """What is recorded and said, once, of a freeze that ended by itself: the bot's audit
    entry `freeze.end` (its reason) and `entry` in `channel`."""

    environment: str
    reason: str
    channel: str
    entry: Entry


class FreezeRecords(Protocol):
    """The freezes set at runtime (`/release freeze`), per environment, with their ids, and
    which freeze ends were told (set from Slack or in the config file)."""

    async def active(self, environment: str, now: float) -> list[tuple[str, Freeze]]: ...

    async def active_of(
        self, environments: Sequence[str], now: float
    ) -> dict[str, list[tuple[str, Freeze]]]: ...

    async def ended(
        self, environments: Sequence[str], now: float
    ) -> list[tuple[str, str, Freeze]]: ...

    async def add(self, environment: str, freeze: Freeze) -> str: ...

    async def end_early(
        self, environment: str, freeze_ids: Sequence[str], actor: Actor, reason: str
    ) -> bool: ...

    # Each True for exactly one caller, which alone wrote `news` (see the adapter).
    async def end_once(self, environment: str, freeze_id: str, news: FreezeEndNews) -> bool: ...

    async def config_end_once(
        self, environment: str, marker: str, news: FreezeEndNews, keep_seconds: float
    ) -> bool: ...


class FreezeRequests(Protocol):
    """Freezes waiting for their approvals (bot.adapters.redis.freeze_requests): every change
    applies a pure transition atomically with the audit entries it returns and, once the
    request is set, the freeze itself; a transition that raises writes nothing."""

    async def create(self, request: FreezeRequest, actor: Actor, note: Audited) -> None: ...

    async def load(self, request_id: str) -> FreezeRequest | None: ...

    async def waiting(self, now: float) -> list[FreezeRequest]: ...

    async def update(
        self,
        request_id: str,
        change: Callable[[FreezeRequest], list[Audited]],
        actor: Actor,
    ) -> tuple[FreezeRequest, list[Audited]] | None: ...


class HasFreezeRequests(Protocol):
    @property
    def freeze_requests(self) -> FreezeRequests: ...


class HasFreezeRecords(Protocol):
    @property
    def freeze_records(self) -> FreezeRecords: ...


# --- deploys GitHub runs (bot.adapters.github_deploys) ---------------------------------------


class GitHubRefused(Exception):
    """GitHub refused the request (no such workflow, an input it does not take, no access):
    asking again would not help. The message names what GitHub said."""


class GitHubDown(Exception):
    """GitHub could not be asked now (down, unreachable, rate limited past our patience):
    a deploy being followed keeps looking until its timeout."""


class GitHubDeploys(Protocol):
    """Workflow runs and Deployments on the released repository's GitHub."""

    # Raises GitHubRefused, or GitHubDown: then GitHub may have taken the dispatch all the
    # same (its answer was lost), and the run is to be looked for, not dispatched again.
    async def dispatch(self, workflow: str, ref: str, inputs: Mapping[str, str]) -> None: ...

    # The run whose title holds `correlation_id`, dispatched since `since` (epoch seconds);
    # None while GitHub does not list it yet.
    async def find_run(
        self, workflow: str, correlation_id: str, since: float
    ) -> RunState | None: ...

    async def run(self, run_id: int) -> RunState: ...

    # The last lines of the run's failed jobs' logs ("" when GitHub gives none).
    async def log_tail(self, run: RunState, lines: int) -> str: ...

    async def cancel(self, run_id: int) -> None: ...

    # A Deployment of `ref` to `environment`; returns its id and the sha GitHub resolved.
    # Executors act on `task` "deploy"; the bot's records of its own deploys have another.
    async def create_deployment(
        self,
        ref: str,
        environment: str,
        *,
        task: str,
        payload: Mapping[str, Any],
        description: str,
        production: bool,
    ) -> tuple[int, str]: ...

    async def deployment_state(self, deployment_id: int) -> DeploymentState | None: ...

    async def set_deployment_state(
        self, deployment_id: int, state: str, *, description: str, log_url: str
    ) -> None: ...

    async def close(self) -> None: ...


class HasGitHubDeploys(Protocol):
    @property
    def github_deploys(self) -> GitHubDeploys | None: ...  # None: no GitHub access configured


# --- the released repository (bot.adapters.git_clone.GitClone) ----------------------------


class GitError(Exception):
    """A git operation failed; the message is fit to show to a person."""


class TagExists(GitError):
    pass


class PushRejected(GitError):
    pass


@dataclass(frozen=True)
class Snapshot:
    """The release branch after a fetch: its head and the tags in its history."""

    head_sha: str
    head_subject: str
    # The newest tags of the branch's history, newest first, down to the newest final version
    # (a next version depends on nothing older): a few, however long the history.
    tags_in_history: tuple[str, ...]
    # Why the bot's clone had to be made again on the way (it was damaged), if it did.
    repaired: str | None = None


class Repository(Protocol):
    """The bot's clone of the released repository. Raises GitError (a message fit to show a
    person) when git fails."""

    async def sync_tags(self) -> str | None: ...  # why the clone was made again, if it was

    async def sync(self, branch: str) -> Snapshot: ...

    async def read_branch(self, branch: str) -> Snapshot: ...

    # The branches only, no tag: what a candidate needs, at a cost flat in the tags.
    async def fetch_branches(self) -> str | None: ...  # why the clone was made again, if it was

    async def read_head(self, branch: str) -> Snapshot: ...  # without tags_in_history

    async def in_history(self, head: str, commits: tuple[str, ...]) -> set[str]: ...

    async def version_tags(self) -> dict[str, str]: ...  # tag -> commit, as last fetched

    # The commit times of what `head` brought since `base` (lead times of changes).
    async def commit_times(self, base: str, head: str) -> list[float]: ...

    # What `head` brings since `base` (full shas; base "" = no earlier release), as last
    # fetched: bot.adapters.git_clone.changes_between says how the range is taken and bounded.
    async def changes_between(
        self,
        base: str,
        head: str,
        *,
        first_parent: bool = True,
        paths: tuple[str, ...] = (),
        limit: int = 500,
        risk_trailer: str = "Risk",
    ) -> Changeset: ...

    async def tags_matching(self, patterns: tuple[str, ...]) -> dict[str, str]: ...

    async def newest_branch(self, patterns: tuple[str, ...]) -> str | None: ...

    async def create_and_push_tag(self, tag: str, sha: str, message: str) -> None: ...

    async def delete_remote_tag(self, tag: str) -> None: ...

    async def read_file(self, ref: str, file: str) -> str | None: ...

    async def paths_named(self, ref: str, name: str) -> list[str]: ...

    async def commit_file(
        self,
        branch: str,
        parent: str,
        file: str,
        content: str,
        message: str,
        author: tuple[str, str],
    ) -> str: ...

    async def checkout(self, tag: str, sha: str) -> Path: ...

    async def checkout_with_file(self, ref: str, file: str, content: str) -> Path: ...

    async def remove_tree(self, tree: Path) -> None: ...


# --- commands (bot.adapters.process.runner.CommandRunner) ---------------------------------


class StopTime(Protocol):
    """When a command must have stopped unless told otherwise (an environment lock's safe
    time), moved on by every renewal."""

    @property
    def stop_at(self) -> float: ...

    def listen(self, listener: Callable[[float], None]) -> Callable[[], None]: ...


class Runner(Protocol):
    async def run(
        self,
        command: str,
        *,
        cwd: Path,
        own: Mapping[str, str],
        given: CommandEnv,
        timeout: float,
        stop: StopTime | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> CommandResult: ...


# --- locks, running deploys, claims (bot.adapters.redis) ----------------------------------


class EnvironmentLock(Protocol):
    """A deploy's lock on its environment, renewed while held, that knows how long it is
    safe (bot.adapters.redis.locks.RenewingLock). Acquiring raises LockHeld."""

    @property
    def ttl(self) -> float: ...

    @property
    def safe(self) -> bool: ...

    @property
    def stop_at(self) -> float: ...

    def listen(self, listener: Callable[[float], None]) -> Callable[[], None]: ...

    async def acquire(self, holder: str, reason: str) -> LockInfo: ...

    async def retake(self) -> bool: ...

    async def hand_over(self, holder: str, reason: str, kind: LockKind) -> bool: ...

    async def release(self) -> bool: ...


class Locks(Protocol):
    def for_deploy(self, environment: str, deploy_id: str) -> EnvironmentLock: ...

    def repository(
        self, holder: str, reason: str
    ) -> AbstractAsyncContextManager[EnvironmentLock]: ...

    async def take(
        self, environment: str, user: str, reason: str, *, force: bool = False
    ) -> LockInfo | None: ...  # raises LockRefused

    async def remove(
        self, environment: str, user: str, *, force: bool = False
    ) -> LockInfo: ...  # raises LockRefused

    async def holder(self, environment: str) -> LockInfo | None: ...


class RunningDeploys(Protocol):
    async def add(self, deploy_id: str, entry: dict[str, str]) -> None: ...

    async def finish(self, deploy_id: str) -> None: ...

    async def lapsed(self) -> list[tuple[str, dict[str, str]]]: ...

    async def forget(self, deploy_id: str) -> None: ...


class CreationClaims(Protocol):
    async def claim(
        self, kind: str, request_id: str, user_id: str, now: float, seconds: int
    ) -> dict[str, Any] | None: ...

    async def end(self, kind: str, request_id: str) -> None: ...


class VersionIndex(Protocol):
    """The bot's tags, newest version first, without listing every tag (rebuilt from git)."""

    async def is_built(self) -> bool: ...

    async def newest(self, skip: int, count: int) -> list[tuple[str, str]]: ...  # (tag, commit)

    async def commit_of(self, tag: str) -> str | None: ...

    async def add(self, tag: str, sha: str) -> None: ...

    async def remove(self, tag: str) -> None: ...

    async def begin_rebuild(self) -> None: ...

    async def rebuild(self, tags: Mapping[str, str], now: float) -> int: ...


class FormTickets(Protocol):
    async def open(self, user_id: str, kind: str, what: dict[str, str], seconds: int) -> str: ...

    async def take(self, ticket: str, user_id: str, kind: str) -> dict[str, str] | None: ...


# --- what a use case can be given ---------------------------------------------------------
# A use case's needs are these combined, e.g. `class CandidateNeeds(HasConfig, HasStore,
# HasChat, Protocol)`: its signature lists the ports it touches, and nothing else is in reach.


class HasConfig(Protocol):
    @property
    def config(self) -> Config: ...


class HasStore(Protocol):
    @property
    def store(self) -> ReleaseStore: ...


class HasChat(Protocol):
    @property
    def chat(self) -> Chat: ...


class HasQueue(Protocol):
    @property
    def queue(self) -> JobQueue: ...


class HasRepository(Protocol):
    @property
    def git(self) -> Repository: ...


class HasLocks(Protocol):
    @property
    def locks(self) -> Locks: ...


class HasRunningDeploys(Protocol):
    @property
    def running_deploys(self) -> RunningDeploys: ...


class HasCreationClaims(Protocol):
    @property
    def creation_claims(self) -> CreationClaims: ...


class HasVersionIndex(Protocol):
    @property
    def versions(self) -> VersionIndex: ...


class HasFormTickets(Protocol):
    @property
    def form_tickets(self) -> FormTickets: ...


class HasTransientErrors(Protocol):
    @property
    def transient_errors(self) -> tuple[type[BaseException], ...]:
        """What the state store raises when it is unreachable for now, so a write may be
        tried again (a refusal is not among them)."""
        ...


class HasRunner(Protocol):
    @property
    def runner(self) -> Runner: ...


# --- health monitoring (bot.services.monitor_health) ----------------------------------------


# What a tick's merge of the outages gives to write: outage states, audit entries, news.
TickNews = tuple[dict[CheckId, bytes], list[tuple[str, dict[str, str]]], list[tuple[str, Entry]]]
# Who acknowledged which of these incidents, and when: read inside a tick's write, so that
# one acknowledged meanwhile makes the tick merge again (MonitorState.commit_tick).
AckReader = Callable[[Sequence[str]], Awaitable[dict[str, tuple[str, float]]]]


class MonitorState(Protocol):
    """What monitoring keeps between ticks: check states and results, monitoring windows,
    acknowledgements, the replicas sharing the checks and the scheduler's time slots."""

    async def join(self, member: str, seconds: float) -> tuple[int, list[str]]: ...

    async def leave(self, member: str) -> None: ...

    async def claim_tick(self, job: str, slot: int, interval: float) -> bool: ...

    async def tick_outlook(
        self, environments: Sequence[str]
    ) -> tuple[dict[str, Window], set[str]]: ...

    async def stored_checks(
        self, checks: Sequence[CheckId], results: int
    ) -> list[tuple[bytes | None, list[Result]]]: ...

    async def results(self, checks: Sequence[CheckId], count: int) -> list[list[Result]]: ...

    async def record_results(
        self,
        results: Sequence[tuple[CheckId, Result]],
        keep: int,
        deltas: Mapping[AggregateId, Delta] | None = None,
        epoch: int | None = None,
    ) -> None: ...

    async def aggregates(self, targets: Sequence[AggregateId]) -> list[Aggregate]: ...

    async def drop_aggregate(self, target: AggregateId) -> None: ...

    async def commit(
        self,
        states: Mapping[CheckId, bytes],
        audits: Sequence[tuple[str, dict[str, str]]],
        news: Sequence[tuple[str, Entry]],
    ) -> None: ...

    async def commit_tick(
        self,
        epoch: int,
        states: Mapping[CheckId, bytes],
        outages: Sequence[CheckId],
        merge: Callable[[list[bytes | None], AckReader], Awaitable[TickNews]],
    ) -> TickNews | None: ...

    async def check_state(self, check: CheckId) -> CheckState: ...

    async def save_check_state(self, check: CheckId, state: CheckState) -> None: ...

    async def check_states(self, checks: Sequence[CheckId]) -> list[CheckState]: ...

    async def acknowledgements(
        self, incident_ids: Sequence[str]
    ) -> dict[str, tuple[str, float]]: ...

    async def acknowledge(self, incident_id: str, user: str, at: float) -> str | None: ...

    async def window(self, environment: str) -> Window | None: ...

    async def start_window(self, environment: str, window: Window) -> None: ...

    async def end_window(self, environment: str) -> bool: ...

    async def incident_place(self, incident_id: str) -> Place | None: ...

    async def group(self, group_id: str) -> Group | None: ...


class HealthProbe(Protocol):
    """Runs health checks over HTTP (bot.adapters.http_probe)."""

    async def observe_all(self, checks: Sequence[CheckConfig]) -> list[Observation]: ...

    async def close(self) -> None: ...


class RunningReleases(Protocol):
    """Read only: what each environment runs, and the release records (for their threads)."""

    async def environment_versions(self, names: list[str]) -> dict[str, dict[str, str]]: ...

    async def get_release(self, version: str) -> Release | None: ...


class HasClock(Protocol):
    @property
    def clock(self) -> Clock: ...


class HasAuditLog(Protocol):
    @property
    def audit_log(self) -> AuditLog: ...


class HasMonitorState(Protocol):
    @property
    def monitor_state(self) -> MonitorState: ...


class HasHealthProbe(Protocol):
    @property
    def health_probe(self) -> HealthProbe: ...


class EnvironmentOutcomes(Protocol):
    """What failed where, and what an environment runs that the bot did not deploy: the
    history a rollback chooses its target from."""

    async def adopt_unknown(
        self, environment: str, version: str, tag: str, sha: str, adopted: str
    ) -> bool: ...

    async def mark_failed_in(self, environment: str, version: str, tag: str, why: str) -> None: ...

    async def set_environment_version(
        self,
        environment: str,
        version: str,
        tag: str,
        sha: str,
        release: str = "",
        deployed_at: float | None = None,
        rolled_back_from: str = "",
        adopted: str = "",
    ) -> bool: ...


class HasEnvironmentOutcomes(Protocol):
    @property
    def environment_outcomes(self) -> EnvironmentOutcomes: ...


class HasRunningReleases(Protocol):
    @property
    def running_releases(self) -> RunningReleases: ...


# --- approvals and flag changes (issue 11, flags) --------------------------------------------


class MembershipUnknown(Exception):
    """Slack could not say who is in a user group (an error, an error page, no answer); the
    message says what happened, fit to show to a person."""


class UserDirectory(Protocol):
    """Slack's user groups: who is in one. A group Slack says does not exist has nobody in
    it; raises MembershipUnknown when Slack cannot say: nobody is then taken for an approver
    through it, and they are told why."""

    async def group_members(self, group: str) -> frozenset[str]: ...


class HasUserDirectory(Protocol):
    @property
    def user_directory(self) -> UserDirectory: ...


class FlagRequests(Protocol):
    """Flag change requests and the ramps going (bot.adapters.redis.flag_requests)."""

    async def save(self, request: FlagRequest) -> None: ...

    async def load(self, request_id: str) -> FlagRequest | None: ...

    async def update(
        self, request_id: str, change: Callable[[FlagRequest], T]
    ) -> tuple[FlagRequest, T] | None:
        """`change` applied atomically; None if the request is gone."""
        ...

    async def mark_killed(self, name: str, at: float) -> None: ...

    async def killed_at(self, name: str) -> float | None:
        """When the kill switch last turned `name` off, if ever."""
        ...

    async def ramp_names(self) -> list[str]: ...

    async def ramp(self, name: str) -> Ramp | None: ...

    async def start_ramp(self, ramp: Ramp) -> None: ...

    async def save_ramp(self, ramp: Ramp) -> bool:
        """False, and nothing written, if the ramp was stopped meanwhile."""
        ...

    async def end_ramp(self, name: str) -> Ramp | None: ...


class HasFlagRequests(Protocol):
    @property
    def flag_requests(self) -> FlagRequests: ...
