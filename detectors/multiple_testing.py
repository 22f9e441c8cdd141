"""Combining per-dimension p-values into one: Bonferroni or Benjamini-Hochberg.

Both return one adjusted p-value, rejected when it is below `alpha`:
Bonferroni ``min(1, d * min p)``; Benjamini-Hochberg the smallest BH-adjusted p-value,
``min_i d p_(i) / i``, which is below alpha exactly when BH at level alpha rejects any
hypothesis.

References
----------
Benjamini, Y. and Hochberg, Y. (1995). Controlling the false discovery rate. JRSS B 57(1).
"""

from __future__ import annotations

import numpy as np

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
