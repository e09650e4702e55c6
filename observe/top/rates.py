"""Rates from counter deltas, percentiles from histogram bucket deltas,
as Prometheus' rate() and histogram_quantile() compute them."""

from __future__ import annotations

import math

Buckets = list[tuple[float, float]]   # cumulative (le, count), le ascending, last +Inf


def counter_delta(prev: float | None, cur: float) -> float:
    """Increase of a counter; a counter that went down was reset (a camera
    recreated), so everything it counts now is new (as Prometheus' rate)."""
    if prev is None:
        return 0.0
    return cur - prev if cur >= prev else cur


def rate(prev: float | None, cur: float, dt: float) -> float | None:
    if prev is None or dt <= 0:
        return None
    return counter_delta(prev, cur) / dt


def bucket_delta(prev: Buckets | None, cur: Buckets) -> Buckets:
    """Cumulative buckets observed between two readings. A reset (any bucket
    or the total going down) or a changed bucket layout counts from zero."""
    if not prev:
        return list(cur)
    before = dict(prev)
    if [le for le, _ in prev] != [le for le, _ in cur] or any(n < before[le] for le, n in cur):
        return list(cur)
    return [(le, n - before[le]) for le, n in cur]


def quantile(q: float, buckets: Buckets) -> float | None:
    """histogram_quantile(): linear interpolation inside the bucket that
    holds the q-quantile; the first bucket starts at 0; a quantile in the
    +Inf bucket is the highest finite bound. None when nothing was seen."""
    if not buckets:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if math.isinf(le):
                return lower
            if n == below:
                return le
            return lower + (le - lower) * (rank - below) / (n - below)
        lower, below = le, n
    return lower


def per_bucket(buckets: Buckets) -> Buckets:
    """Cumulative -> count per bucket."""
    out, below = [], 0.0
    for le, n in buckets:
        out.append((le, n - below))
        below = n
    return out
