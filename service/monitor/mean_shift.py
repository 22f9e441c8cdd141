"""Per-dimension evidence: how far a window's mean moved from the reference mean.

The shift of dimension j is |mean of the window's j - mean of the reference's j| divided by
the reference's standard deviation of j, floored: a dimension that is constant in the
reference (a border pixel that is always 0, a flag never set) has no spread, and dividing
by it gave shifts like 1.4e13. The floor is SPREAD_FLOOR times the median standard
deviation of the reference's non-constant dimensions (times 1.0 when every dimension is
constant), so such a dimension reports its shift in units of a typical dimension's spread
instead: finite, comparable, and still at the top when it moved.

This is what incidents show as the top mean shifts: the dimensions to look at first, not a
test statistic (the detectors' tests are multivariate).
"""

from __future__ import annotations

import numpy as np

SPREAD_FLOOR = 0.01


def floored_spread(reference: np.ndarray) -> np.ndarray:
    """Per-dimension standard deviation of (n, d) rows, at least SPREAD_FLOOR of the median."""
    spread = np.asarray(reference, dtype=np.float64).std(axis=0)
    varying = spread[spread > 0]
    typical = float(np.median(varying)) if varying.size else 1.0
    return np.asarray(np.maximum(spread, SPREAD_FLOOR * typical))


class MeanShifts:
    """The reference's mean and floored spread; ranks a window's dimensions by mean shift."""

    def __init__(self, reference: np.ndarray) -> None:
        rows = np.asarray(reference, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[0] == 0:
            raise ValueError(f"reference rows must be (n, d) with n > 0, got {rows.shape}")
        self.mean = rows.mean(axis=0)
        self.spread = floored_spread(rows)

    def shifts(self, window: np.ndarray) -> np.ndarray:
        """|window mean - reference mean| / floored reference spread, per dimension."""
        rows = np.asarray(window, dtype=np.float64)
        return np.asarray(np.abs(rows.mean(axis=0) - self.mean) / self.spread)

    def top(self, window: np.ndarray, count: int) -> tuple[tuple[int, float], ...]:
        """The `count` largest shifts as (dimension, shift), largest first; () for no rows."""
        if len(window) == 0:
            return ()
        shift = self.shifts(window)
        order = np.argsort(-shift, kind="stable")[:count]
        return tuple((int(i), round(float(shift[i]), 6)) for i in order)
