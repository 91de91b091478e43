"""The health monitor: runs the checks that are due, keeps their results in Redis, and tells
the release's thread about incidents. One tick at a time across all replicas (a Redis lock);
the scheduler calls `tick`, deploy jobs call `deploy_finished` and `deploy_failed`."""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from functools import partial
from typing import Any

from bot.adapters.http_probe import Prober
from bot.blocks import health as texts
from bot.domain.actors import BOT, Actor
from bot.domain.config import CheckConfig, EnvironmentConfig
from bot.domain.health.checks import Result, assess, baseline_ms, conditions
from bot.domain.health.incidents import DEPLOY_CHECK, CheckState, Incident, step
from bot.domain.health.summaries import percentile, summarize
from bot.runtime.container import Services
from bot.services.clicks import Where, refused, same_message

log = logging.getLogger(__name__)


# Compare-and-delete, so a tick that overran its lock never frees the next tick's.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


# Every result of a tick in one call: ARGV = history, then (key, result) per check. A history
# is trimmed once it is 20 longer than kept, not on every push.
_STORE_RESULTS = """
local keep = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  if redis.call('LPUSH', ARGV[i], ARGV[i + 1]) > keep + 20 then
    redis.call('LTRIM', ARGV[i], 0, keep - 1)
  end
end
return 0
"""


@dataclass(frozen=True)
class Due:
    """A configured check, with the keys a tick needs (made once, not per tick)."""

    environment: EnvironmentConfig
    check: CheckConfig
    id: str
    state_key: str
    results_key: str


def _new_incident(due: Due, now: float, version: str) -> Incident:
    return Incident(id=secrets.token_hex(6), environment=due.environment.name,
                    check=due.check.name, severity="", opened_at=now, problem="",
                    version=version)


@dataclass
class Window:
    """The close watch after a deploy of the last environment."""

    version: str
    previous: str
    release: str
    started: float
    ends: float

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


