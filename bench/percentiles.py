"""Percentiles for the benchmarks (imported as ``percentiles``: bench/ is on sys.path when a
benchmark runs as ``python bench/bench_x.py``)."""

from __future__ import annotations


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
