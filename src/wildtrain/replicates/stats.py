"""Statistics over seed replicates: per-metric summaries and the paired difference of two param sets.

The paired interval is a Student t-interval over per-seed differences (seed k of A minus seed k of B): it
measures how much the training trajectory moves a metric, not the test-sample noise (the bootstrap does that)."""

from __future__ import annotations

import math
from typing import Sequence

from scipy import stats as scipy_stats

LEVEL = 0.95


def summary(values: Sequence[float]) -> dict:
    """n, mean, sample sd (ddof 1; None for one value), min, max."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "min": None, "max": None}
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"n": n, "mean": mean, "sd": sd, "min": min(values), "max": max(values)}


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float] | None:
    """Two-sided t-interval of the mean (n - 1 degrees of freedom); None below 2 values."""
    s = summary(values)
    if s["n"] < 2:
        return None
    half = scipy_stats.t.ppf(0.5 + level / 2, s["n"] - 1) * s["sd"] / math.sqrt(s["n"])
    return s["mean"] - half, s["mean"] + half


def verdict(interval: tuple[float, float] | None) -> str:
    """'within noise' when the interval covers 0, 'beyond noise' when it does not."""
    if interval is None:
        return "n/a (needs 2+ paired seeds)"
    low, high = interval
    return "within noise" if low <= 0.0 <= high else "beyond noise"


def paired(a: dict[int, float], b: dict[int, float], level: float = LEVEL) -> dict:
    """A minus B over the seeds both have: mean difference, its sd, t-interval and verdict."""
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    interval = t_interval(diffs, level)
    s = summary(diffs)
    return {"seeds": seeds, "diffs": diffs, "n": s["n"], "mean": s["mean"], "sd": s["sd"],
            "ci95": list(interval) if interval else None, "verdict": verdict(interval)}
