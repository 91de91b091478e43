"""The latency sketch, and monitoring windows summed up as their results come, against exact
computation over the same random results."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.domain.config import MonitoringConfig
from bot.domain.health.checks import Result
from bot.domain.health.sketch import RELATIVE_ACCURACY, LatencySketch
from bot.domain.health.summaries import percentile
from bot.domain.health.windows import (
    Aggregate,
    Delta,
    Window,
    fold,
    summarize_aggregates,
    summarize_window,
    version_aggregate,
    window_aggregate,
)

latencies = st.lists(st.floats(0.01, 120_000, allow_nan=False), min_size=1, max_size=400)
percents = st.sampled_from([0, 1, 25, 50, 90, 95, 99, 100])


def close(estimate: float | None, exact: float | None) -> bool:
    assert estimate is not None and exact is not None
    return abs(estimate - exact) <= RELATIVE_ACCURACY * exact + 1e-9


@given(latencies, percents)
def test_a_percentile_is_within_the_stated_error_of_the_exact_one(values, p):
    assert close(LatencySketch.of(values).percentile(p), percentile(values, p))


@given(latencies, latencies, percents)
def test_sketches_add_up_like_their_results(first, second, p):
    merged = LatencySketch.of(first)
    merged.merge(LatencySketch.of(second))
    assert merged.count == len(first) + len(second)
    assert merged.counts == LatencySketch.of(first + second).counts
    assert close(merged.percentile(p), percentile(first + second, p))


def test_an_empty_sketch_has_no_percentile():
    assert LatencySketch().percentile(50) is None
    assert LatencySketch.from_counts({3: 0}).percentile(95) is None


results = st.lists(
    st.tuples(
        st.floats(0, 3600),  # seconds into the window
        st.booleans(),
        st.floats(1, 5_000, allow_nan=False),
        st.sampled_from(["1", "2"]),  # the version before, the window's
    ),
    max_size=200,
)


@given(results)
def test_a_window_summed_up_as_it_goes_says_what_its_results_say(rows):
    cfg = MonitoringConfig()
    window = Window(
        version="2", previous="1", release="", started=1000.0, ends=4600.0, aggregated=True
    )
    kept = [
        Result(at=1000.0 + at, ok=ok, ms=ms, status=200, problem="", version=v)
        for at, ok, ms, v in rows
    ]
    deltas = fold((("production", r) for r in kept), {"production": window})
    during = aggregate_of(deltas.get(window_aggregate("production", window)))
    before = aggregate_of(deltas.get(version_aggregate("production", "1")))
    summed = summarize_aggregates("production", window, during, before, False, cfg)
    exact = summarize_window("production", window, [sorted(kept, key=lambda r: -r.at)], False, cfg)
    assert (summed.checks_run, summed.failures) == (exact.checks_run, exact.failures)
    for mine, theirs in [
        (summed.p50_ms, exact.p50_ms),
        (summed.p95_ms, exact.p95_ms),
        (summed.previous_p50_ms, exact.previous_p50_ms),
        (summed.previous_p95_ms, exact.previous_p95_ms),
    ]:
        assert (mine is None) == (theirs is None)
        if mine is not None:
            assert close(mine, theirs)
    # The verdict is the same, except where a p95 sits within the sketch's error of the
    # degradation threshold: too many failures, or no latency to compare, decide alike.
    too_many = exact.checks_run and exact.error_rate > cfg.error_rate_percent
    if too_many or exact.p95_ms is None or exact.previous_p95_ms is None:
        assert summed.verdict == exact.verdict


def aggregate_of(delta: Delta | None) -> Aggregate:
    """What Redis holds after HINCRBY of the delta's counters (and its peaks)."""
    if delta is None:
        return Aggregate()
    fields = {name: str(amount) for name, amount in delta.add.items()}
    fields.update({name: str(peak) for name, peak in delta.peaks.items()})
    return Aggregate.from_fields(fields)
