"""Likely label errors by confident learning (Northcutt, Jiang and Chuang 2021).

Given out-of-sample predicted probabilities (from a model that did not train on these
rows, or cross-validated ones) and the given labels, each class j gets a threshold t_j:
the mean probability of class j over the rows labelled j (the model's self-confidence on
that class). A row is confidently of class j when p_j >= t_j; when several classes pass,
the most probable of them counts. A row confidently of another class than its label is a
likely label error (the off-diagonal of the "confident joint"). Per-class thresholds keep
a class the model is shy about from being ignored and an over-predicted class from
swallowing everything.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from detectors.base import FloatArray
from detectors.reference_checks.findings import LABEL_ERROR, CheckResult, build_result

CHECK = "label_errors"


def check_probabilities(probabilities: FloatArray, n_rows: int) -> FloatArray:
    """Validates (n, n_classes) class probabilities: finite, >= 0, rows summing to 1."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != n_rows or p.shape[1] < 2:
        raise ValueError(f"probabilities must be ({n_rows}, n_classes >= 2), got shape {p.shape}")
    if not np.isfinite(p).all() or p.min() < 0.0:
        raise ValueError("probabilities must be finite and non-negative")
    sums = p.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-3):
        worst = int(np.argmax(np.abs(sums - 1.0)))
        raise ValueError(
            f"probabilities must sum to 1 per row (softmax outputs, not logits); row {worst} "
            f"sums to {sums[worst]:.4g}"
        )
    return p


def check_labels(
    labels: NDArray[np.int64], n_rows: int, n_classes: int | None
) -> NDArray[np.int64]:
    """Validates integer class labels, one per row, in [0, n_classes)."""
    y = np.asarray(labels)
    if y.shape != (n_rows,):
        raise ValueError(f"labels must have shape ({n_rows},), got {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError("labels must be integer class indices")
    elif y.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if n_rows and y.min() < 0:
        raise ValueError(f"labels must be >= 0, got {int(y.min())}")
    if n_classes is not None and n_rows and y.max() >= n_classes:
        raise ValueError(
            f"labels must be < {n_classes} (the number of classes), got {int(y.max())}"
        )
    return y


def label_errors(
    probabilities: FloatArray,
    labels: NDArray[np.int64],
    *,
    warn_share: float = 0.02,
) -> CheckResult:
    """Rows whose label disagrees with a class the model is confident about.

    Flags the off-diagonal of the confident joint; `related` = the class the model suggests,
    score = the normalised margin max_{j != label} p_j - p_label (in [-1, 1]; every row gets
    one, so the rows can be ranked). Status "flagged" when the flagged share exceeds
    `warn_share`.

    Example
    -------
    >>> import numpy as np
    >>> p = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9], [0.95, 0.05]])
    >>> result = label_errors(p, np.array([0, 0, 1, 1, 1]))
    >>> result.rows.tolist(), result.related.tolist()
    ([4], [0])
    """
    n = len(labels)
    p = check_probabilities(probabilities, n)
    k = p.shape[1]
    y = check_labels(labels, n, k)
    counts = np.bincount(y, minlength=k)
    # Self-confidence per class; a class nobody is labelled with can never be "confident".
    sums = np.bincount(y, weights=p[np.arange(n), y], minlength=k)
    thresholds = np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)
    confident = p >= thresholds
    masked = np.where(confident, p, -np.inf)
    suggested = np.argmax(masked, axis=1).astype(np.int64)
    issue = confident.any(axis=1) & (suggested != y)
    others = p.copy()
    others[np.arange(n), y] = -np.inf
    margin = others.max(axis=1) - p[np.arange(n), y]
    share = float(issue.mean()) if n else 0.0
    joint = np.zeros((k, k), dtype=np.int64)
    np.add.at(joint, (y[issue], suggested[issue]), 1)
    return build_result(
        CHECK,
        n_rows=n,
        flagged=issue,
        reasons=LABEL_ERROR,
        scores=margin,
        related=suggested,
        row_scores=margin,
        above_warn=share > warn_share,
        summary={
            "label_error_share": share,
            "per_class_threshold": [float(t) if np.isfinite(t) else None for t in thresholds],
            "flagged_by_given_label": np.bincount(y[issue], minlength=k).tolist(),
            "given_vs_suggested": joint.tolist(),
            "warn_share": warn_share,
        },
        message=f"{int(issue.sum())} likely label errors ({share:.2%}) by confident learning",
    )
