"""Latency percentiles without keeping the latencies: counts per logarithmic bucket.

A bucket holds every latency within 1% of its value (ddsketch's logarithmic mapping), so a
percentile read from the counts is within 1% of the exact one over the same results, whatever
their number, and two sketches add up by adding their counts. That is what lets the monitor keep
an hour's results of thousands of checks as a few hundred counters in Redis (incremented there,
so replicas' ticks add up), instead of every result."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ddsketch.mapping import LogarithmicMapping

RELATIVE_ACCURACY = 0.01
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_SMALLEST_MS = 0.01  # below this (a clock's resolution) a latency counts as this


def bucket_of(ms: float) -> int:
    return int(_MAPPING.key(max(ms, _SMALLEST_MS)))


def value_of(bucket: int) -> float:
    return float(_MAPPING.value(bucket))


@dataclass
class LatencySketch:
    counts: Counter[int] = field(default_factory=Counter)

    @classmethod
    def of(cls, values: Iterable[float]) -> LatencySketch:
        sketch = cls()
        for value in values:
            sketch.add(value)
        return sketch

    @classmethod
    def from_counts(cls, counts: Mapping[int, int]) -> LatencySketch:
        return cls(Counter({k: v for k, v in counts.items() if v > 0}))

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def add(self, ms: float, times: int = 1) -> None:
        self.counts[bucket_of(ms)] += times

    def merge(self, other: LatencySketch) -> None:
        self.counts.update(other.counts)

    def percentile(self, p: float) -> float | None:
        """Nearest-rank percentile (p in 0..100), like `summaries.percentile` on the raw
        values, within RELATIVE_ACCURACY of it; None when empty."""
        total = self.count
        if not total:
            return None
        rank = max(1, math.ceil(p / 100 * total))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return value_of(bucket)
        return value_of(max(self.counts))  # not reached: the counts add up to total
