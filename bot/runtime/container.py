"""Everything a role of the bot shares: config, Redis, the store, Slack and the job queue."""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from saq import Queue

from bot.adapters.ci_github import GitHubCi
from bot.adapters.git_clone import GitClone
from bot.adapters.github_deploys import GitHubDeploysOn
from bot.adapters.github_repository import GitHubRepository
from bot.adapters.http_probe import Prober
from bot.adapters.process.runner import CommandRunner
from bot.adapters.redis.claims import CreationClaims, FormTickets
from bot.adapters.redis.connect import connect
from bot.adapters.redis.errors import TRANSIENT, UNREACHABLE
from bot.adapters.redis.flag_requests import RedisFlagRequests
from bot.adapters.redis.freeze_requests import RedisFreezeRequests
from bot.adapters.redis.freezes import RedisFreezes
from bot.adapters.redis.job_queue import PatientQueue
from bot.adapters.redis.keys import Keys
from bot.adapters.redis.locks import Locks
from bot.adapters.redis.monitor_state import RedisMonitorState
from bot.adapters.redis.outbox import RedisOutbox
from bot.adapters.redis.running_deploys import RunningDeploys
from bot.adapters.redis.store import Store
from bot.adapters.redis.version_index import RedisVersionIndex
from bot.adapters.slack.directory import SlackUserDirectory
from bot.adapters.slack.notifier import Notifier, web_client
from bot.domain.config import Config
from bot.runtime.settings import Settings
from bot.runtime.shared_read import SharedRead
from bot.runtime.status_of_all import StatusOfAll
from bot.services.ports import Clock
from bot.services.show_status import StatusView, status_view

log = logging.getLogger(__name__)

# What handlers catch to answer "I cannot reach my state store" (they never name Redis).
STORE_UNREACHABLE = UNREACHABLE

CLOSE_STEP_SECONDS = 15.0
REDIS_POOL_SIZE = 256  # connections per process (Redis allows 10,000 clients)
REDIS_POOL_WAIT = 10.0  # seconds a call waits for one of them


def state_prefix(prefix: str, config: Config, shared_keys: bool) -> str:
    """The Redis key prefix of a service: the bot's, for a bot of one service or the
    service that keeps its keys (`legacy_keys`); else its own under its name."""
    return prefix if shared_keys else f"{prefix}svc:{config.service}:"


def clone_dir(state_dir: Path, config: Config, shared_keys: bool) -> Path:
    """Where a service's clone of its repository lives in the state directory."""
    return state_dir / "repo" if shared_keys else state_dir / "services" / config.service / "repo"


@dataclass
class Clients:
    """What the services of one bot share (bot.runtime.fleet): one Redis connection pool,
    one for the queues' blocking pops, and one Slack client."""

    redis: Redis
    queue_redis: Redis
    slack: Any
    embedded: bool = False
    queues: list[Queue] = field(default_factory=list)
    _prober: Prober | None = None
    # `/release status` of all the services in one read (handlers.commands.which_service).
    status_of_all: StatusOfAll | None = None

    @classmethod
    def connect(cls, settings: Settings) -> Clients:
        target = settings.redis_target
        if target is None:
            raise ValueError("no Redis URL: start the embedded Redis first (bot.runtime.cli does)")
        slack = web_client(settings.bot_token, settings.slack_api_url)
        if settings.embedded_redis:
            from bot.devtools.embedded_redis import client

            shared = client(target.url)
            return cls(
                shared,
                client(target.url),
                slack,
                embedded=True,
                status_of_all=StatusOfAll(shared, settings.status_max_age),
            )
        # A burst waits for a free connection instead of failing. A burst of 600 through
        # `serve` once ran 64 connections out with a 2 s wait, and after-ack work failed.
        # Now the wait outlasts the after-ack budget, so an accepted click that waits is
        # answered as slow and still applied, never dropped; before an ack the work's own
        # budget (handlers.answers) bounds it. (tests/scenarios/test_request_burst.py
        # loses nothing even at 8 connections here: Redis answers in microseconds and
        # audit entries share writes, so the size is headroom, not a measured need.)
        # Both clients come from `connect`, so under Sentinel the store, the locks and the
        # queue all follow the primary through a failover.
        redis = connect(target, max_connections=REDIS_POOL_SIZE, pool_wait=REDIS_POOL_WAIT)
        return cls(
            redis, connect(target), slack, status_of_all=StatusOfAll(redis, settings.status_max_age)
        )

    def prober(self, concurrency: int) -> Prober:
        """The fleet's one health probe: every service's checks, ticked together, share its
        connections (at most the largest `[monitoring] concurrency` of them), so twenty
        services do not open twenty times as many."""
        if self._prober is None:
            self._prober = Prober(concurrency)
        elif concurrency > self._prober.concurrency:
            self._prober.concurrency = concurrency  # read when its session is opened
        return self._prober

    def queue_for(self, keys: Keys) -> Queue:
        """A service's own queue (its name is under the service's key prefix)."""
        if self.embedded:
            from bot.devtools.embedded_redis import PollingQueue

            queue: Queue = PollingQueue(self.queue_redis, name=keys.queue_name)
        else:
            queue = PatientQueue(self.queue_redis, name=keys.queue_name, keys=keys)
        self.queues.append(queue)
        return queue

    async def close(self) -> None:
        if self.status_of_all is not None:
            try:
                await asyncio.wait_for(self.status_of_all.close(), CLOSE_STEP_SECONDS)
            except Exception:
                log.warning("closing the status of all services failed", exc_info=True)
        for queue in self.queues:
            try:
                await asyncio.wait_for(queue.disconnect(), CLOSE_STEP_SECONDS)
            except Exception:
                log.warning("closing a queue failed", exc_info=True)
        for client in (self.queue_redis, self.redis):
            try:
                await asyncio.wait_for(client.aclose(), CLOSE_STEP_SECONDS)
            except Exception:
                log.warning("closing Redis failed", exc_info=True)


