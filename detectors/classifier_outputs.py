"""Checks a classifier's outputs and labels before any performance metric or estimate uses them.

Every metric and estimator in `detectors.performance_metrics` and
`detectors.performance_estimation` takes probabilities in one of two shapes:

- ``(n,)`` (or ``(n, 1)``): a binary classifier's probability of the positive class 1;
- ``(n, k)`` with k >= 2: a multiclass classifier's class probabilities, one row per
  prediction, columns in class order.

Both become an ``(n, k)`` matrix here (k = 2 for binary, columns ``[1 - p, p]``). Rules a
live stream needs, applied the same way everywhere:

- Rows holding NaN or Inf are not an error: they are left out and counted (callers report
  how many rows were used).
- Values outside [0, 1] (beyond a 1e-6 rounding slack) raise ValueError: they are usually
  logits; pass ``softmax(logits)`` or ``sigmoid(logit)`` first.
- Rows of an ``(n, k)`` matrix must sum to 1 within `SUM_TOLERANCE` (float32 outputs and
  rounding to a few decimals stay well inside it) and are then renormalised; a row further
  off raises ValueError naming it.
- Labels are integer class indices 0..k-1 (floats holding integers are accepted); anything
  else raises ValueError.
- The predicted class is the argmax of a row, ties going to the lower index (a binary
  probability of exactly 0.5 predicts class 0).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors.base import FloatArray
from detectors.bbsd import softmax as _softmax_rows

IntArray = NDArray[np.int64]

#: Largest |row sum - 1| accepted (and renormalised) for (n, k) probabilities.
SUM_TOLERANCE = 1e-3
#: Rounding slack below 0 and above 1 before a value counts as "not a probability".
_RANGE_SLACK = 1e-6

__all__ = [
    "SUM_TOLERANCE",
    "as_labels",
    "as_probabilities",
    "finite_pairs",
    "predicted_classes",
    "sigmoid",
    "softmax",
]


def softmax(logits: ArrayLike) -> FloatArray:
    """Class probabilities from an ``(n, k)`` matrix of logits (rows with NaN/Inf give NaN).

    >>> softmax([[0.0, 0.0], [2.0, 0.0]]).round(3).tolist()
    [[0.5, 0.5], [0.881, 0.119]]
    """
    arr = np.asarray(logits, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"logits must be (n, k), got shape {arr.shape}")
    return _softmax_rows(arr)


def sigmoid(logits: ArrayLike) -> FloatArray:
    """Positive-class probabilities from a binary classifier's logits, without overflow.

    >>> sigmoid([0.0, 800.0, -800.0]).tolist()
    [0.5, 1.0, 0.0]
    """
    arr = np.asarray(logits, dtype=np.float64)
    out: FloatArray = np.empty_like(arr)
    with np.errstate(invalid="ignore", over="ignore"):
        pos = arr >= 0
        out[pos] = 1.0 / (1.0 + np.exp(-arr[pos]))
        e = np.exp(arr[~pos])
        out[~pos] = e / (1.0 + e)
    return out


def as_probabilities(
    probabilities: ArrayLike, n_classes: int | None = None, what: str = "probabilities"
) -> FloatArray:
    """An ``(n, k)`` probability matrix from ``(n,)`` binary or ``(n, k)`` input, checked.

    Rows with NaN or Inf are kept as they are (see `finite_pairs`); finite rows are checked
    against the module's rules and renormalised. `n_classes`, when given, is the k the
    caller expects (2 for a binary ``(n,)`` input).

    >>> as_probabilities([0.2, 0.9]).tolist()
    [[0.8, 0.2], [0.09999999999999998, 0.9]]
    >>> as_probabilities([[1.5, -0.5]])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: probabilities must lie in [0, 1], got values from -0.5 to 1.5: these look ...
    """
    try:
        arr = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{what} must be numeric, got {type(probabilities).__name__}: {exc}"
        ) from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 1:
        arr = np.stack([1.0 - arr, arr], axis=1)
    elif arr.ndim != 2:
        raise ValueError(
            f"{what} must be (n,) for a binary classifier or (n, k) for k classes, "
            f"got shape {arr.shape}"
        )
    k = arr.shape[1]
    if n_classes is not None and k != n_classes:
        raise ValueError(f"{what} have {k} classes but {n_classes} were expected")
    finite = np.isfinite(arr).all(axis=1)
    good = arr[finite]
    if good.size:
        lo, hi = float(good.min()), float(good.max())
        if lo < -_RANGE_SLACK or hi > 1.0 + _RANGE_SLACK:
            raise ValueError(
                f"{what} must lie in [0, 1], got values from {lo:.4g} to {hi:.4g}: these look "
                "like logits; pass softmax(logits) (or sigmoid(logit) for one binary column)"
            )
        good = np.clip(good, 0.0, 1.0)
        sums = good.sum(axis=1)
        off = np.abs(sums - 1.0) > SUM_TOLERANCE
        if off.any():
            row = int(np.flatnonzero(finite)[np.argmax(off)])
            raise ValueError(
                f"{what} rows must sum to 1 (within {SUM_TOLERANCE}); {int(off.sum())} do not, "
                f"e.g. row {row} sums to {float(sums[np.argmax(off)]):.6g}; pass class "
                "probabilities, e.g. softmax(logits)"
            )
        arr = arr.copy()
        arr[finite] = good / sums[:, None]
    return arr


def as_labels(labels: ArrayLike, n_classes: int, n_rows: int | None = None) -> IntArray:
    """Integer class indices in 0..n_classes-1, or a ValueError saying what is wrong.

    >>> as_labels([0, 2.0, 1], 3).tolist()
    [0, 2, 1]
    """
    try:
        raw = np.asarray(labels)
        arr = raw.astype(np.float64) if raw.dtype.kind not in "iub" else raw
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"labels must be integer class indices, got {type(labels).__name__}: {exc}"
        ) from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {arr.shape}")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise ValueError(f"labels have {arr.shape[0]} rows but probabilities have {n_rows}")
    if arr.dtype.kind == "f" and (not np.isfinite(arr).all() or (arr != np.round(arr)).any()):
        raise ValueError("labels must be integer class indices (got NaN, Inf or fractions)")
    out: IntArray = arr.astype(np.int64)
    if out.size and (out.min() < 0 or out.max() >= n_classes):
        raise ValueError(
            f"labels must lie in 0..{n_classes - 1} for {n_classes} classes, "
            f"got values from {int(out.min())} to {int(out.max())}"
        )
    return out


def finite_pairs(
    probabilities: ArrayLike, labels: ArrayLike, n_classes: int | None = None
) -> tuple[FloatArray, IntArray, int]:
    """Checked ``(n, k)`` probabilities and labels with rows holding NaN/Inf left out.

    Returns the probabilities, the labels and the number of rows left out.

    >>> p, y, dropped = finite_pairs([0.9, float("nan"), 0.2], [1, 1, 0])
    >>> p.shape, y.tolist(), dropped
    ((2, 2), [1, 0], 1)
    """
    probs = as_probabilities(probabilities, n_classes)
    y = as_labels(labels, probs.shape[1], probs.shape[0])
    finite = np.isfinite(probs).all(axis=1)
    if finite.all():
        return probs, y, 0
    return probs[finite], y[finite], int(finite.size - int(finite.sum()))


def predicted_classes(probabilities: FloatArray) -> IntArray:
    """The argmax class of each row of an ``(n, k)`` matrix (ties to the lower index)."""
    out: IntArray = np.argmax(probabilities, axis=1).astype(np.int64)
    return out