class Monitor:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.prober = Prober(services.config.monitoring.concurrency)
        # The states this replica wrote at its last tick, good while no other replica has
        # ticked since (`_written` is still what Redis says); saves reading them every tick.
        self._states: dict[str, CheckState] = {}
        self._saved: dict[str, bytes] = {}  # the state JSON last written, per check
        self._written = ""
        keys = services.store.keys
        self._checks = [Due(e, c, f"{e.name}:{c.name}", keys.check_state(e.name, c.name),
                            keys.check_results(e.name, c.name))
                        for e in services.config.environments for c in e.checks]

    async def close(self) -> None:
        await self.prober.close()

    async def tick(self, now: float | None = None) -> int:
        """Run every check that is due; returns how many ran (0 when another replica is
        running a tick)."""
        store, redis = self.services.store, self.services.redis
        now = store.clock() if now is None else now
        token = secrets.token_hex(8)
        longest = max((c.timeout_seconds for e in self.services.config.environments
                       for c in e.checks), default=10.0)
        if not await redis.set(store.keys.monitor_lock, token, nx=True,
                               px=int((longest + 60) * 1000)):
            return 0
        try:
            return await self._tick(now)
        finally:
            await redis.eval(_RELEASE, 1, store.keys.monitor_lock, token)

    async def _tick(self, now: float) -> int:
        services, cfg = self.services, self.services.config.monitoring
        store, redis, keys = services.store, services.redis, services.store.keys
        watched = [e for e in services.config.environments if e.checks]
        if not watched:
            return 0
        names = [e.name for e in watched]
        async with redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(keys.monitor_window(name))
            for name in names:
                pipe.get(keys.env_lock(name))
            pipe.get(keys.monitor_writer)
            rows = await pipe.execute()
        if not self._written or _s(rows[-1] or b"") != self._written:
            self._states.clear()  # another replica ticked since: what we hold is stale
            self._saved.clear()
        n = len(names)
        windows = {name: Window(**json.loads(raw)) for name, raw in zip(names, rows[:n],
                                                                        strict=True) if raw}
        # Mid-deploy the site may already run the new version before the bot records it:
        # the version condition waits until the deploy is over.
        deploying = {name for name, raw in zip(names, rows[n:2 * n], strict=True)
                     if raw and json.loads(raw).get("kind", "deploy") == "deploy"}
        for name, window in windows.items():
            if now >= window.ends:
                await close_window(services, name, window, rolled_back=False)
        await self._load_states(self._checks)
        due = [d for d in self._checks
               if self._is_due(d, windows.get(d.environment.name), now)]
        if not due:
            return 0
        versions = await store.environment_versions(names)
        seen = await self.prober.observe_all([d.check for d in due])
        states = [self._states[d.id] for d in due]
        deployed = [versions.get(d.environment.name, {}).get("version", "") for d in due]
        await self._load_baselines(due, states, deployed)
        expected = ["" if d.environment.name in deploying else v
                    for d, v in zip(due, deployed, strict=True)]
        acks = await self._acknowledgements(states)

        said: list[tuple[str, Incident]] = []
        pushes: list[str | bytes] = []  # (results key, result) pairs for _STORE_RESULTS
        for d, state, observation, version, compare in zip(due, states, seen, deployed,
                                                            expected, strict=True):
            problems = conditions(d.check, observation, compare)
            result = Result(at=now, ok=not problems, ms=round(observation.elapsed_ms, 2),
                            status=observation.status, problem="; ".join(problems),
                            version=version)
            state.recent.add(result, cfg)
            state.last = result
            if not result.ok:
                state.last_failure = result
            if state.incident is not None and state.incident.id in acks:
                state.incident.acknowledged_by, state.incident.acknowledged_at = \
                    acks[state.incident.id]
            change = step(state, assess(problems, state.recent, cfg), now, cfg,
                          partial(_new_incident, d, now, version))
            if change is not None:
                said.append(change)
            pushes += [d.results_key, result.to_json()]
        # One script call for every result of the tick: one reply instead of one per check.
        await redis.eval(_STORE_RESULTS, 0, cfg.history, *pushes)
        # Messages before the states are saved: an opened incident keeps its message's ts.
        for what, incident in said:
            await tell(services, what, incident,
                       versions.get(incident.environment, {}).get("version", ""), now)
        changed = {}
        for d, state in zip(due, states, strict=True):
            raw = state.to_json()
            if self._saved.get(d.id) != raw:
                changed[d.state_key] = raw
                self._saved[d.id] = raw
        self._written = secrets.token_hex(8)
        async with redis.pipeline(transaction=False) as pipe:
            if changed:  # a healthy check's state stays as it was: nothing to write
                pipe.mset(changed)
            pipe.set(keys.monitor_writer, self._written)
            await pipe.execute()
        return len(due)

    def _is_due(self, due: Due, window: Window | None, now: float) -> bool:
        last = self._states[due.id].last
        if last is None:
            return True
        interval = due.check.interval_seconds
        if window is not None:
            if last.at < window.started:
                return True  # checked at once after the deploy
            interval = min(interval, self.services.config.monitoring.window_interval_seconds)
        return last.at + interval <= now

    async def _load_states(self, checks: list[Due]) -> None:
        """States not held yet: each with the recent history it is rebuilt from."""
        missing = [d for d in checks if d.id not in self._states]
        if not missing:
            return
        cfg = self.services.config.monitoring
        async with self.services.redis.pipeline(transaction=False) as pipe:
            for d in missing:
                pipe.get(d.state_key)
                pipe.lrange(d.results_key, 0,
                            max(cfg.error_rate_samples, cfg.latency_samples) - 1)
            rows = await pipe.execute()
        for i, d in enumerate(missing):
            raw, history = rows[2 * i], [Result.from_json(r) for r in rows[2 * i + 1]]
            self._states[d.id] = CheckState.from_json(raw, history, cfg)
            if raw is not None:
                self._saved[d.id] = raw

    async def _load_baselines(self, due: list[Due], states: list[CheckState],
                              deployed: list[str]) -> None:
        """When a check first sees a new version, its latency baseline is taken from the
        history of the versions before it (read once per version, not every tick)."""
        stale = [i for i, (state, version) in enumerate(zip(states, deployed, strict=True))
                 if version and state.recent.version != version]
        if not stale:
            return
        cfg = self.services.config.monitoring
        async with self.services.redis.pipeline(transaction=False) as pipe:
            for i in stale:
                pipe.lrange(due[i].results_key, 0, cfg.history - 1)
            histories = await pipe.execute()
        for i, raws in zip(stale, histories, strict=True):
            history = [Result.from_json(r) for r in raws]
            states[i].recent.baseline_ms = baseline_ms(history, deployed[i], cfg)

    async def _acknowledgements(self, states: list[CheckState]) -> dict[str, tuple[str, float]]:
        ids = [s.incident.id for s in states if s.incident is not None
               and not s.incident.acknowledged_by]
        if not ids:
            return {}
        keys = self.services.store.keys
        raws = await self.services.redis.mget([keys.incident_ack(i) for i in ids])
        found = {}
        for incident_id, raw in zip(ids, raws, strict=True):
            if raw:
                ack = json.loads(raw)
                found[incident_id] = (ack["user"], ack["at"])
        return found