class StateDirShared(ValueError):
    """RELEASEBOT_STATE_DIR names a directory other users share (sticky or world-writable)."""


@dataclass
class Services:
    settings: Settings
    config: Config
    redis: Redis
    store: Store
    notifier: Notifier
    queue: Queue
    # Health monitoring's state (bot.services.monitor_health); the notifier's senders read
    # where incident messages are from it.
    monitor_state: RedisMonitorState
    # /release status: a burst of requests shares fresh reads (and their rendering) instead
    # of one each, and a read at most `settings.status_max_age` old is served again without
    # a Redis round trip. Freshness: changes made by other processes (a worker, another web
    # replica) show within that age, which is less than anyone needs to see a change and type
    # the next command; changes made through this process's Slack requests drop the snapshot
    # as they are answered (bot.runtime.web, handlers.commands.release), so nobody sees a
    # status older than what they just did here.
    # The status of a bot of several services (bot.runtime.status_of_all) is as fresh: it is
    # not served once one of these is dropped.
    # A snapshot that shows a freeze is not served past its end (StatusView.fresh), wherever
    # it ended: the clock alone ends it.
    status: SharedRead[StatusView] = field(init=False)
    # Work a handler starts after its ack without the queue (the flag kill switch).
    _tasks: set[asyncio.Task[Any]] = field(init=False, default_factory=set)
    # Who is in a Slack user group (approver lists name groups).
    user_directory: SlackUserDirectory = field(init=False)
    # Flag change requests and ramps.
    flag_requests: RedisFlagRequests = field(init=False)
    # Freezes set from Slack (`/release freeze`): the config's are in the config.
    freeze_records: RedisFreezes = field(init=False)
    # Freezes waiting for their approvals ([freeze] required above 0).
    freeze_requests: RedisFreezeRequests = field(init=False)
    # Health monitoring's probe (bot.services.monitor_health) opens its HTTP session on the
    # first check, so roles that never check pay nothing for it.
    health_probe: Prober = field(init=False)

    # What the state store raises when it cannot be reached now (the HasTransientErrors port).
    transient_errors: tuple[type[BaseException], ...] = field(init=False, default=TRANSIENT)
    # The bot's clone of the released repository (the Repository port).
    git: GitClone = field(init=False)
    locks: Locks = field(init=False)
    runner: CommandRunner = field(init=False)
    running_deploys: RunningDeploys = field(init=False)
    creation_claims: CreationClaims = field(init=False)
    form_tickets: FormTickets = field(init=False)
    # The bot's tags, newest version first (the VersionIndex port; rebuilt from git by the
    # scheduler's "version-index" job).
    versions: RedisVersionIndex = field(init=False)
    # The released repository on GitHub: its CI's checks (gates) and the deploys GitHub runs;
    # None without GitHub access or [github] repository.
    github_repository: GitHubRepository | None = field(init=False, default=None)
    ci: GitHubCi | None = field(init=False, default=None)
    github_deploys: GitHubDeploysOn | None = field(init=False, default=None)
    # The Redis and Slack clients (its own, or the fleet's: bot.runtime.fleet).
    clients: Clients | None = None
    # Whether its Redis keys and clone are the one-service bot's (a bot of one service, or the
    # service of several that keeps them), rather than its own under its name.
    shared_keys: bool = True
    # False for a service of several: the fleet closes the Redis and Slack clients they share.
    owns_clients: bool = True

    def __post_init__(self) -> None:
        self.status = SharedRead(
            lambda: status_view(self),
            max_age=self.settings.status_max_age,
            fresh=lambda view: view.fresh(self.clock()),
        )
        self.git = GitClone(
            self.config.repository.url,
            self.clone_path,
            self.config.repository.remote,
            self.config.worker.run_as,
            self.config.repository.tag_prefix,
        )
        self.runner = CommandRunner(self.config.worker.run_as)
        if self.settings.github is not None and self.config.github.repository:
            self.github_repository = GitHubRepository(
                self.settings.github, self.config.github.repository
            )
            self.ci = GitHubCi(self.github_repository)
            self.github_deploys = GitHubDeploysOn(self.github_repository)
        keys = self.store.keys
        self.locks = Locks(self.redis, keys, self.config.worker.lock_ttl_seconds)
        self.running_deploys = RunningDeploys(self.redis, keys)
        self.creation_claims = CreationClaims(self.redis, keys)
        self.form_tickets = FormTickets(self.redis, keys)
        self.versions = RedisVersionIndex(self.redis, keys, self.config.repository.tag_prefix)
        self.health_probe = (
            self.clients.prober(self.config.monitoring.concurrency)
            if self.clients is not None and not self.owns_clients
            else Prober(self.config.monitoring.concurrency)
        )
        self.user_directory = SlackUserDirectory(self.notifier.client, self.redis, keys)
        self.flag_requests = RedisFlagRequests(self.redis, keys)
        self.freeze_records = RedisFreezes(
            self.redis, keys, self.store.queue_audit, RedisOutbox(self.redis, keys)
        )
        # Its clock read at each use: tests and the demo give the store a clock of their own.
        self.freeze_requests = RedisFreezeRequests(
            self.redis, keys, self.store.queue_audit, lambda: self.store.clock()
        )

    # Ports that are parts of the store and the notifier (bot.services.ports).
    @property
    def chat(self) -> Notifier:
        return self.notifier

    @property
    def audit_log(self) -> Store:
        return self.store

    @property
    def clock(self) -> Clock:
        return self.store.clock

    @property
    def running_releases(self) -> Store:
        return self.store

    @property
    def status_reader(self) -> Store:
        return self.store

    @property
    def environment_outcomes(self) -> Store:
        return self.store

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        async def logged() -> None:
            try:
                await work
            except Exception:
                log.exception("background work failed")

        self.track(asyncio.create_task(logged()))

    async def drain_background(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def track(self, task: asyncio.Task[Any] | None) -> None:
        """Close waits for `task` (background work that must not lose Redis under it)."""
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def clone_path(self) -> Path:
        return clone_dir(self.settings.state_dir, self.config, self.shared_keys)

    @classmethod
    def create(cls, settings: Settings, config: Config, clients: Clients | None = None) -> Services:
        """The services of the one service `config` describes. With `clients`, one service
        of several (bot.runtime.fleet): the Redis and Slack clients are the fleet's, and its
        Redis keys, queue and clone are its own (under its name), except for the service
        that keeps the one-service bot's keys (`legacy_keys`)."""
        # The clone (and the credentials its remote URL may carry) is the bot's alone. A
        # directory others share (like /tmp) is refused, not made private: closing it would
        # lock every other user of the machine out of it.
        state_dir = settings.state_dir
        if state_dir.is_dir() and state_dir.stat().st_mode & (stat.S_ISVTX | stat.S_IWOTH):
            raise StateDirShared(
                f"the state directory {state_dir} is shared with other users; give the bot a "
                "directory of its own (RELEASEBOT_STATE_DIR), which it keeps private"
            )
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        state_dir.chmod(0o700)
        owned = clients is None
        if clients is None:
            clients = Clients.connect(settings)
        shared_keys = owned or config.legacy_keys
        store = Store(
            clients.redis,
            state_prefix(settings.redis_prefix, config, shared_keys),
            service=config.service,
        )
        queue = clients.queue_for(store.keys)
        monitor_state = RedisMonitorState(
            clients.redis, store.keys, store.queue_bot_audit, RedisOutbox(clients.redis, store.keys)
        )
        notifier = Notifier(
            clients.slack,
            store,
            config,
            monitor_state,
            settings.update_delay,
            settings.post_interval,
        )
        services = cls(
            settings=settings,
            config=config,
            redis=clients.redis,
            store=store,
            notifier=notifier,
            queue=queue,
            monitor_state=monitor_state,
            clients=clients,
            shared_keys=shared_keys,
            owns_clients=owned,
        )
        if not owned and clients.status_of_all is not None:
            clients.status_of_all.members.append(services)
        return services

    async def _close_clients(self) -> None:
        if self.clients is not None:
            await self.clients.close()

    async def _close_github(self) -> None:
        if self.github_repository is not None:
            await self.github_repository.close()

    async def close(self) -> None:
        # Each step on its own: a Redis that is down must not keep the rest from closing.
        await self.drain_background()
        for step in (
            self.notifier.drain,
            self.health_probe.close,
            self.status.close,
            self._close_github,
            *((self._close_clients,) if self.owns_clients else ()),
        ):
            try:
                # Bounded: a connection that never answers (seen with the embedded Redis)
                # must not keep the process from ending.
                await asyncio.wait_for(step(), CLOSE_STEP_SECONDS)
            except Exception:
                log.warning("closing: %s failed", step.__qualname__, exc_info=True)
