"""Leakage: rows shared (exactly or nearly) between the reference, probe suites and training set.

A probe row inside the reference teaches the detectors that probe traffic is normal; a
training row inside the reference makes the reference look like the model's comfort zone
rather than its traffic; a probe row inside the training set inflates measured robustness.
Overlap is found as in `duplicates.py`: hashing for exact copies, locality-sensitive
hashing with exact verification for near copies (within the reference's "near" radius).
"""

from __future__ import annotations

import numpy as np

from detectors.base import FloatArray
from detectors.reference_checks.findings import (
    PROBE_OVERLAP_EXACT,
    PROBE_OVERLAP_NEAR,
    TRAINING_OVERLAP_EXACT,
    TRAINING_OVERLAP_NEAR,
    CheckResult,
    build_result,
)
from detectors.reference_checks.neighbours import exact_matches, near_pairs

PROBE_CHECK = "probe_leakage"
TRAINING_CHECK = "training_leakage"
PROBE_TRAINING_CHECK = "probe_training_leakage"

_REASONS = {
    PROBE_CHECK: (PROBE_OVERLAP_EXACT, PROBE_OVERLAP_NEAR),
    TRAINING_CHECK: (TRAINING_OVERLAP_EXACT, TRAINING_OVERLAP_NEAR),
    PROBE_TRAINING_CHECK: (TRAINING_OVERLAP_EXACT, TRAINING_OVERLAP_NEAR),
}
_SUBJECT_NAME = {"reference": "reference", "probe_suites": "probe"}
_OTHER_NAME = {
    PROBE_CHECK: "probe-suite",
    TRAINING_CHECK: "training",
    PROBE_TRAINING_CHECK: "training",
}


def overlap(
    x: FloatArray,
    other: FloatArray,
    radius: float,
    *,
    check: str = PROBE_CHECK,
    warn_share: float = 0.0,
    seed: int = 0,
) -> CheckResult:
    """Rows of `x` identical to, or within `radius` of, a row of `other`.

    `check` is "probe_leakage" (x = reference, other = probe rows), "training_leakage"
    (x = reference, other = training set) or "probe_training_leakage" (x = probe rows, other
    = training set; the result's subject is then "probe_suites"). `related` = the matched
    row of `other` (the nearest one found for near copies); score 1 for exact copies,
    1 - distance / radius for near ones. Status "flagged" when the flagged share exceeds
    `warn_share` (by default any overlap).

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> reference, probes = rng.normal(size=(50, 4)), rng.normal(size=(5, 4))
    >>> reference[7], reference[9] = probes[3], probes[1] + 1e-6
    >>> result = overlap(reference, probes, radius=1e-3)
    >>> result.rows.tolist(), result.reasons, result.related.tolist()
    ([7, 9], ('probe_overlap_exact', 'probe_overlap_near'), [3, 1])
    """
    if check not in _REASONS:
        raise ValueError(f"check must be one of {sorted(_REASONS)}, got {check!r}")
    if other.shape[1] != x.shape[1]:
        raise ValueError(
            f"{_OTHER_NAME[check]} rows have {other.shape[1]} columns, these rows {x.shape[1]}"
        )
    exact_reason, near_reason = _REASONS[check]
    n = x.shape[0]
    exact = exact_matches(x, other, seed)
    pairs = near_pairs(x, radius, seed, other=other)
    # The nearest `other` row of each row, among the verified near pairs.
    order = np.lexsort((pairs.distance, pairs.left))
    first = np.r_[True, pairs.left[order][1:] != pairs.left[order][:-1]] if len(order) else []
    nearest = np.full(n, -1, dtype=np.int64)
    nearest_distance = np.full(n, np.inf)
    chosen = order[np.asarray(first, dtype=bool)]
    nearest[pairs.left[chosen]] = pairs.right[chosen]
    nearest_distance[pairs.left[chosen]] = pairs.distance[chosen]
    is_exact = exact >= 0
    is_near = ~is_exact & (nearest >= 0)
    flagged = is_exact | is_near
    related = np.where(is_exact, exact, nearest)
    near_score = np.clip(1.0 - nearest_distance / radius, 0.0, 1.0) if radius > 0 else 0.0
    scores = np.where(is_exact, 1.0, np.where(is_near, near_score, 0.0))
    share = float(flagged.mean()) if n else 0.0
    subject = "probe_suites" if check == PROBE_TRAINING_CHECK else "reference"
    return build_result(
        check,
        subject=subject,
        n_rows=n,
        flagged=flagged,
        reasons=np.where(is_exact, exact_reason, near_reason).tolist(),
        scores=scores,
        related=related,
        row_scores=scores,
        above_warn=share > warn_share,
        summary={
            "exact_rows": int(is_exact.sum()),
            "near_rows": int(is_near.sum()),
            "overlap_share": share,
            "other_rows": int(other.shape[0]),
            "other_rows_matched": int(np.unique(related[flagged]).size),
            "radius": radius,
            "warn_share": warn_share,
        },
        message=(
            f"{int(is_exact.sum())} exact and {int(is_near.sum())} near copies of "
            f"{_OTHER_NAME[check]} rows ({share:.2%} of the {_SUBJECT_NAME[subject]} rows)"
        ),
    )
