"""Every Redis key the bot uses, in one place. The strings are the stored layout: a running
team's state is read by the next release of the bot, so a key is added, never renamed."""

from __future__ import annotations


class Keys:
    """Every Redis key the bot uses, under one prefix (tests give each test its own)."""

    def __init__(self, prefix: str, service: str = "") -> None:
        self.prefix = prefix
        # The service whose keys these are (its metrics are labelled with it).
        self.service = service

    def release(self, version: str) -> str:
        return f"{self.prefix}release:{version}"

    @property
    def releases(self) -> str:
        return f"{self.prefix}releases"

    @property
    def in_flight(self) -> str:
        return f"{self.prefix}releases:in-flight"

    def environment(self, name: str) -> str:
        return f"{self.prefix}env:{name}"

    def history(self, name: str) -> str:
        return f"{self.prefix}env:{name}:history"

    def rollback(self, request_id: str) -> str:
        return f"{self.prefix}rollback:{request_id}"

    @property
    def rollbacks_waiting(self) -> str:
        """Set: the ids of the rollback requests waiting for approvals, written with every
        change of a request (what `/release status` lists)."""
        return f"{self.prefix}rollbacks:waiting"

    def env_lock(self, name: str) -> str:
        return f"{self.prefix}lock:env:{name}"

    def freezes(self, environment: str) -> str:
        """Hash: the freezes set from Slack on an environment, by id (JSON each)."""
        return f"{self.prefix}freezes:{environment}"

    def freeze_request(self, request_id: str) -> str:
        """A freeze waiting for its approvals ([freeze] required), JSON; it expires."""
        return f"{self.prefix}freezereq:{request_id}"

    @property
    def freeze_requests_waiting(self) -> str:
        """Sorted set: the ids of freeze requests still waiting, scored by when they expire."""
        return f"{self.prefix}freezereqs:waiting"

    def freeze_end_told(self, environment: str, marker: str) -> str:
        """Set once the end of a config freeze (`marker`: which) on `environment` was told."""
        return f"{self.prefix}freezes:{environment}:ended:{marker}"

    @property
    def repo_lock(self) -> str:
        return f"{self.prefix}lock:repo"

    @property
    def running_deploys(self) -> str:
        return f"{self.prefix}deploys:running"

    def deploy_lease(self, deploy_id: str) -> str:
        return f"{self.prefix}lease:deploy:{deploy_id}"

    @property
    def audit(self) -> str:
        return f"{self.prefix}audit"

    def audit_of_release(self, version: str) -> str:
        """The stream IDs of one release's audit entries (a sorted set, by their time)."""
        return f"{self.prefix}audit:release:{version}"

    @property
    def audit_indexed_from(self) -> str:
        """The ID of the first audit entry indexed when it was written: older ones are indexed
        by the backfill, which keeps how far it got in `audit_backfilled`."""
        return f"{self.prefix}audit:indexed-from"

    @property
    def audit_backfilled(self) -> str:
        return f"{self.prefix}audit:backfilled"

    @property
    def final_versions_backfilled(self) -> str:
        """How far the backfill of `final_versions` went through `releases` (-1: done)."""
        return f"{self.prefix}releases:final:backfilled"

    @property
    def final_versions(self) -> str:
        """A hash: the final version of each promoted release -> its candidate version."""
        return f"{self.prefix}releases:final"

    @property
    def versions(self) -> str:
        """The bot's tags in the repository, as a sorted set that sorts as the versions do
        (bot.domain.versions.index_member)."""
        return f"{self.prefix}versions"

    @property
    def versions_added(self) -> str:
        """Members added to `versions` since its last rebuild began: merged into the rebuilt
        index, so a tag pushed while git's list was read is not dropped with the old one."""
        return f"{self.prefix}versions:added"

    @property
    def versions_synced(self) -> str:
        """The tag prefix the version index was last rebuilt for from the whole tag list, and
        when; missing until the first rebuild."""
        return f"{self.prefix}versions:synced"

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}once:{key}"

    def pending(self, kind: str) -> str:
        """A candidate of `kind` (rc, hotfix) being created: who asked, for which command."""
        return f"{self.prefix}pending:{kind}"

    def form(self, ticket: str) -> str:
        """A form the bot opened for one click: who may send it, and what it is for."""
        return f"{self.prefix}form:{ticket}"

    def usergroup(self, group: str) -> str:
        return f"{self.prefix}usergroup:{group}"

    def render(self, version: str) -> str:
        return f"{self.prefix}render:{version}"

    def rendered(self, version: str) -> str:
        return f"{self.prefix}rendered:{version}"

    def progress(self, version: str) -> str:
        """A hash: environment -> the latest output line of the release's running deploy
        there, and when (shown on its message; not state, so not in the release's record)."""
        return f"{self.prefix}progress:{version}"

    def render_lease(self, version: str) -> str:
        """Held by the one sender of the release message's update, across replicas."""
        return f"{self.prefix}lock:render:{version}"

    # Health monitoring: per check its state and its bounded history of results.
    def check_state(self, environment: str, check: str) -> str:
        return f"{self.prefix}mon:state:{environment}:{check}"

    def check_results(self, environment: str, check: str) -> str:
        return f"{self.prefix}mon:results:{environment}:{check}"

    def monitor_aggregate(self, kind: str, environment: str, of: str) -> str:
        """Results summed up: of a version in an environment, or of a monitoring window."""
        return f"{self.prefix}mon:agg:{kind}:{environment}:{of}"

    def monitor_window(self, environment: str) -> str:
        return f"{self.prefix}mon:window:{environment}"

    def incident_ack(self, incident_id: str) -> str:
        return f"{self.prefix}mon:ack:{incident_id}"

    def incident_place(self, incident_id: str) -> str:
        """Where the incident's message is (the outbox's sender writes it once posted)."""
        return f"{self.prefix}mon:place:{incident_id}"

    def incident_group(self, group_id: str) -> str:
        """The incidents one summary message stands for, and where that message is."""
        return f"{self.prefix}mon:group:{group_id}"

    @property
    def monitor_writer(self) -> str:
        """Changed by every tick's write: a bot of an older version, which ran every check
        itself, reads its states again when it finds it changed."""
        return f"{self.prefix}mon:writer"

    @property
    def monitor_members(self) -> str:
        """The scheduler replicas sharing the checks: member -> when its lease ends (ms)."""
        return f"{self.prefix}mon:members"

    @property
    def monitor_epoch(self) -> str:
        """Counts changes of the members: a tick commits only in the epoch it started in."""
        return f"{self.prefix}mon:epoch"

    def tick(self, job: str, slot: int) -> str:
        """Taken by the one replica that runs the scheduled `job` in that time slot."""
        return f"{self.prefix}tick:{job}:{slot}"

    # What waits to be said in a channel (bot.domain.outbox), its sender's lease, its pace.
    def outbox(self, channel: str) -> str:
        return f"{self.prefix}outbox:{channel}"

    @property
    def outboxes(self) -> str:
        """The channels whose outbox may hold something."""
        return f"{self.prefix}outboxes"

    def outbox_lease(self, channel: str) -> str:
        return f"{self.prefix}lock:outbox:{channel}"

    def outbox_pace(self, channel: str) -> str:
        return f"{self.prefix}pace:{channel}"

    @property
    def queue_name(self) -> str:
        return f"{self.prefix}jobs"

    @property
    def hash_tag(self) -> str:
        """The prefix's Redis Cluster hash tag (`{team}` of `{team}:`), or "" when it has none:
        Cluster places a key by its first `{…}` that holds something, so every key under such
        a prefix is in one slot, which each transaction and script of the bot needs."""
        start = self.prefix.find("{")
        end = self.prefix.find("}", start + 1) if start >= 0 else -1
        return self.prefix[start : end + 1] if end > start + 1 else ""

    def job_key(self, key: str) -> str:
        """A queued job's key as saq stores it. saq keeps a job's abort flag under its key
        alone (`saq:abort:KEY`), in one script with keys named after the queue: the hash tag
        puts both in one slot. Without a tag in the prefix, the key is as given."""
        return f"{self.hash_tag}{key}"

    # Feature flags: each change request, and one hash of the ramps going (flag -> ramp).
    def flag_request(self, request_id: str) -> str:
        return f"{self.prefix}flagreq:{request_id}"

    @property
    def flag_requests_waiting(self) -> str:
        """Set: the ids of the flag requests awaiting approval, written with every change of a
        request (what `/release status` lists)."""
        return f"{self.prefix}flagreqs:waiting"

    @property
    def flag_ramps(self) -> str:
        return f"{self.prefix}flagramps"

    @property
    def flag_kills(self) -> str:
        """A hash: flag name -> when the kill switch last turned it off (what was asked before
        that is void: bot.services.change_flags)."""
        return f"{self.prefix}flagkills"
