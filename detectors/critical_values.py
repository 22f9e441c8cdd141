"""Critical values of a test statistic: the largest value its decision rule does not reject.

A windowed test decides on p-values; to draw its statistic against a threshold on the same
scale, the threshold is the largest statistic whose p-value the rule still accepts, so that
``score > threshold`` exactly when the rule rejects. Searching with the detector's own
p-value function and its own comparison (rather than inverting a distribution with a
separate routine) keeps that equivalence free of rounding disagreements. Both searches
assume the rule is monotone: once a statistic is rejected, every larger one is.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

#: Candidates tried per round of the integer search (one vectorised p-value call each).
_FANOUT = 32
#: Doublings of the upper bracket before a float search gives up (the rule never rejects).
_MAX_DOUBLINGS = 2100


def largest_accepted_int(rejects: Callable[[IntArray], BoolArray], hi: int) -> int:
    """Largest h in [0, hi] that `rejects` accepts; h = 0 must be accepted.

    Each round evaluates up to 32 candidates in one call, so a p-value function that pays
    per call (an exact null distribution computed on demand) is called O(log_32 hi) times.
    """
    if not bool(rejects(np.array([hi], dtype=np.int64))[0]):
        return hi
    lo = 0  # accepted; hi rejected
    while hi - lo > 1:
        points = np.unique(np.linspace(lo, hi, _FANOUT + 2).astype(np.int64)[1:-1])
        points = points[(points > lo) & (points < hi)]
        if points.size == 0:  # pragma: no cover - hi - lo > 1 always leaves a point
            break
        rejected = np.asarray(rejects(points), dtype=bool)
        accepted = points[~rejected]
        if accepted.size:
            lo = int(accepted.max())
        above = points[rejected & (points > lo)]
        if above.size:
            hi = int(above.min())
    return lo


def largest_accepted_float(rejects: Callable[[float], bool], lo: float, hi: float) -> float:
    """Largest float t >= lo that `rejects` accepts (to the last bit); `lo` must be accepted.

    `hi` is a first guess at a rejected value; it is doubled away from `lo` until it is
    rejected. Returns inf when no finite value is rejected.
    """
    if rejects(lo):
        raise ValueError(f"the lower end {lo!r} must be accepted")
    hi = max(hi, lo + 1.0)
    for _ in range(_MAX_DOUBLINGS):
        if rejects(hi):
            break
        hi = lo + 2.0 * (hi - lo)
        if not math.isfinite(hi):
            return math.inf
    else:  # pragma: no cover - doubling reaches inf long before
        return math.inf
    while True:
        mid = lo + (hi - lo) / 2.0
        if mid <= lo or mid >= hi:
            return lo
        if rejects(mid):
            hi = mid
        else:
            lo = mid
