"""Exact and near duplicate rows of a reference, and the radius that defines "near".

Duplicates make a reference look tighter than the traffic it stands for (kNN OOD scores
and MMD thresholds shrink) and over-weight whatever was repeated: a retried batch, a
replayed log, a capture that saw one client loop. Exact duplicates are found by hashing
each row's bytes; near duplicates are rows closer than a small fraction of the typical
nearest-neighbour distance of the reference, found by locality-sensitive hashing and
verified with exact distances (see `neighbours.py`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from detectors.base import FloatArray
from detectors.reference_checks.findings import (
    EXACT_DUPLICATE,
    NEAR_DUPLICATE,
    CheckResult,
    build_result,
)
from detectors.reference_checks.neighbours import (
    exact_representatives,
    near_pairs,
    nearest_neighbour_distances,
)

CHECK = "duplicates"


def near_radius(
    x: FloatArray,
    near_ratio: float,
    seed: int = 0,
    sample_rows: int = 256,
    representatives: NDArray[np.int64] | None = None,
) -> tuple[float, float]:
    """(radius, median nearest-neighbour distance): rows closer than the radius are "near".

    The median is over up to `sample_rows` distinct rows, each to its nearest other distinct
    row (exact); the radius is `near_ratio` times it, so "near" scales with the data.
    `representatives` (from `exact_representatives`) saves hashing the rows again.
    """
    rep = exact_representatives(x, seed) if representatives is None else representatives
    unique = np.flatnonzero(rep == np.arange(x.shape[0]))
    if unique.size < 2:
        return 0.0, 0.0
    rng = np.random.default_rng([seed, 4])
    pick = unique if unique.size <= sample_rows else rng.choice(unique, sample_rows, replace=False)
    distinct = x[unique]
    position = np.searchsorted(unique, pick)
    median = float(np.median(nearest_neighbour_distances(distinct, position)))
    return near_ratio * median, median


def find_duplicates(
    x: FloatArray,
    radius: float,
    *,
    warn_share: float = 0.01,
    seed: int = 0,
    median_nn_distance: float | None = None,
    representatives: NDArray[np.int64] | None = None,
) -> CheckResult:
    """Exact and near duplicates: every row of a duplicate group but the first is flagged.

    Rows are grouped when identical or within `radius` of each other (transitively); the
    first row (lowest index) of a group is kept and the others are flagged with reason
    `exact_duplicate` (identical to the kept row) or `near_duplicate`, `related` = the
    kept row, and score 1 for exact, 1 - (distance to the nearest group member) / radius
    for near duplicates. Status "flagged" when the flagged share exceeds `warn_share`.

    Example
    -------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(6, 4))
    >>> x[4] = x[1]
    >>> x[5] = x[2] + 1e-6
    >>> result = find_duplicates(x, radius=1e-3)
    >>> result.rows.tolist(), result.reasons, result.related.tolist()
    ([4, 5], ('exact_duplicate', 'near_duplicate'), [1, 2])
    """
    n = x.shape[0]
    rep = exact_representatives(x, seed) if representatives is None else representatives
    unique = np.flatnonzero(rep == np.arange(n))
    pairs = near_pairs(x[unique], radius, seed)
    left, right = unique[pairs.left], unique[pairs.right]
    # Groups: identical rows joined to their representative, near pairs joined together.
    edges_from = np.concatenate([np.arange(n), left])
    edges_to = np.concatenate([rep, right])
    graph = coo_matrix((np.ones(len(edges_from)), (edges_from, edges_to)), shape=(n, n))
    n_groups, group = connected_components(graph, directed=False)
    keep = np.full(n_groups, n, dtype=np.int64)
    np.minimum.at(keep, group, np.arange(n))
    kept = keep[group]
    flagged = kept != np.arange(n)
    exact = flagged & (rep == rep[kept])
    # Nearest group member of each distinct row, for the near-duplicate score.
    nearest = np.full(n, np.inf)
    np.minimum.at(nearest, left, pairs.distance)
    np.minimum.at(nearest, right, pairs.distance)
    near_score = np.clip(1.0 - nearest[rep] / radius, 0.0, 1.0) if radius > 0 else np.zeros(n)
    scores = np.where(exact, 1.0, np.where(flagged, near_score, 0.0))
    reasons = np.where(exact, EXACT_DUPLICATE, NEAR_DUPLICATE).tolist()
    sizes = np.bincount(group)
    n_exact, n_near = int(exact.sum()), int((flagged & ~exact).sum())
    share = (n_exact + n_near) / n
    summary: dict[str, object] = {
        "exact_duplicate_rows": n_exact,
        "near_duplicate_rows": n_near,
        "duplicate_share": share,
        "duplicate_groups": int((sizes > 1).sum()),
        "largest_group": int(sizes.max(initial=0)),
        "radius": radius,
        "warn_share": warn_share,
    }
    if median_nn_distance is not None:
        summary["median_nn_distance"] = median_nn_distance
    return build_result(
        CHECK,
        n_rows=n,
        flagged=flagged,
        reasons=reasons,
        scores=scores,
        related=kept,
        row_scores=scores,
        above_warn=share > warn_share,
        summary=summary,
        message=(
            f"{n_exact} exact and {n_near} near duplicate rows ({share:.2%}) in "
            f"{int((sizes > 1).sum())} group(s)"
        ),
    )