# --- telling people ------------------------------------------------------------------------


async def tell(services: Services, what: str, incident: Incident, deployed_version: str,
               now: float, release_version: str = "") -> None:
    """Post or update the incident's message for one change of it. It opens in the thread of
    `release_version` if given, else of the release running in the environment."""
    oncall = services.config.monitoring.oncall
    notifier = services.notifier
    blocks = texts.incident_message(incident, oncall, deployed_version, now)
    text = texts.incident_text(incident)
    if what == "open":
        await services.store.audit(BOT, "incident.open", environment=incident.environment,
                                   release=incident.version, outcome=incident.severity,
                                   reason=f"{incident.check}: {incident.problem}"[:1000])
        incident.channel, incident.thread_ts = await _place(services, incident.environment,
                                                            release_version)
        posted = await notifier.post(incident.channel, blocks, text,
                                     thread_ts=incident.thread_ts or None)
        incident.ts = str((posted or {}).get("ts", ""))
        # The channel's ID as Slack answered (the config may name it): clicks carry the ID.
        incident.channel = str((posted or {}).get("channel") or incident.channel)
        return
    if what == "resolve":
        await services.store.audit(BOT, "incident.resolve", environment=incident.environment,
                                   release=incident.version,
                                   reason=f"{incident.check} after "
                                          f"{incident.duration(now):.0f}s")
    await _update(services, incident, blocks, text)
    thread = incident.thread_ts or incident.ts
    if what in ("remind", "escalate"):
        await notifier.post(incident.channel, texts.reminder(incident, oncall, now,
                                                             escalated=what == "escalate"),
                            text, thread_ts=thread or None)
    elif what == "resolve":
        await notifier.post(incident.channel, texts.resolved_reply(incident, now), text,
                            thread_ts=thread or None)


async def _update(services: Services, incident: Incident, blocks: list[Any], text: str) -> None:
    if not incident.ts:
        return
    try:
        await services.notifier.client.chat_update(channel=incident.channel, ts=incident.ts,
                                                   blocks=blocks, text=text)
    except Exception:  # the thread reply still tells; a failed redraw must not stop the tick
        log.warning("updating incident %s failed", incident.id, exc_info=True)


async def _place(services: Services, environment: str,
                 release_version: str = "") -> tuple[str, str]:
    """The thread of that release or the one now in `environment`, else the channel itself."""
    if not release_version:
        running = (await services.store.environment_versions([environment]))[environment]
        release_version = running.get("release", "")
    release = await services.store.get_release(release_version) if release_version else None
    if release is not None and release.channel and release.message_ts:
        return release.channel, release.message_ts
    return services.config.slack.channel, ""


