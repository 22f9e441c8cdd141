"""Thresholds that give an online detector a target Expected Run Time (ERT) with no drift.

Input: statistics of `B` simulated no-drift streams over `T` steps. A constant hazard of
1/ERT per step (the probability of a false alarm at a step, given none before) makes the
run length geometric with mean ERT. For the first `n_ramp` steps, while the test windows
still fill or overlap the initial window, the threshold of step t is the (1 - 1/ERT)
quantile of step t's statistic among the streams that have not yet crossed (as
alibi-detect does). After that the statistic is stationary, so one threshold serves every
later step; it is chosen so that the hazard pooled over the remaining simulated steps
equals 1/ERT, which uses every simulated step instead of one quantile's worth of streams.
"""

from __future__ import annotations

import numpy as np

from detectors.base import FloatArray


def ert_thresholds(stats: FloatArray, ert: float, n_ramp: int) -> FloatArray:
    """Thresholds for steps 1..n_ramp followed by the steady-state threshold.

    `stats` is (B, T) with T > n_ramp; -inf marks steps where no test can run yet.
    Returns an array of n_ramp + 1 thresholds (+inf where no test runs).
    """
    b, t_total = stats.shape
    if t_total <= n_ramp:
        raise ValueError(f"need more simulated steps ({t_total}) than ramp steps ({n_ramp})")
    level = 1.0 - 1.0 / ert
    thresholds = np.full(n_ramp + 1, np.inf)
    alive = np.ones(b, dtype=bool)
    for t in range(n_ramp):
        column = stats[alive, t]
        finite = column[np.isfinite(column)]
        if finite.size == 0:
            continue
        thresholds[t] = float(np.quantile(finite, level))
        alive &= ~(stats[:, t] > thresholds[t])
    thresholds[n_ramp] = steady_threshold(stats[alive, n_ramp:], ert)
    return thresholds


def steady_threshold(stats: FloatArray, ert: float) -> float:
    """Smallest threshold whose false-alarm hazard, pooled over all steps, is <= 1/ert."""
    if stats.shape[0] == 0:
        raise ValueError("no simulated stream survived the ramp; raise n_bootstraps or ert")
    target = 1.0 / ert
    candidates = np.unique(stats[np.isfinite(stats)])
    if candidates.size == 0:
        return float("inf")

    def hazard(u: float) -> float:
        exceed = stats > u
        crossed = exceed.any(axis=1)
        first = np.argmax(exceed, axis=1)
        exposure = np.where(crossed, first + 1, stats.shape[1]).sum()
        return float(crossed.sum()) / float(exposure)

    lo, hi = 0, candidates.size - 1
    if hazard(float(candidates[hi])) > target:  # pragma: no cover - needs a degenerate input
        return float(candidates[hi])
    while lo < hi:
        mid = (lo + hi) // 2
        if hazard(float(candidates[mid])) <= target:
            hi = mid
        else:
            lo = mid + 1
    return float(candidates[lo])
