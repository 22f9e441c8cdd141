"""Gaussian-kernel pieces shared by the MMD detectors: distances and the median heuristic."""

from __future__ import annotations

import numpy as np

from detectors.base import FloatArray

#: Rows of the reference used for the median heuristic (enough for a stable median).
MEDIAN_HEURISTIC_ROWS = 1000


def squared_distances(a: FloatArray, b: FloatArray) -> FloatArray:
    """Pairwise squared Euclidean distances, (len(a), len(b)), clipped at 0."""
    d2 = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    out: FloatArray = np.maximum(d2, 0.0)
    return out


def median_bandwidth(reference: FloatArray, rng: np.random.Generator) -> float:
    """Median pairwise distance between reference rows (a seeded subsample of at most 1000).

    Falls back to 1.0 when all sampled rows coincide.
    """
    n = reference.shape[0]
    rows = reference
    if n > MEDIAN_HEURISTIC_ROWS:
        rows = reference[rng.choice(n, size=MEDIAN_HEURISTIC_ROWS, replace=False)]
    d2 = squared_distances(rows, rows)
    upper = d2[np.triu_indices(rows.shape[0], k=1)]
    if upper.size == 0:
        return 1.0
    med = float(np.sqrt(np.median(upper)))
    return med if med > 0.0 else 1.0