async def acknowledge(services: Services, actor: Actor, environment: str, check: str,
                      incident_id: str, where: Where) -> str:
    """Someone clicked Acknowledge on the incident's message at `where`: reminders stop. The
    first click counts; every click is audited."""
    store, redis = services.store, services.redis
    known = {e.name: {c.name for c in e.checks} | {DEPLOY_CHECK}
             for e in services.config.environments}
    if check not in known.get(environment, set()):
        return await refused(services, actor, "incident.acknowledge",
                             f"unknown check {environment}/{check}"[:200],
                             "This button names no check I know; `/release health` shows "
                             "them.")
    state = CheckState.from_json(await redis.get(store.keys.check_state(environment, check)))
    incident = state.incident
    if incident is None or incident.id != incident_id:
        return await refused(services, actor, "incident.acknowledge",
                             f"{incident_id[:40]}: not open", "That incident is over; nothing "
                             "to acknowledge.")
    if not same_message(where, incident.channel, incident.ts):
        return await refused(services, actor, "incident.acknowledge",
                             f"{incident_id}: not on the incident's message",
                             "This button is not on the incident's message; use the one "
                             "there.")
    now = store.clock()
    first = await redis.set(store.keys.incident_ack(incident_id),
                            json.dumps({"user": actor.user_id, "at": now}), nx=True,
                            ex=30 * 86400)
    if not first:
        raw = await redis.get(store.keys.incident_ack(incident_id))
        who = json.loads(raw)["user"] if raw else "someone"
        await store.audit(actor, "incident.acknowledge", environment=environment,
                          release=incident.version, outcome="duplicate",
                          reason=f"{check}: acknowledged by {who} already")
        return f"<@{who}> already acknowledged it." if who != actor.user_id else \
            "You already acknowledged it."
    await store.audit(actor, "incident.acknowledge", environment=environment,
                      release=incident.version, reason=f"{check}: {incident.problem}"[:1000])
    incident.acknowledged_by, incident.acknowledged_at = actor.user_id, now
    running = (await store.environment_versions([environment])).get(environment, {})
    await _update(services, incident, texts.incident_message(
        incident, services.config.monitoring.oncall, running.get("version", ""), now),
        texts.incident_text(incident))
    await services.notifier.post(incident.channel, texts.acknowledged_reply(incident,
                                                                            actor.user_id),
                                 texts.incident_text(incident),
                                 thread_ts=(incident.thread_ts or incident.ts) or None)
    return f"Acknowledged: {texts.incident_title(incident)}. No more reminders for it."


# --- deploys -------------------------------------------------------------------------------


async def deploy_failed(services: Services, environment: str, release_version: str,
                        tag: str, detail: str) -> None:
    """A failed deploy is a critical incident at once (no run of failures to wait for)."""
    store, redis = services.store, services.redis
    key = store.keys.check_state(environment, DEPLOY_CHECK)
    state = CheckState.from_json(await redis.get(key))
    now = store.clock()
    problem = f"the deploy of `{tag}` failed: {detail}"[:500]
    running = (await store.environment_versions([environment])).get(environment, {})
    if state.incident is not None:
        state.incident.failures += 1
        state.incident.problem = problem
        await tell(services, "remind", state.incident, running.get("version", ""), now)
    else:
        state.incident = Incident(id=secrets.token_hex(6), environment=environment,
                                  check=DEPLOY_CHECK, severity="critical", opened_at=now,
                                  problem=problem, reminded_at=now, version=release_version)
        await tell(services, "open", state.incident, running.get("version", ""), now,
                   release_version)
    await redis.set(key, state.to_json())


