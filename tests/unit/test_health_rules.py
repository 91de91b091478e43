"""The health rules on their own: conditions, latency and error rate, incidents, summaries."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from bot.blocks.health import health_report, incident_message, window_summary
from bot.devtools.slack_stand_in import validate_blocks
from bot.domain.config import CheckConfig, ConfigError, MonitoringConfig, parse_config
from bot.domain.health.checks import (
    Observation,
    Recent,
    Result,
    assess,
    baseline_of,
    conditions,
    error_rate,
)
from bot.domain.health.incidents import (
    DEPLOY_CHECK,
    OUTAGE_CHECK,
    CheckNews,
    CheckState,
    Incident,
    deploy_failed,
    deploy_problem,
    deploy_succeeded,
    judge,
    outage_step,
    step,
)
from bot.domain.health.summaries import health_row, percentile, sparkline, summarize
from bot.domain.health.windows import (
    Window,
    is_due,
    open_window,
    summarize_window,
    window_results,
)
from tests.helpers.config import config_text, environment

CFG = MonitoringConfig(
    failures_to_alert=3,
    successes_to_resolve=2,
    reminder_seconds=60,
    error_rate_samples=10,
    latency_samples=3,
    degradation_floor_ms=50,
)
HEALTH = CheckConfig(
    name="health",
    url="http://x/health",
    status=200,
    max_response_ms=3000,
    json=(("status", "ok"), ("db.ok", True)),
    body_contains="ok",
    version_field="build.version",
)


def answer(body: dict | str, status: int = 200, ms: float = 5.0) -> Observation:
    return Observation(
        elapsed_ms=ms, status=status, body=body if isinstance(body, str) else json.dumps(body)
    )


GOOD = {"status": "ok", "db": {"ok": True}, "build": {"version": "v0.15.0"}}


def test_a_good_answer_meets_every_condition():
    assert conditions(HEALTH, answer(GOOD), "0.15.0") == []
    # Nothing deployed by the bot yet: the version is not compared.
    assert conditions(HEALTH, answer({**GOOD, "build": {"version": "x"}}), "") == []


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        (Observation(elapsed_ms=5000, error="no answer within 5 s"), "down: no answer within 5 s"),
        (answer(GOOD, status=503), "HTTP 503"),
        (answer(GOOD, status=404), "HTTP 404, expected 200"),
        (answer(GOOD, ms=3500), "answered in 3,500 ms, limit 3,000 ms"),
        (answer({**GOOD, "status": "degraded"}), "`status` is 'degraded', expected 'ok'"),
        (answer({**GOOD, "db": {}}), "`db.ok` is missing, expected True"),
        (answer("<html>maintenance</html>"), "the answer is not JSON"),
        (
            answer({**GOOD, "build": {"version": "0.14.1"}}),
            "reports version `0.14.1`, but `0.15.0` was deployed here",
        ),
    ],
)
def test_each_failing_condition_is_named(seen: Observation, expected: str):
    assert expected in conditions(HEALTH, seen, "0.15.0")


def result(ok: bool = True, ms: float = 10.0, version: str = "1", at: float = 0.0) -> Result:
    return Result(
        at=at,
        ok=ok,
        ms=ms,
        status=200 if ok else 500,
        problem="" if ok else "HTTP 500",
        version=version,
    )


def test_error_rate_waits_for_a_full_window_and_leaves_out_outages():
    assert error_rate("1" + "0" * 8, CFG) is None  # 9 results: not yet a window
    assert error_rate("1" + "0" * 9, CFG) == pytest.approx(10.0)
    # Three in a row is an outage (alerted as such): after the recovery it is not counted.
    assert error_rate("00111" + "0" * 5, CFG) == 0.0
    assert error_rate("0101010000", CFG) == pytest.approx(30.0)


def test_latency_is_judged_against_the_baseline_of_the_previous_version():
    good = [(200.0, "1")] * 5
    assert baseline_of(good, "2", CFG) == 200
    assert baseline_of(good[:2], "2", CFG) is None  # too few to compare with
    assert baseline_of([(900.0, "2"), *good], "2", CFG) == 200  # not the new version's own
    recent = Recent(version="2", baseline_ms=200.0, latencies=[270.0, 260.0, 280.0])
    assert assess([], recent, CFG).severity == "warning"  # 35% slower
    recent.latencies = [420.0, 400.0, 410.0]
    finding = assess([], recent, CFG)
    assert finding.severity == "critical" and "105% slower" in finding.summary
    recent.latencies = [2.0, 2.0, 2.0]
    recent.baseline_ms = 1.0  # 100% slower, but 1 ms is noise, under the floor
    assert assess([], recent, CFG).severity == "ok"


def fresh(now: float = 0.0) -> Callable[[], Incident]:
    return lambda: Incident(
        id="i1",
        environment="production",
        check=OUTAGE_CHECK,
        severity="",
        opened_at=now,
        problem="",
    )


def test_one_blip_is_quiet_and_a_check_alerts_after_three_failures_until_two_passes():
    state, bad, good = CheckState(), assess(["HTTP 500"], Recent(), CFG), assess([], Recent(), CFG)
    assert step(state, "health", bad, CFG) is None
    assert step(state, "health", good, CFG) is None
    assert [step(state, "health", bad, CFG) for _ in range(2)] == [None, None]
    assert step(state, "health", bad, CFG) == CheckNews("health", "alert", "critical", "HTTP 500")
    assert state.alerting == "critical"
    assert step(state, "health", bad, CFG) == CheckNews("health", "alert", "critical", "HTTP 500")
    assert step(state, "health", good, CFG) is None  # one success does not recover it
    assert step(state, "health", good, CFG) == CheckNews("health", "recover")
    assert state.alerting == "" and step(state, "health", good, CFG) is None


def alert(check: str, problem: str = "HTTP 500", severity: str = "critical") -> CheckNews:
    return CheckNews(check, "alert", severity, problem)


def test_an_outage_of_many_checks_is_one_incident_that_pages_once_and_reminds_per_interval():
    state = CheckState()
    [(what, incident)] = outage_step(state, [alert("a"), alert("b", "timeout")], 5, CFG, fresh())
    assert what == "open" and state.incident is incident and incident.critical
    assert list(incident.failing) == ["a", "b"] and incident.failing_count == 2
    assert incident.problem == "2 checks failing: a (HTTP 500); b (timeout)"
    assert incident.subject == "2 checks" and incident.opened_at == incident.reminded_at == 5
    # Still failing, nothing new: no message. A third check joins: redrawn, nobody paged.
    assert outage_step(state, [alert("a"), alert("b", "timeout")], 6, CFG, fresh()) == []
    assert outage_step(state, [alert("c")], 7, CFG, fresh()) == [("change", incident)]
    assert incident.failing_count == 3
    assert incident.failures == 5 and incident.failing["a"].failures == 2
    # One reminder per interval for the whole outage, however many checks fail.
    three = [alert("a"), alert("b"), alert("c")]
    assert outage_step(state, three, 65, CFG, fresh()) == [("remind", incident)]
    assert outage_step(state, three, 66, CFG, fresh()) == []
    # A check recovering when a reminder is due: both are said (and go on the trail).
    said = outage_step(state, [CheckNews("a", "recover")], 130, CFG, fresh())
    assert said == [("change", incident), ("remind", incident)]
    assert incident.recovered == ["a"] and incident.failing_count == 2
    # Acknowledged since the last tick: no more reminders.
    assert outage_step(state, [alert("b")], 300, CFG, fresh(), ("U0ONCALL", 150.0)) == []
    assert (incident.acknowledged_by, incident.acknowledged_at) == ("U0ONCALL", 150.0)
    # The incident ends with its last check.
    [(what, resolved)] = outage_step(
        state, [CheckNews("b", "recover"), CheckNews("c", "recover")], 320, CFG, fresh()
    )
    assert what == "resolve" and resolved is incident and state.incident is None
    assert resolved.checks == (3, ["a", "b", "c"]) and resolved.duration(999) == 315
    assert outage_step(state, [CheckNews("a", "recover")], 330, CFG, fresh()) == []


def test_an_outage_escalates_when_any_of_its_checks_turns_critical():
    state = CheckState()
    slow = alert("health", "40% slower", "warning")
    [(what, incident)] = outage_step(state, [slow], 1, CFG, fresh())
    assert what == "open" and incident.severity == "warning" and incident.subject == "health"
    said = outage_step(state, [slow, alert("api", "HTTP 502")], 2, CFG, fresh())
    assert said == [("change", incident), ("escalate", incident)]
    assert incident.severity == "critical" and incident.reminded_at == 2
    assert incident.problem.startswith("2 checks failing: api (HTTP 502)")  # the worst first
    assert CheckState.from_json(state.to_json()) == state  # survives a restart


def test_a_news_copy_of_a_mass_outage_carries_the_worst_few_and_whole_counts():
    state = CheckState()
    items = [alert(f"svc-{n:04d}", severity="warning") for n in range(500)]
    items.append(alert("svc-9999"))
    [(_, incident)] = outage_step(state, items, 1, CFG, fresh())
    copy = incident.news_copy()
    assert incident.failing_count == copy.failing_count == 501 and len(copy.failing) == 10
    assert next(iter(copy.failing)) == "svc-9999"  # critical before warnings
    assert copy.subject == "501 checks" and len(incident.failing) == 501


def test_a_check_state_stored_with_its_own_incident_reads_as_alerting():
    """What a bot from before one-incident-per-outage stored: the check joins the outage."""
    old = (
        b'{"failing": 4, "passing": 0, "incident": {"id": "x", "environment": "production",'
        b' "check": "health", "severity": "critical", "opened_at": 1.0, "problem": "HTTP 500"},'
        b' "last_failure": null, "version": "", "baseline_ms": null}'
    )
    state = CheckState.from_json(old)
    assert state.alerting == "critical" and state.incident is None and state.failing == 4


def test_incident_messages_mention_oncall_only_when_critical():
    incident = Incident(
        id="i1",
        environment="production",
        check="health",
        severity="warning",
        opened_at=100,
        problem="slow",
    )
    warning = incident_message(incident, ("U0ONCALL", "S0SRE"), "0.15.0", now=200)
    text = json.dumps(warning)
    assert "U0ONCALL" not in text and "rollback_start" not in text and "incident_ack" in text
    incident.severity = "critical"
    critical = json.dumps(incident_message(incident, ("U0ONCALL", "S0SRE"), "0.15.0", 200))
    assert "<@U0ONCALL>" in critical and "<!subteam^S0SRE>" in critical
    assert "rollback_start" in critical and "incident_ack" in critical
    incident.resolved_at = 400
    resolved = incident_message(incident, ("U0ONCALL",), "0.15.0", 500)
    assert "resolved* after 5m" in json.dumps(resolved) and "actions" not in json.dumps(resolved)
    for blocks in (warning, json.loads(critical), resolved):
        assert validate_blocks(blocks, where="test") == []


def test_percentiles_sparkline_and_window_verdict():
    assert percentile([], 50) is None
    assert percentile([5, 1, 3, 2, 4], 50) == 3 and percentile(list(range(1, 101)), 95) == 95
    assert sparkline([1, 1, 1]) == "▁▁▁"
    line = sparkline([float(i) for i in range(48)], width=24)
    assert len(line) == 24 and line[0] == "▁" and line[-1] == "█"
    before = [result(ms=100, version="1") for _ in range(10)]
    healthy = summarize(
        "production", "2", "1", [result(ms=110, version="2")] * 20, before, False, CFG
    )
    assert healthy.verdict == "healthy" and healthy.p50_ms == 110 and healthy.previous_p50_ms == 100
    slow = summarize("production", "2", "1", [result(ms=400, version="2")] * 20, before, False, CFG)
    assert slow.verdict == "degraded"
    failing = summarize(
        "production",
        "2",
        "1",
        [result(ok=False, version="2")] + [result(version="2")] * 9,
        before,
        False,
        CFG,
    )
    assert failing.verdict == "degraded" and failing.error_rate == pytest.approx(10.0)
    assert summarize("production", "2", "1", [], before, True, CFG).verdict == "rolled back"
    blocks = window_summary(healthy, 60)
    assert validate_blocks(blocks, where="test") == []
    assert "*healthy*" in json.dumps(blocks, ensure_ascii=False)


def test_the_health_report_is_valid_block_kit_even_with_many_checks():
    rows = [
        {
            "environment": "production",
            "check": f"check-{i}",
            "last": result(ok=i % 3 != 0),
            "incident": None,
            "failing": 1,
            "last_failure": result(ok=False),
            "samples": 10,
            "p50": 12.0,
            "p95": 30.0,
        }
        for i in range(80)
    ]
    blocks = health_report(rows, now=100)
    assert validate_blocks(blocks, where="test") == [] and len(blocks) <= 50
    assert "No health checks" in json.dumps(health_report([], 0))


# The least config: one environment, with a URL that check paths join.
BASE = config_text(environments=[environment("production", url="https://example.com")])


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('[[environments.checks]]\nname = "health"\n', "environments[0].checks[0]"),
        (
            '[[environments.checks]]\nname = "h"\npath = "health"\n',
            "environments[0].checks[0].path",
        ),
        ('[[environments.checks]]\nname = "h"\nurl = "ftp://x"\n', "environments[0].checks[0].url"),
        (
            '[[environments.checks]]\nname = "h"\npath = "/h"\nstatus = 42\n',
            "environments[0].checks[0].status",
        ),
        (
            '[[environments.checks]]\nname = "h"\npath = "/h"\njson = { db = { ok = true } }\n',
            "environments[0].checks[0].json.db",
        ),
        (
            '[[environments.checks]]\nname = "h"\npath = "/h"\ninterval = 5\n',
            "environments[0].checks[0].interval",
        ),
        (
            '[[environments.checks]]\nname = "outage"\npath = "/h"\n',
            "environments[0].checks[0].name",
        ),
        (
            '[[environments.checks]]\nname = "deploy"\npath = "/h"\n',
            "environments[0].checks[0].name",
        ),
        ('[monitoring]\noncall = ["alice"]\n', "monitoring.oncall[0]"),
        ("[monitoring]\nfailures_to_alert = 0\n", "monitoring.failures_to_alert"),
        (
            "[monitoring]\nwarning_degradation_percent = 60\n",
            "monitoring.warning_degradation_percent",
        ),
        ("[monitoring]\nreminder = 5\n", "monitoring.reminder"),
    ],
)
def test_monitoring_config_mistakes_name_the_key(extra: str, key: str):
    import tomllib

    with pytest.raises(ConfigError) as caught:
        parse_config(tomllib.loads(BASE + extra))
    assert caught.value.key == key, caught.value


def test_a_check_path_joins_the_environment_url():
    import tomllib

    config = parse_config(
        tomllib.loads(
            BASE + '[[environments.checks]]\nname = "health"\n'
            'path = "/health"\njson = { "db.ok" = true }\n'
        )
    )
    check = config.environment("production").checks[0]
    assert check.url == "https://example.com/health" and check.json == (("db.ok", True),)


# --- a check's run, deploys, windows and the health report's lines ---------------------------


def test_a_result_says_what_was_seen_and_what_was_wrong():
    seen = Observation(elapsed_ms=12.3456, status=503)
    bad = Result.of(seen, ["HTTP 503", "slow"], at=7.0, version="1.2.0")
    assert bad == Result(
        at=7.0, ok=False, ms=12.35, status=503, problem="HTTP 503; slow", version="1.2.0"
    )
    assert Result.of(seen, [], 8.0, "").ok and Result.of(seen, [], 8.0, "").problem == ""


def test_a_judged_result_joins_the_recent_past():
    state = CheckState()
    for t in (1, 2):
        assert judge(state, "health", result(ok=False, at=t), ["HTTP 500"], CFG) is None
    news = judge(state, "health", result(ok=False, at=3), ["HTTP 500"], CFG)
    assert news == CheckNews("health", "alert", "critical", "HTTP 500")
    assert state.recent.outcomes == "111"
    assert state.last == state.last_failure == result(ok=False, at=3)
    good = result(at=101)
    assert judge(state, "health", good, [], CFG) is None
    assert state.last == good and state.last_failure == result(ok=False, at=3)
    assert judge(state, "health", result(at=102), [], CFG) == CheckNews("health", "recover")


def test_a_failed_deploy_opens_a_critical_incident_at_once_and_a_success_resolves_it():
    state = CheckState()
    problem = deploy_problem("v1.0.0", "exit 1" + "x" * 600)
    assert problem.startswith("the deploy of `v1.0.0` failed: exit 1") and len(problem) == 500
    what, incident = deploy_failed(state, "staging", problem, 10.0, "1.0.0-rc.1", lambda: "d1")
    assert what == "open" and state.incident is incident
    assert (incident.id, incident.environment, incident.check) == ("d1", "staging", DEPLOY_CHECK)
    assert incident.critical and incident.opened_at == incident.reminded_at == 10.0
    assert incident.version == "1.0.0-rc.1" and incident.failures == 1
    what, again = deploy_failed(
        state,
        "staging",
        "the deploy of `v1.0.1` failed: boom",
        20.0,
        "1.0.1-rc.1",
        lambda: "unused",
    )
    assert what == "remind" and again is incident and incident.failures == 2
    assert "v1.0.1" in incident.problem and incident.reminded_at == 10.0
    resolved = deploy_succeeded(state, 30.0)
    assert resolved is incident and resolved.resolved_at == 30.0 and state.incident is None
    assert deploy_succeeded(state, 40.0) is None


def test_a_check_is_due_at_its_interval_and_at_once_after_a_deploy_then_more_often():
    window = open_window(
        "2",
        "1",
        "2.0.0",
        now=100.0,
        cfg=MonitoringConfig(window_seconds=600, window_interval_seconds=10),
    )
    assert (window.started, window.ends) == (100.0, 700.0)
    cfg = MonitoringConfig(window_interval_seconds=10)
    assert is_due(None, 60, None, 0.0, cfg)  # never run
    assert not is_due(result(at=50), 60, None, 100.0, cfg)
    assert is_due(result(at=40), 60, None, 100.0, cfg)
    assert is_due(result(at=99), 60, window, 99.5, cfg)  # run before the deploy: at once
    assert not is_due(result(at=101), 60, window, 105.0, cfg)
    assert is_due(result(at=101), 60, window, 111.0, cfg)  # the window's interval
    assert not window.over(699.9) and window.over(700.0)
    assert window.minutes_watched(400.0) == 5.0 and window.minutes_watched(9999.0) == 10.0


def test_a_window_is_stored_as_it_always_was_plus_whether_it_is_summed_up():
    window = Window(version="2", previous="1", release="2.0.0", started=1.5, ends=3601.5)
    before = '{"version": "2", "previous": "1", "release": "2.0.0", "started": 1.5, "ends": 3601.5'
    assert window.to_json() == before + ', "aggregated": false}'
    assert Window.from_json(window.to_json().encode()) == window
    # A window opened by the version before aggregates is read back as one to sum up from
    # its checks' kept results.
    assert Window.from_json(before + "}") == window


def test_a_window_compares_its_own_results_with_the_previous_versions():
    window = Window(version="2", previous="1", release="", started=100.0, ends=200.0)
    one = [
        result(ms=30, version="2", at=150),
        result(ms=10, version="1", at=90),
        result(ms=99, version="0", at=80),
    ]
    two = [result(ms=20, version="2", at=120), result(ms=5, version="2", at=99)]
    during, before = window_results(window, [one, two])
    assert [r.at for r in during] == [120, 150]  # oldest first, across the checks
    assert [r.ms for r in before] == [10]
    first = Window(version="2", previous="", release="", started=100.0, ends=200.0)
    assert window_results(first, [one, two])[1] == []  # nothing to compare with
    summary = summarize_window("production", window, [one, two], False, CFG)
    assert summary.checks_run == 2 and summary.previous_p50_ms == 10
    assert summary.verdict == "healthy"
    assert summarize_window("production", window, [], True, CFG).verdict == "rolled back"


def test_a_health_line_shows_latencies_of_good_answers_and_the_deploy_check_only_when_failed():
    history = [result(ms=10), result(ok=False, ms=900), result(ms=30), result(ms=20)]
    state = CheckState.from_json(None, history, CFG)
    row = health_row("production", "health", state, history)
    assert row is not None and row["samples"] == 3 and row["p50"] == 20 and row["p95"] == 30
    assert row["last"] == history[0] and row["incident"] is None
    assert health_row("production", DEPLOY_CHECK, CheckState(), []) is None
    failed = CheckState()
    deploy_failed(failed, "production", "boom", 1.0, "", lambda: "d1")
    shown = health_row("production", DEPLOY_CHECK, failed, [])
    assert shown is not None and shown["incident"] is failed.incident and shown["p50"] is None
    assert validate_blocks(health_report([row, shown], now=5), where="test") == []


def test_a_report_of_thousands_of_checks_shows_the_first_and_counts_the_rest():
    rows = [
        {
            "environment": "production",
            "check": f"check-{i}",
            "last": None if i % 10 == 9 else result(ok=i % 100 != 0),
            "incident": None,
            "failing": 0,
            "last_failure": None,
            "samples": 0,
            "p50": None,
            "p95": None,
        }
        for i in range(5_000)
    ]
    blocks = health_report(rows, now=100)
    assert validate_blocks(blocks, where="test") == [] and len(blocks) <= 50
    text = json.dumps(blocks)
    assert "check-0*" not in text and "check-0 " in text and "check-4999" not in text
    rest = rows[40:]
    healthy = sum(1 for r in rest if r["last"] is not None and r["last"].ok)
    unrun = sum(1 for r in rest if r["last"] is None)
    assert f"and {len(rest)} more checks ({healthy} healthy, {unrun} not run yet, " in text


def test_a_history_is_read_in_one_parse_old_and_damaged_entries_included():
    new = Result(at=2.0, ok=True, ms=9.5, status=200, problem="", version="2")
    old = Result(at=1.0, ok=False, ms=30.0, status=503, problem="HTTP 503", version="1")
    old_raw = json.dumps(old.to_dict()).encode()  # as results were kept before
    assert Result.decode_many([new.to_json(), old_raw]) == [new, old]
    assert Result.decode_many([new.to_json(), b"{broken", b"[1, 2]", old_raw]) == [new, old]
    assert Result.decode_many([]) == []
