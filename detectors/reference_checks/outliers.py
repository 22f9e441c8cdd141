"""Rows that do not belong: out of distribution against a trusted seed, or robust outliers.

With a trusted seed reference (a small sample someone vouches for), a row is out of
distribution when its k-th nearest-neighbour distance to the seed exceeds what the seed's
own rows show, at a stated false-positive rate (a conformal quantile: Vovk et al. 2005).
Without one, the reference must judge itself, so only estimates the contamination cannot
drag along are used: a kNN distance to a bank of reference rows, scaled by its median and
MAD, and a robust Mahalanobis distance under a Minimum Covariance Determinant fit. Both
work in a PCA projection (plus a random sketch of the residual for the kNN search, see
`neighbours.Projection`), which keeps 100,000 x 384 within a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from detectors.base import FloatArray
from detectors.reference_checks.findings import (
    KNN_DISTANCE,
    OOD_VS_SEED,
    ROBUST_MAHALANOBIS,
    CheckResult,
    build_result,
    skipped,
)
from detectors.reference_checks.neighbours import fit_projection, kth_neighbour_distance
from detectors.reference_checks.robust_statistics import fast_mcd, robust_z

SEED_CHECK = "seed_ood"
ROBUST_CHECK = "robust_outliers"
#: Fewer rows than this and a distribution cannot be judged.
MIN_ROWS = 20


def seed_ood(
    x: FloatArray,
    seed_reference: FloatArray,
    *,
    k: int = 10,
    false_positive_rate: float = 0.005,
    n_components: int = 64,
    bank_rows: int = 8192,
    warn_share: float = 0.02,
    seed: int = 0,
) -> CheckResult:
    """Rows whose k-th neighbour distance to the seed reference is beyond the seed's own.

    The seed's rows are scored leave-one-out against the seed (or, for a seed larger than
    `bank_rows`, the rows outside the bank are scored against it); the threshold is their
    conformal (1 - `false_positive_rate`) quantile, so a row drawn like the seed's is
    flagged with probability at most that rate. Score = distance / threshold (flagged above
    1). Status "flagged" when the flagged share exceeds `warn_share`.
    """
    m = seed_reference.shape[0]
    if m < MIN_ROWS:
        return skipped(SEED_CHECK, f"the seed reference has {m} rows; {MIN_ROWS} needed")
    if seed_reference.shape[1] != x.shape[1]:
        raise ValueError(
            f"seed reference has {seed_reference.shape[1]} columns, the reference {x.shape[1]}"
        )
    rng = np.random.default_rng([seed, 5])
    projection = fit_projection(seed_reference, n_components, rng)
    seed_rows = projection.sketch(seed_reference)
    if m <= bank_rows:
        bank = seed_rows
        calibration = kth_neighbour_distance(seed_rows, bank, k, np.arange(m, dtype=np.int64))
    else:
        order = rng.permutation(m)
        bank = seed_rows[order[:bank_rows]]
        calibration = kth_neighbour_distance(seed_rows[order[bank_rows:]], bank, k)
    threshold = conformal_quantile(calibration, 1.0 - false_positive_rate)
    distance = kth_neighbour_distance(projection.sketch(x), bank, k)
    ratio = distance / threshold if threshold > 0 else np.where(distance > 0, np.inf, 0.0)
    flagged = ratio > 1.0
    share = float(flagged.mean())
    return build_result(
        SEED_CHECK,
        n_rows=x.shape[0],
        flagged=flagged,
        reasons=OOD_VS_SEED,
        scores=ratio,
        row_scores=ratio,
        above_warn=share > warn_share,
        summary={
            "ood_share": share,
            "false_positive_rate": false_positive_rate,
            "threshold_distance": threshold,
            "seed_rows": m,
            "k": k,
            "warn_share": warn_share,
        },
        message=(
            f"{int(flagged.sum())} rows ({share:.2%}) out of distribution against the "
            f"{m}-row seed (expected by chance: {false_positive_rate:.2%})"
        ),
    )


def robust_outliers(
    x: FloatArray,
    groups: NDArray[np.int64] | None = None,
    *,
    knn_z_max: float = 3.5,
    mahalanobis_z_max: float = 5.0,
    k: int = 10,
    n_components: int = 64,
    mcd_components: int = 10,
    bank_rows: int = 4096,
    mcd_rows: int = 2000,
    warn_share: float = 0.02,
    seed: int = 0,
) -> CheckResult:
    """Rows far from the rest by a robust Mahalanobis distance or a kNN distance.

    kNN: the k-th neighbour distance to a bank of up to `bank_rows` reference rows (self
    excluded) in a PCA projection with a sketch of the residual, log-transformed and
    scaled to a robust z (median, MAD). Mahalanobis: squared distances under an MCD fit
    (`fast_mcd` on up to `mcd_rows` rows) in the leading `mcd_components` principal
    components, one fit per group when `groups` (classes) are given, since a single
    ellipsoid around several classes calls whole classes outlying; log-transformed and
    scaled to a robust z within the group. A row is flagged when its kNN z exceeds
    `knn_z_max` or its Mahalanobis z exceeds `mahalanobis_z_max`; its score is the larger
    z over its threshold (flagged above 1), its reason the method that scored higher.
    Status "flagged" when the flagged share exceeds `warn_share`.
    """
    n = x.shape[0]
    if n < MIN_ROWS:
        return skipped(ROBUST_CHECK, f"the reference has {n} rows; {MIN_ROWS} needed", n_rows=n)
    rng = np.random.default_rng([seed, 6])
    projection = fit_projection(x, n_components, rng)
    rows = projection.sketch(x)
    bank_index = np.sort(rng.choice(n, size=min(n, bank_rows), replace=False))
    position = np.full(n, -1, dtype=np.int64)
    position[bank_index] = np.arange(len(bank_index))
    knn = kth_neighbour_distance(rows, rows[bank_index], k, position)
    z_knn = robust_z(np.log(knn + 1e-3 * float(np.median(knn)) + 1e-300))

    q = min(mcd_components, projection.n_components)
    coords = np.asarray(rows[:, :q], dtype=np.float64)
    z_mcd = _mahalanobis_z(coords, groups, mcd_rows, rng, seed)

    knn_ratio, mcd_ratio = z_knn / knn_z_max, z_mcd / mahalanobis_z_max
    score = np.maximum(knn_ratio, mcd_ratio)
    flagged = score > 1.0
    by_knn = knn_ratio >= mcd_ratio
    reasons = np.where(by_knn, KNN_DISTANCE, ROBUST_MAHALANOBIS).tolist()
    share = float(flagged.mean())
    return build_result(
        ROBUST_CHECK,
        n_rows=n,
        flagged=flagged,
        reasons=reasons,
        scores=score,
        row_scores=score,
        above_warn=share > warn_share,
        summary={
            "outlier_share": share,
            "knn_distance_rows": int((flagged & by_knn).sum()),
            "robust_mahalanobis_rows": int((flagged & ~by_knn).sum()),
            "knn_z_max": knn_z_max,
            "mahalanobis_z_max": mahalanobis_z_max,
            "k": k,
            "mcd_components": q,
            "per_class_mcd": groups is not None,
            "warn_share": warn_share,
        },
        message=f"{int(flagged.sum())} robust outlier rows ({share:.2%})",
    )


def _mahalanobis_z(
    coords: FloatArray,
    groups: NDArray[np.int64] | None,
    mcd_rows: int,
    rng: np.random.Generator,
    seed: int,
) -> FloatArray:
    """Robust z of log squared MCD distances, per group where a group can carry a fit."""
    n, q = coords.shape
    z = np.zeros(n)
    labels = np.zeros(n, dtype=np.int64) if groups is None else groups
    fallback = None
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        part = coords[members]
        if len(members) >= max(MIN_ROWS, 5 * q):
            fit_rows = (
                part
                if len(part) <= mcd_rows
                else part[rng.choice(len(part), mcd_rows, replace=False)]
            )
            fit = fast_mcd(fit_rows, seed=seed)
        else:
            # Too few rows for a covariance of their own: judge them by the whole reference.
            if fallback is None:
                fit_rows = (
                    coords if n <= mcd_rows else coords[rng.choice(n, mcd_rows, replace=False)]
                )
                fallback = fast_mcd(fit_rows, seed=seed)
            fit = fallback
        d2 = fit.squared_distances(part)
        z[members] = robust_z(np.log(d2 + 1e-12 * float(np.median(d2)) + 1e-300))
    return z


def conformal_quantile(scores: FloatArray, level: float) -> float:
    """The ceil((m + 1) level)-th smallest of m scores (the largest when that exceeds m).

    A new score exchangeable with the m calibration scores exceeds it with probability at
    most 1 - level (split conformal prediction).
    """
    ordered = np.sort(scores)
    rank = math.ceil((len(ordered) + 1) * level)
    return float(ordered[min(rank, len(ordered)) - 1])