async def deploy_finished(services: Services, environment: str, version: str,
                          release_version: str, previous_version: str,
                          rollback: bool = False) -> None:
    """A deploy succeeded: a failed-deploy incident resolves; in the last environment, the
    close watch of the new version starts (and that of the version it replaced ends)."""
    store, redis = services.store, services.redis
    now = store.clock()
    key = store.keys.check_state(environment, DEPLOY_CHECK)
    state = CheckState.from_json(await redis.get(key))
    if state.incident is not None:
        incident, state.incident = state.incident, None
        incident.resolved_at = now
        await tell(services, "resolve", incident, version, now)
        await redis.set(key, state.to_json())
    env = services.config.environment(environment)
    if environment != services.config.last_environment.name or not env.checks:
        return
    raw = await redis.get(store.keys.monitor_window(environment))
    if raw:
        await close_window(services, environment, Window(**json.loads(raw)),
                           rolled_back=rollback)
    cfg = services.config.monitoring
    window = Window(version=version, previous=previous_version, release=release_version,
                    started=now, ends=now + cfg.window_seconds)
    # Its checks run at once (their last result is older than the window), then every
    # window interval.
    await redis.set(store.keys.monitor_window(environment), window.to_json())


async def close_window(services: Services, environment: str, window: Window,
                       rolled_back: bool) -> None:
    store, redis = services.store, services.redis
    if not await redis.delete(store.keys.monitor_window(environment)):
        return  # someone else closed it
    env = services.config.environment(environment)
    cfg = services.config.monitoring
    during, before = [], []
    async with redis.pipeline(transaction=False) as pipe:
        for check in env.checks:
            pipe.lrange(store.keys.check_results(environment, check.name), 0, cfg.history - 1)
        histories = await pipe.execute()
    for raws in histories:
        for result in map(Result.from_json, raws):
            if result.at >= window.started and result.version == window.version:
                during.append(result)
            elif window.previous and result.version == window.previous:
                before.append(result)
    during.sort(key=lambda r: r.at)
    summary = summarize(environment, window.version, window.previous, during, before,
                        rolled_back, cfg)
    minutes = round((min(store.clock(), window.ends) - window.started) / 60, 1)
    blocks = texts.window_summary(summary, minutes)
    text = f"{environment} after {window.version}: {summary.verdict}"
    # Audited before it is posted: what people see is always on the trail.
    await store.audit(BOT, "monitor.window", environment=environment, release=window.release,
                      outcome=summary.verdict,
                      reason=f"{summary.checks_run} checks, {summary.failures} failed")
    release = await store.get_release(window.release) if window.release else None
    if release is not None and release.channel and release.message_ts:
        await services.notifier.post(release.channel, blocks, text, thread_ts=release.message_ts)
    else:
        await services.notifier.post(services.config.slack.channel, blocks, text)


async def open_incidents(services: Services, environment: str) -> list[Incident]:
    """The incidents open in `environment` now, its failed deploy's included."""
    keys = services.store.keys
    names = [c.name for c in services.config.environment(environment).checks] + [DEPLOY_CHECK]
    raws = await services.redis.mget([keys.check_state(environment, n) for n in names])
    states = [CheckState.from_json(raw) for raw in raws if raw]
    return [state.incident for state in states if state.incident is not None]


# --- /release health -----------------------------------------------------------------------


async def health_rows(services: Services, environment: str | None = None) -> list[dict[str, Any]]:
    store, redis = services.store, services.redis
    pairs = [(e.name, c.name) for e in services.config.environments for c in e.checks
             if environment is None or e.name == environment]
    pairs += [(e.name, DEPLOY_CHECK) for e in services.config.environments
              if environment is None or e.name == environment]
    async with redis.pipeline(transaction=False) as pipe:
        for env, check in pairs:
            pipe.get(store.keys.check_state(env, check))
            pipe.lrange(store.keys.check_results(env, check), 0, 99)
        raw = await pipe.execute()
    rows = []
    for i, (env, check) in enumerate(pairs):
        history = [Result.from_json(r) for r in raw[2 * i + 1]]
        state = CheckState.from_json(raw[2 * i], history, services.config.monitoring)
        if check == DEPLOY_CHECK and state.incident is None:
            continue  # shown only while a failed deploy is open
        latencies = [r.ms for r in history if r.ok]
        rows.append({"environment": env, "check": check, "last": state.last,
                     "incident": state.incident, "failing": state.failing,
                     "last_failure": state.last_failure, "samples": len(latencies),
                     "p50": percentile(latencies, 50), "p95": percentile(latencies, 95)})
    return rows


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
