"""The health monitor: runs the checks that are due, keeps their results, and tells the
release's thread about incidents. Every scheduler replica ticks on its share of the checks
(`Monitor`); the scheduler calls `tick`, deploy jobs call `deploy_finished` and
`deploy_failed`.

The rules (what a result means, when an incident opens or ends, a window's verdict) are in
`bot.domain.health`; this module runs them against the ports its `MonitorNeeds` names."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from bot.blocks import health as texts
from bot.blocks.health import HEALTH_LINES
from bot.domain.actors import BOT, Actor
from bot.domain.config import CheckConfig, EnvironmentConfig
from bot.domain.health import incidents, shares
from bot.domain.health.checks import (
    CheckId,
    Result,
    baseline_of,
    conditions,
    reported_version,
)
from bot.domain.health.incidents import (
    DEPLOY_CHECK,
    OUTAGE_CHECK,
    CheckNews,
    CheckState,
    Incident,
)
from bot.domain.health.summaries import health_row
from bot.domain.health.windows import (
    Window,
    fold,
    is_due,
    open_window,
    summarize_aggregates,
    summarize_window,
    version_aggregate,
    window_aggregate,
)
from bot.domain.outbox import Entry, IncidentNews, Place
from bot.services.adopt_version import adopt_reported
from bot.services.clicks import Where, refused, same_message
from bot.services.ports import (
    AckReader,
    HasAuditLog,
    HasChat,
    HasClock,
    HasConfig,
    HasEnvironmentOutcomes,
    HasHealthProbe,
    HasMonitorState,
    HasRunningReleases,
    HasVersionIndex,
    TickNews,
)

log = logging.getLogger(__name__)

ACKNOWLEDGE = "incident.acknowledge"  # the audit action of an Acknowledge click
WORK_BATCH = 500  # checks judged between two turns of the event loop
# How long a replica's share of the checks is its own without renewing (at least 3 ticks):
# a replica killed or frozen hands its checks over within this.
MEMBER_LEASE_SECONDS = 6.0
# Incident changes that go on the trail (reminders do not: nothing changed but the time).
AUDITED_NEWS = ("open", "escalate", "change", "resolve")
HEALTH_SAMPLES = 30  # recent results per check behind `/release health`'s percentiles


class MonitorNeeds(
    HasConfig,
    HasClock,
    HasAuditLog,
    HasChat,
    HasMonitorState,
    HasHealthProbe,
    HasRunningReleases,
    HasEnvironmentOutcomes,
    HasVersionIndex,
    Protocol,
):
    """Checks, incidents and monitoring windows: their state, the probe, and the channel
    (and the version index, to adopt what a check reports an unknown environment runs)."""


@dataclass(frozen=True)
class Due:
    """A configured check, as a tick runs it."""

    environment: EnvironmentConfig
    check: CheckConfig
    id: CheckId


def _new_outage(environment: str, now: float, version: str) -> Incident:
    return Incident(
        id=secrets.token_hex(6),
        environment=environment,
        check=OUTAGE_CHECK,
        severity="",
        opened_at=now,
        problem="",
        version=version,
    )


class Monitor:
    """One scheduler replica's monitor. Every replica's runs each tick, on its share of the
    checks (bot.domain.health.shares): the members share them by hash, so n replicas each
    probe about 1/n of the checks, and one that dies hands its share over when its lease
    ends. A tick writes only in the epoch (members) it started in, so a check is never
    recorded by two replicas at once; the environments' outages, which every replica's
    checks feed, are merged in the same write, again if another replica changed one."""

    def __init__(self, services: MonitorNeeds) -> None:
        self.services = services
        self.member = secrets.token_hex(6)  # this replica among those sharing the checks
        tick = services.config.monitoring.tick_seconds
        self.lease_seconds = max(MEMBER_LEASE_SECONDS, 3 * tick)
        # The states of this replica's checks as it wrote them: good while the members stay
        # the same (no other replica runs these checks meanwhile); saves reading them.
        self._states: dict[CheckId, CheckState] = {}
        self._saved: dict[CheckId, bytes] = {}  # the state JSON last written, per check
        self._epoch = -1
        self._members: list[str] = []
        self._checks = [
            Due(e, c, (e.name, c.name)) for e in services.config.environments for c in e.checks
        ]
        self._mine = list(self._checks)
        self._outages: list[CheckId] = [
            (e.name, OUTAGE_CHECK) for e in services.config.environments if e.checks
        ]
        self._configured = {
            e.name: {c.name for c in e.checks} for e in services.config.environments
        }

    async def close(self) -> None:
        """Leave the members (the others take this replica's checks over at once)."""
        try:
            await self.services.monitor_state.leave(self.member)
        finally:
            await self.services.health_probe.close()

    async def tick(self, now: float | None = None) -> int:
        """Run this replica's checks that are due; returns how many ran."""
        now = self.services.clock() if now is None else now
        if not self._outages:
            return 0
        await self._join()
        # A long tick (slow endpoints, thousands of checks) renews its lease meanwhile, so
        # the others do not take its checks over while it still runs them.
        keeper = asyncio.create_task(self._keep_lease())
        try:
            return await self._tick(now, self._epoch)
        except BaseException:
            # The states held were judged in place: unwritten, they would say a check
            # recovered that its outage never heard of (and it would never end).
            self._forget()
            raise
        finally:
            keeper.cancel()

    def _forget(self) -> None:
        self._states.clear()
        self._saved.clear()
        self._epoch = -1

    async def _join(self) -> None:
        epoch, members = await self.services.monitor_state.join(self.member, self.lease_seconds)
        if epoch != self._epoch:
            # Members came or went: some checks changed hands, and what is held may be stale.
            self._forget()
            self._epoch = epoch
        if members != self._members:
            self._members = members
            mine = set(shares.share([d.id for d in self._checks], members, self.member))
            self._mine = [d for d in self._checks if d.id in mine]

    async def _keep_lease(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self.services.monitor_state.join(self.member, self.lease_seconds)
            except Exception:
                log.warning("renewing this replica's share of the checks failed")

    async def _tick(self, now: float, epoch: int) -> int:
        services, cfg = self.services, self.services.config.monitoring
        state_store = services.monitor_state
        names = [environment for environment, _ in self._outages]
        windows, deploying = await state_store.tick_outlook(names)
        for name, window in windows.items():
            if window.over(now):
                await close_window(services, name, window, rolled_back=False)
        await self._load_states([d.id for d in self._mine])
        due = [
            d
            for d in self._mine
            if is_due(
                self._states[d.id].last,
                d.check.interval_seconds,
                windows.get(d.environment.name),
                now,
                cfg,
            )
        ]
        versions = await services.running_releases.environment_versions(names)
        seen = await services.health_probe.observe_all([d.check for d in due])
        states = [self._states[d.id] for d in due]
        deployed = [versions.get(d.environment.name, {}).get("version", "") for d in due]
        await self._load_baselines(due, states, deployed)
        # Mid-deploy the site may already run the new version before the bot records it:
        # the version condition waits until the deploy is over.
        expected = [
            "" if d.environment.name in deploying else v for d, v in zip(due, deployed, strict=True)
        ]
        news: dict[str, list[CheckNews]] = {}
        results: list[tuple[CheckId, Result]] = []
        for n, (d, state, observation, version, compare) in enumerate(
            zip(due, states, seen, deployed, expected, strict=True)
        ):
            if n and not n % WORK_BATCH:
                await asyncio.sleep(0)  # thousands of checks: acks get their turn meanwhile
            problems = conditions(d.check, observation, compare)
            result = Result.of(observation, problems, now, version)
            if (item := incidents.judge(state, d.check.name, result, problems, cfg)) is not None:
                news.setdefault(d.environment.name, []).append(item)
            results.append((d.id, result))
        deltas = fold(((check[0], result) for check, result in results), windows)
        await state_store.record_results(results, cfg.history, deltas, epoch=epoch)
        changed = {}
        for n, (d, state) in enumerate(zip(due, states, strict=True)):
            if n and not n % WORK_BATCH:
                await asyncio.sleep(0)  # after a deploy every state changes
            raw = state.to_json()
            if self._saved.get(d.id) != raw:  # a healthy check's state stays as it was
                changed[d.id] = raw
        # The checks' states are written with the outages they feed and what is to be said
        # of them, in one write; the outbox says it after the tick, paced (posting in the
        # tick held every check up behind Slack's 429s).
        written = await state_store.commit_tick(
            epoch, changed, self._outages, partial(self._merge, news, versions, now)
        )
        if written is None:
            # The members changed during the tick: another replica may have run some of
            # these checks, so nothing here is recorded, and what this replica holds is stale.
            log.warning("the members sharing the checks changed during a tick; it is not recorded")
            self._forget()
            return len(due)
        self._saved.update(changed)
        services.chat.wake(sorted({channel for channel, _ in written[2]}))
        # An environment the bot knows nothing of (day one) learns what it runs from a check
        # that reports it (`version_field`, /build-info); after the write, outside the tick's.
        unknown: dict[str, tuple[str, str]] = {}
        for d, observation, version in zip(due, seen, deployed, strict=True):
            env = d.environment.name
            if version or env in deploying or env in unknown:
                continue
            if (reported := reported_version(d.check, observation)) is not None:
                unknown[env] = (reported, d.check.name)
        for env, (reported, check_name) in unknown.items():
            await adopt_reported(services, env, reported, check_name)
        return len(due)

    async def _merge(
        self,
        news: dict[str, list[CheckNews]],
        versions: dict[str, dict[str, str]],
        now: float,
        stored: list[bytes | None],
        acknowledgements: AckReader,
    ) -> TickNews:
        """Each environment's outage, as stored now (another replica's checks feed it too),
        takes this tick's news of its checks: one incident for all of them. Returns the
        outages that changed, with the audit entries and news of what changed."""
        services, cfg = self.services, self.services.config.monitoring
        outages = [CheckState.from_json(raw) for raw in stored]
        acks = await acknowledgements(
            [
                s.incident.id
                for s in outages
                if s.incident is not None and not s.incident.acknowledged_by
            ]
        )
        said: list[tuple[str, Incident]] = []
        changed: dict[CheckId, bytes] = {}
        for check, state, raw in zip(self._outages, outages, stored, strict=True):
            environment = check[0]
            items = news.get(environment, [])
            if state.incident is not None:
                # A check taken out of the config while failing recovers, or the outage
                # could never end.
                gone = set(state.incident.failing) - self._configured[environment]
                items = items + [CheckNews(name, "recover") for name in sorted(gone)]
            if not items and state.incident is None:
                continue
            version = versions.get(environment, {}).get("version", "")
            said += incidents.outage_step(
                state,
                items,
                now,
                cfg,
                partial(_new_outage, environment, now, version),
                acks.get(state.incident.id) if state.incident is not None else None,
            )
            if (after := state.to_json()) != raw:
                changed[check] = after
        audits, outbox = await _news_of(services, said, versions, now)
        return changed, audits, outbox

    async def _load_states(self, checks: list[CheckId]) -> None:
        """States not held yet: each with the recent history it is rebuilt from."""
        missing = [c for c in checks if c not in self._states]
        if not missing:
            return
        cfg = self.services.config.monitoring
        # A replica whose share changed reloads its checks: in stretches, so that thousands
        # of histories parsed never hold the event loop for long.
        for start in range(0, len(missing), WORK_BATCH // 2):
            chunk = missing[start : start + WORK_BATCH // 2]
            stored = await self.services.monitor_state.stored_checks(
                chunk, max(cfg.error_rate_samples, cfg.latency_samples)
            )
            for check, (raw, history) in zip(chunk, stored, strict=True):
                self._states[check] = CheckState.from_json(raw, history, cfg)
                if raw is not None:
                    self._saved[check] = raw
            await asyncio.sleep(0)

    async def _load_baselines(
        self, due: list[Due], states: list[CheckState], deployed: list[str]
    ) -> None:
        """When a check first sees a new version, its latency baseline is taken from the good
        answers of the versions before it that its state holds (nothing is read: a deploy
        makes every check's baseline at once)."""
        cfg = self.services.config.monitoring
        for state, version in zip(states, deployed, strict=True):
            if version and state.recent.version != version:
                state.recent.baseline_ms = baseline_of(state.recent.good, version, cfg)


# --- telling people ------------------------------------------------------------------------


async def _news_of(
    services: MonitorNeeds,
    said: list[tuple[str, Incident]],
    versions: dict[str, dict[str, str]],
    now: float,
    release_version: str = "",
) -> tuple[list[tuple[str, dict[str, str]]], list[tuple[str, Entry]]]:
    """The audit entries and the outbox entries of incident changes. An opening incident is
    placed: in the thread of `release_version` if given, else of the release running in its
    environment, else in the channel (one lookup per environment, however many open)."""
    audits: list[tuple[str, dict[str, str]]] = []
    news: list[tuple[str, Entry]] = []
    places: dict[str, tuple[str, str]] = {}
    for what, incident in said:
        if what == "open":
            if incident.environment not in places:
                places[incident.environment] = await _place(
                    services, incident.environment, release_version
                )
            incident.channel, incident.thread_ts = places[incident.environment]
        if what in AUDITED_NEWS:
            audits.append((f"incident.{what}", _audit_fields(what, incident, now)))
        deployed = versions.get(incident.environment, {}).get("version", "")
        channel = incident.channel or services.config.slack.channel
        news.append((channel, IncidentNews(what, incident.news_copy(), deployed, now)))
    return audits, news


def _audit_fields(what: str, incident: Incident, now: float) -> dict[str, str]:
    """An incident change on the trail: which checks, how badly, for how long."""
    fields = {"environment": incident.environment, "release": incident.version}
    if what == "resolve":
        count, names = incident.checks
        more = f" and {count - len(names)} more" if count > len(names) else ""
        fields["reason"] = f"{', '.join(names)}{more} after {incident.duration(now):.0f}s"
    else:
        fields["outcome"] = incident.severity
        where = "" if incident.check == OUTAGE_CHECK else f"{incident.check}: "
        fields["reason"] = f"{where}{incident.problem}"
        if what == "change":
            fields["reason"] = (
                f"{incident.failing_count} failing, {incident.recovered_count} recovered: "
                f"{incident.problem}"
            )
    fields["reason"] = fields["reason"][:1000]
    return fields


async def _place(
    services: MonitorNeeds, environment: str, release_version: str = ""
) -> tuple[str, str]:
    """The thread of that release or the one now in `environment`, else the channel itself."""
    releases = services.running_releases
    if not release_version:
        running = (await releases.environment_versions([environment]))[environment]
        release_version = running.get("release", "")
    release = await releases.get_release(release_version) if release_version else None
    if release is not None and release.channel and release.message_ts:
        return release.channel, release.message_ts
    return services.config.slack.channel, ""


async def acknowledge(
    services: MonitorNeeds,
    actor: Actor,
    environment: str,
    check: str,
    incident_id: str,
    where: Where,
) -> str:
    """Someone clicked Acknowledge on the incident's message at `where`: reminders stop. The
    first click counts; every click is audited."""
    known = {
        e.name: {c.name for c in e.checks} | {DEPLOY_CHECK, OUTAGE_CHECK}
        for e in services.config.environments
    }
    if check not in known.get(environment, set()):
        return await refused(
            services,
            actor,
            ACKNOWLEDGE,
            f"unknown check {environment}/{check}"[:200],
            "This button names no check I know; `/release health` shows them.",
        )
    incident = (await services.monitor_state.check_state((environment, check))).incident
    if incident is None or incident.id != incident_id:
        return await refused(
            services,
            actor,
            ACKNOWLEDGE,
            f"{incident_id[:40]}: not open",
            "That incident is over; nothing to acknowledge.",
        )
    place = await services.monitor_state.incident_place(incident.id)
    if place is None and incident.ts:  # opened by a version that kept it in the state
        place = Place(incident.channel, incident.ts)
    if place is None or place.group or not same_message(where, place.channel, place.ts):
        return await refused(
            services,
            actor,
            ACKNOWLEDGE,
            f"{incident_id}: not on the incident's message",
            "This button is not on the incident's message; use the one there.",
        )
    now = services.clock()
    earlier = await services.monitor_state.acknowledge(incident_id, actor.user_id, now)
    if earlier is not None:
        who = earlier or "someone"
        await services.audit_log.audit(
            actor,
            "incident.acknowledge",
            environment=environment,
            release=incident.version,
            outcome="duplicate",
            reason=f"{check}: acknowledged by {who} already",
        )
        return (
            f"<@{who}> already acknowledged it."
            if who != actor.user_id
            else "You already acknowledged it."
        )
    await services.audit_log.audit(
        actor,
        "incident.acknowledge",
        environment=environment,
        release=incident.version,
        reason=f"{check}: {incident.problem}"[:1000],
    )
    incident.acknowledged_by, incident.acknowledged_at = actor.user_id, now
    running = (await services.running_releases.environment_versions([environment])).get(
        environment, {}
    )
    await services.chat.say(
        incident.channel or services.config.slack.channel,
        [
            IncidentNews(
                "acknowledged", incident.news_copy(), running.get("version", ""), now, actor.user_id
            )
        ],
    )
    return f"Acknowledged: {texts.incident_title(incident)}. No more reminders for it."


async def acknowledge_group(
    services: MonitorNeeds, actor: Actor, group_id: str, where: Where
) -> str:
    """Acknowledge all on a summary message: every incident it stands for that is still
    open and not acknowledged stops reminding. Each one acknowledged is audited."""
    group = await services.monitor_state.group(group_id)
    if group is None:
        return await refused(
            services,
            actor,
            ACKNOWLEDGE,
            f"group {group_id[:40]}: unknown",
            "I know no such group of incidents (it may be a month old); "
            "`/release health` shows what is open.",
        )
    if not same_message(where, group.channel, group.ts):
        return await refused(
            services,
            actor,
            ACKNOWLEDGE,
            f"group {group_id}: not on its message",
            "This button is not on that summary's message; use the one there.",
        )
    states = await services.monitor_state.check_states([(e, c) for e, c, _ in group.members])
    open_now = {s.incident.id: s.incident for s in states if s.incident is not None}
    now = services.clock()
    taken = []
    for _, check, incident_id in group.members:
        incident = open_now.get(incident_id)
        if incident is None:
            continue  # resolved since
        if await services.monitor_state.acknowledge(incident_id, actor.user_id, now) is None:
            taken.append(incident)
            await services.audit_log.audit(
                actor,
                "incident.acknowledge",
                environment=incident.environment,
                release=incident.version,
                reason=f"{check}: {incident.problem} (all of a summary)"[:1000],
            )
    if not taken:
        return "Nothing left to acknowledge: those incidents are acknowledged or over."
    await services.chat.reply(
        group.channel,
        group.ts,
        texts.group_acknowledged_reply(actor.user_id, len(taken)),
        f"{len(taken)} incidents acknowledged",
    )
    noun = "incident" if len(taken) == 1 else "incidents"
    return f"Acknowledged {len(taken)} {noun}. No more reminders for them."


# --- deploys -------------------------------------------------------------------------------


async def deploy_failed(
    services: MonitorNeeds, environment: str, release_version: str, tag: str, detail: str
) -> None:
    """A failed deploy is a critical incident at once (no run of failures to wait for)."""
    check = (environment, DEPLOY_CHECK)
    state = await services.monitor_state.check_state(check)
    now = services.clock()
    what, incident = incidents.deploy_failed(
        state,
        environment,
        incidents.deploy_problem(tag, detail),
        now,
        release_version,
        partial(secrets.token_hex, 6),
    )
    await _commit_one(services, check, state, [(what, incident)], release_version)


async def _commit_one(
    services: MonitorNeeds,
    check: CheckId,
    state: CheckState,
    said: list[tuple[str, Incident]],
    release_version: str = "",
) -> None:
    """Record one check's new state with its audit entries and news, then say them."""
    versions = await services.running_releases.environment_versions([check[0]])
    audits, news = await _news_of(services, said, versions, services.clock(), release_version)
    await services.monitor_state.commit({check: state.to_json()}, audits, news)
    services.chat.wake(sorted({channel for channel, _ in news}))


async def deploy_finished(
    services: MonitorNeeds,
    environment: str,
    version: str,
    release_version: str,
    previous_version: str,
    rollback: bool = False,
) -> None:
    """A deploy succeeded: a failed-deploy incident resolves; in the last environment, the
    close watch of the new version starts (and that of the version it replaced ends)."""
    monitor_state = services.monitor_state
    now = services.clock()
    check = (environment, DEPLOY_CHECK)
    state = await monitor_state.check_state(check)
    resolved = incidents.deploy_succeeded(state, now)
    if resolved is not None:
        await _commit_one(services, check, state, [("resolve", resolved)])
    env = services.config.environment(environment)
    if environment != services.config.last_environment.name or not env.checks:
        return
    current = await monitor_state.window(environment)
    if current is not None:
        await close_window(services, environment, current, rolled_back=rollback)
    await monitor_state.start_window(
        environment,
        open_window(version, previous_version, release_version, now, services.config.monitoring),
    )


async def close_window(
    services: MonitorNeeds, environment: str, window: Window, rolled_back: bool
) -> None:
    if not await services.monitor_state.end_window(environment):
        return  # someone else closed it
    env = services.config.environment(environment)
    cfg = services.config.monitoring
    if window.aggregated:
        # Two hashes, however many checks and results: what the ticks summed up.
        during, before = await services.monitor_state.aggregates(
            [
                window_aggregate(environment, window),
                version_aggregate(environment, window.previous),
            ]
        )
        summary = summarize_aggregates(
            environment, window, during, before if window.previous else None, rolled_back, cfg
        )
        await services.monitor_state.drop_aggregate(window_aggregate(environment, window))
    else:  # opened by a version of the bot that did not sum results up
        histories = await services.monitor_state.results(
            [(environment, c.name) for c in env.checks], cfg.history
        )
        summary = summarize_window(environment, window, histories, rolled_back, cfg)
    blocks = texts.window_summary(summary, window.minutes_watched(services.clock()))
    text = f"{environment} after {window.version}: {summary.verdict}"
    # Audited before it is posted: what people see is always on the trail.
    await services.audit_log.audit(
        BOT,
        "monitor.window",
        environment=environment,
        release=window.release,
        outcome=summary.verdict,
        reason=f"{summary.checks_run} checks, {summary.failures} failed",
    )
    if summary.verdict == "degraded":
        # A rollback never goes back to it by itself (bot.domain.rollbacks.known_bad).
        await services.environment_outcomes.mark_failed_in(
            environment,
            window.version,
            f"{services.config.repository.tag_prefix}{window.version}",
            f"its monitoring window: {summary.failures} of {summary.checks_run} checks failed",
        )
    release = (
        await services.running_releases.get_release(window.release) if window.release else None
    )
    if release is not None and release.channel and release.message_ts:
        await services.chat.reply(release.channel, release.message_ts, blocks, text)
    else:
        await services.chat.reply(services.config.slack.channel, "", blocks, text)


async def open_incidents(services: MonitorNeeds, environment: str) -> list[Incident]:
    """The incidents open in `environment` now, its failed deploy's included."""
    states = await services.monitor_state.check_states(
        [(environment, OUTAGE_CHECK), (environment, DEPLOY_CHECK)]
    )
    return [state.incident for state in states if state.incident is not None]


# --- /release health -----------------------------------------------------------------------


async def health_rows(
    services: MonitorNeeds, environment: str | None = None
) -> list[dict[str, Any]]:
    """The lines of `/release health`, those in trouble first. Every check's state and last
    result are read (that is what the counts need), but the recent results behind the
    percentiles only for the checks that are shown: at 5,000 checks the answer is not 5,000
    histories parsed before the ack."""
    environments = [
        e for e in services.config.environments if environment is None or e.name == environment
    ]
    pairs = [(e.name, c.name) for e in environments for c in e.checks]
    pairs += [(e.name, DEPLOY_CHECK) for e in environments]
    cfg = services.config.monitoring
    latest = await services.monitor_state.stored_checks(pairs, 1)
    states = []
    for n, (pair, (raw, history)) in enumerate(zip(pairs, latest, strict=True)):
        if n and not n % WORK_BATCH:
            await asyncio.sleep(0)
        state = CheckState.from_json(raw, history, cfg)
        if pair[1] == DEPLOY_CHECK and state.incident is None:
            continue  # shown only while a failed deploy is open
        states.append((pair, state))
    states.sort(key=lambda item: _trouble(item[1]))
    shown = states[:HEALTH_LINES]
    histories = await services.monitor_state.results([pair for pair, _ in shown], HEALTH_SAMPLES)
    rows = []
    for ((env, check), state), history in zip(shown, histories, strict=True):
        row = health_row(env, check, state, history)
        if row is not None:
            rows.append(row)
    for n, ((env, check), state) in enumerate(states[HEALTH_LINES:]):
        if n and not n % WORK_BATCH:
            await asyncio.sleep(0)
        if (row := health_row(env, check, state, [])) is not None:
            rows.append(row)  # counted, not shown: no percentiles needed
    return rows


async def answer_health(
    services: MonitorNeeds, response_url: str | None, environment: str | None = None
) -> None:
    """After the ack: every check's state is read and sorted, which at 5,000 checks is more
    than an ack should wait for, so the report comes privately through the response_url."""
    rows = await health_rows(services, environment)
    await services.chat.answer(
        response_url, texts.health_report(rows, services.clock()), "Health checks"
    )


def _trouble(state: CheckState) -> int:
    """Alerting checks (and a failed deploy) first, then failing checks, then those not run
    yet, healthy last."""
    if state.incident is not None:
        return 0 if state.incident.critical else 1
    if state.alerting:
        return 0 if state.alerting == "critical" else 1
    if state.last is not None and not state.last.ok:
        return 2
    return 3 if state.last is None else 4
