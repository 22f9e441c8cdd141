"""Combining per-dimension p-values into one: Bonferroni or Benjamini-Hochberg.

Both return one adjusted p-value, rejected when it is below `alpha`:
Bonferroni ``min(1, d * min p)``; Benjamini-Hochberg the smallest BH-adjusted p-value,
``min_i d p_(i) / i``, which is below alpha exactly when BH at level alpha rejects any
hypothesis.

For thresholds on a statistic's scale, `cut_rank` and `rejected_at_rank` restate the same
decision one p-value at a time: a column is rejected at cut rank i when
``p d / i < alpha`` (computed exactly as `combine_p_values` computes it). The cut rank is 1
for Bonferroni, and for Benjamini-Hochberg the rank of the largest rejected p-value (1 when
nothing is rejected), so the cut level is ``alpha * i / d``.

References
----------
Benjamini, Y. and Hochberg, Y. (1995). Controlling the false discovery rate. JRSS B 57(1).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from detectors.base import FloatArray

CORRECTIONS = ("bonferroni", "fdr")


def combine_p_values(p_values: FloatArray, correction: str) -> float:
    """One adjusted p-value for "any dimension drifted"."""
    d = p_values.size
    if d == 1:
        return float(p_values[0])
    if correction == "bonferroni":
        return float(min(1.0, d * float(p_values.min())))
    if correction == "fdr":
        ranked = np.sort(p_values)
        return float(min(1.0, float((ranked * d / np.arange(1, d + 1)).min())))
    raise ValueError(f"correction must be one of {list(CORRECTIONS)}, got {correction!r}")


def cut_rank(p_values: FloatArray, correction: str, alpha: float) -> int:
    """Rank i of the cut the correction applies at `alpha` (level ``alpha * i / d``).

    1 for Bonferroni; for Benjamini-Hochberg the largest i with ``p_(i) d / i < alpha``, or
    1 when there is none (nothing rejected).
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {list(CORRECTIONS)}, got {correction!r}")
    d = p_values.size
    if correction == "bonferroni" or d == 1:
        return 1
    ranked = np.sort(p_values)
    below = np.flatnonzero(ranked * d / np.arange(1, d + 1) < alpha)
    return int(below[-1]) + 1 if below.size else 1


def rejected_at_rank(
    p_values: FloatArray, n_columns: int, rank: int, alpha: float
) -> NDArray[np.bool_]:
    """Which p-values the cut at `rank` rejects among `n_columns` tests: ``p d / i < alpha``."""
    return np.asarray(np.asarray(p_values) * n_columns / rank < alpha)
