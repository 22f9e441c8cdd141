"""Realized performance of a classifier or regressor on labelled rows, with confidence intervals.

Every metric returns a `MetricValue`: the value, a confidence interval and `n`, the number
of labelled rows behind it. Inputs follow `detectors.classifier_outputs` (probabilities
``(n,)`` binary or ``(n, k)``, integer labels; rows with NaN/Inf probabilities are left
out, so ``n`` may be smaller than the input; values that look like logits or rows that do
not sum to 1 raise ValueError). A metric that is undefined on the rows given is NaN with
NaN bounds, never an exception:

=====================  =========================================  ============================
metric                 definition                                 NaN when
=====================  =========================================  ============================
``accuracy``           fraction of rows whose argmax is the       no rows
                       label; Wilson interval
``macro_f1``           mean over classes present in the labels    no rows
                       or predictions of 2 TP / (2 TP + FP + FN)
                       (scikit-learn's ``average="macro"``)
``roc_auc``            binary: AUC of the positive-class          fewer than 2 classes in
                       probability; k classes: mean one-vs-rest   the labels
                       AUC over the classes present in the
                       labels (scikit-learn's ``"ovr"`` macro
                       when all are present); ties count 1/2
``brier``              mean squared error of the probabilities:   no rows
                       (p - y)^2 for binary, sum over classes
                       for k > 2; Student t interval
``log_loss``           mean -log p(label), p clipped to           no rows
                       [eps, 1 - eps] (float64 eps); t interval
``ece``                top-label expected calibration error,      no rows
                       15 equal-width bins ((m-1)/15, m/15]
                       (Guo et al. 2017)
``adaptive_ece``       the same over 15 equal-mass bins: rows     no rows
                       sorted by confidence, bin b holds sorted
                       positions floor(b n / 15) ..
                       floor((b+1) n / 15) - 1
=====================  =========================================  ============================

Bootstrap intervals (macro F1, ROC AUC, both ECEs) use `n_bootstrap` resamples drawn from
`seed` and are NaN when more than half of the resamples leave the metric undefined. Binary
models count as k = 2 everywhere (Brier as the one-column binary score).

Regression: `mean_absolute_error` and `root_mean_squared_error` (t interval of the mean of
|e| and of e^2, the latter's bounds square-rooted); NaN/Inf pairs are left out.
`per_sample_loss` gives the per-row losses the degradation test
(`detectors.performance_degradation`) watches.

References: Guo, Pleiss, Sun, Weinberger (2017). On calibration of modern neural networks.
ICML. Nixon et al. (2019). Measuring calibration in deep learning. CVPR workshops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from detectors.base import FloatArray, check_choice, check_open_unit, check_positive_int
from detectors.classifier_outputs import (
    IntArray,
    as_labels,
    as_probabilities,
    finite_pairs,
    predicted_classes,
)
from detectors.confidence_intervals import (
    bootstrap_counts,
    mean_interval,
    percentile_interval,
    wilson_interval,
)

__all__ = [
    "CLASSIFICATION_METRICS",
    "LOSS_KINDS",
    "REGRESSION_METRICS",
    "MetricValue",
    "accuracy",
    "adaptive_calibration_error",
    "brier_score",
    "classification_metrics",
    "expected_calibration_error",
    "log_loss",
    "macro_f1",
    "mean_absolute_error",
    "per_sample_loss",
    "regression_metrics",
    "roc_auc",
    "root_mean_squared_error",
]

CLASSIFICATION_METRICS = (
    "accuracy",
    "macro_f1",
    "roc_auc",
    "brier",
    "log_loss",
    "ece",
    "adaptive_ece",
)
REGRESSION_METRICS = ("mae", "rmse")
LOSS_KINDS = ("zero_one", "log_loss", "brier")
N_BINS = 15
_EPS = float(np.finfo(np.float64).eps)
_NAN = float("nan")


@dataclass(frozen=True)
class MetricValue:
    """A performance figure: its value, a confidence interval and the labels behind it.

    `value`, `lower` and `upper` are NaN where the metric (or its interval) is undefined;
    `n` is the number of rows used. For label-free estimates (`detectors.performance_
    estimation`) the interval is the sampling-error band of the realized metric and `n`
    the number of unlabelled rows.
    """

    value: float
    lower: float
    upper: float
    n: int

    def __float__(self) -> float:
        return self.value


def _undefined(n: int) -> MetricValue:
    return MetricValue(_NAN, _NAN, _NAN, n)


def _check_settings(confidence: float, n_bootstrap: int, seed: int) -> None:
    check_open_unit("confidence", confidence)
    check_positive_int("n_bootstrap", n_bootstrap)
    check_positive_int("seed", seed, minimum=0)


# -- kernels: every metric on a batch of row weights (1 row = the data, B rows = resamples) ----


def grouped_auc(scores: FloatArray, positive: FloatArray, negative: FloatArray) -> FloatArray:
    """AUC (ties count 1/2) of `scores` for each row of positive and negative row weights.

    `positive` and `negative` are (B, n): how much each row counts as a positive and as a
    negative in each of B weightings (0/1 labels, bootstrap multiplicities, or class
    probabilities). NaN where a weighting has no positive or no negative mass.
    """
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    # rows as columns: numpy reduces along the first axis of a contiguous array fastest
    pos = np.ascontiguousarray(positive[:, order].T)
    neg = np.ascontiguousarray(negative[:, order].T)
    if s.size > 1 and (s[1:] == s[:-1]).any():  # tied scores: one group each
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        pos = np.add.reduceat(pos, starts, axis=0)
        neg = np.add.reduceat(neg, starts, axis=0)
    below = np.cumsum(neg, axis=0) - neg
    num = (pos * (below + 0.5 * neg)).sum(axis=0)
    den = pos.sum(axis=0) * neg.sum(axis=0)
    out: FloatArray = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def macro_f1_from_counts(
    tp: FloatArray, predicted: FloatArray, actual: FloatArray, present: FloatArray | None = None
) -> FloatArray:
    """Macro F1 from per-class (B, k) true positives and predicted and actual counts.

    A class counts where it was predicted or present (predicted + actual > 0), or with the
    weight `present` (probability it appears) when given; NaN where no class counts.
    """
    denom = predicted + actual
    f1 = np.zeros_like(tp)
    np.divide(2.0 * tp, denom, out=f1, where=denom > 0)
    weight = (denom > 0).astype(np.float64) if present is None else present
    total = weight.sum(axis=1)
    out: FloatArray = np.full(total.shape, np.nan)
    np.divide((f1 * weight).sum(axis=1), total, out=out, where=total > 0)
    return out


def _one_hot(index: IntArray, k: int) -> FloatArray:
    out: FloatArray = np.zeros((index.size, k))
    out[np.arange(index.size), index] = 1.0
    return out


def _weighted_macro_f1(pred: IntArray, labels: IntArray, k: int, w: FloatArray) -> FloatArray:
    p_hot = _one_hot(pred, k)
    y_hot = _one_hot(labels, k)
    return macro_f1_from_counts(w @ (p_hot * y_hot), w @ p_hot, w @ y_hot)


def _weighted_ovr_auc(probs: FloatArray, labels: IntArray, w: FloatArray) -> FloatArray:
    k = probs.shape[1]
    if k == 2:
        y = (labels == 1).astype(np.float64)
        return grouped_auc(probs[:, 1], w * y, w * (1.0 - y))
    per_class = np.full((w.shape[0], k), np.nan)
    for c in np.unique(labels):
        y = (labels == c).astype(np.float64)
        per_class[:, c] = grouped_auc(probs[:, c], w * y, w * (1.0 - y))
    # a class is averaged where it has positives and negatives (NaN otherwise)
    defined = np.isfinite(per_class)
    counts = defined.sum(axis=1)
    out: FloatArray = np.full(w.shape[0], np.nan)
    sums = np.where(defined, per_class, 0.0).sum(axis=1)
    np.divide(sums, counts, out=out, where=counts >= 2)
    return out


def _confidence_gaps(probs: FloatArray, labels: IntArray) -> tuple[FloatArray, FloatArray]:
    pred = predicted_classes(probs)
    conf = probs[np.arange(probs.shape[0]), pred]
    return conf, (pred == labels).astype(np.float64) - conf


def _weighted_ece(conf: FloatArray, gap: FloatArray, w: FloatArray, n_bins: int) -> FloatArray:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    per_bin = w @ (_one_hot(bins.astype(np.int64), n_bins) * gap[:, None])
    total = w.sum(axis=1)
    out: FloatArray = np.full(total.shape, np.nan)
    np.divide(np.abs(per_bin).sum(axis=1), total, out=out, where=total > 0)
    return out


def _weighted_adaptive_ece(
    conf: FloatArray, gap: FloatArray, w: FloatArray, n_bins: int
) -> FloatArray:
    order = np.argsort(conf, kind="stable")
    d = gap[order]
    out: FloatArray = np.full(w.shape[0], np.nan)
    for b in range(w.shape[0]):
        wb = w[b, order]
        total = float(wb.sum())
        if total <= 0:
            continue
        ends = np.cumsum(wb)
        mass = np.cumsum(wb * d)
        # G(x): the gap summed over the first x sorted positions (a row of weight w fills w)
        x = np.floor(np.arange(n_bins + 1) * total / n_bins)
        row = np.searchsorted(ends, x, side="right")
        inside = row < d.size
        r = np.minimum(row, d.size - 1)
        before = np.where(r > 0, ends[r - 1], 0.0) if d.size else r * 0.0
        g = np.where(inside, mass[r] - wb[r] * d[r] + (x - before) * d[r], mass[-1])
        out[b] = float(np.abs(np.diff(g)).sum() / total)
    return out


# -- classification metrics -------------------------------------------------------------------


def accuracy(
    probabilities: ArrayLike, labels: ArrayLike, *, confidence: float = 0.95
) -> MetricValue:
    """Fraction of rows whose predicted (argmax) class is the label, with a Wilson interval.

    >>> accuracy([0.9, 0.2, 0.7, 0.4], [1, 0, 0, 0])
    MetricValue(value=0.75, lower=0.3006..., upper=0.9544..., n=4)
    """
    probs, y, _ = finite_pairs(probabilities, labels)
    n = int(y.size)
    if n == 0:
        return _undefined(0)
    hits = int((predicted_classes(probs) == y).sum())
    lo, hi = wilson_interval(hits, n, confidence)
    return MetricValue(hits / n, lo, hi, n)


def macro_f1(
    probabilities: ArrayLike,
    labels: ArrayLike,
    *,
    confidence: float = 0.95,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> MetricValue:
    """Macro-averaged F1 of the argmax predictions, with a bootstrap interval.

    >>> round(macro_f1([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]], [0, 1, 2]).value, 4)
    0.5556
    """
    _check_settings(confidence, n_bootstrap, seed)
    probs, y, _ = finite_pairs(probabilities, labels)
    n, k = int(y.size), probs.shape[1]
    if n == 0:
        return _undefined(0)
    pred = predicted_classes(probs)
    value = float(_weighted_macro_f1(pred, y, k, np.ones((1, n)))[0])
    boot = _weighted_macro_f1(pred, y, k, bootstrap_counts(n, n_bootstrap, seed))
    lo, hi = percentile_interval(boot, confidence)
    return MetricValue(value, lo, hi, n)


def roc_auc(
    probabilities: ArrayLike,
    labels: ArrayLike,
    *,
    confidence: float = 0.95,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> MetricValue:
    """ROC AUC (binary; one-vs-rest macro over the classes present), with a bootstrap interval.

    >>> roc_auc([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0]).value
    0.75
    >>> roc_auc([0.9, 0.8], [1, 1]).value  # one class only: undefined
    nan
    """
    _check_settings(confidence, n_bootstrap, seed)
    probs, y, _ = finite_pairs(probabilities, labels)
    n = int(y.size)
    if np.unique(y).size < 2:
        return _undefined(n)
    value = float(_weighted_ovr_auc(probs, y, np.ones((1, n)))[0])
    boot = _weighted_ovr_auc(probs, y, bootstrap_counts(n, n_bootstrap, seed))
    lo, hi = percentile_interval(boot, confidence)
    return MetricValue(value, lo, hi, n)


def per_sample_loss(
    probabilities: ArrayLike,
    labels: ArrayLike,
    kind: Literal["zero_one", "log_loss", "brier"] = "zero_one",
) -> FloatArray:
    """Loss of each row: 0/1 error of the argmax, -log p(label), or the squared error.

    Rows with NaN/Inf probabilities give NaN (the degradation test drops and counts them).

    >>> per_sample_loss([0.9, 0.2, 0.7], [1, 1, 0]).tolist()
    [0.0, 1.0, 1.0]
    >>> per_sample_loss([0.9, 0.2], [1, 1], kind="brier").round(4).tolist()
    [0.01, 0.64]
    """
    check_choice("kind", kind, LOSS_KINDS)
    probs = as_probabilities(probabilities)
    y = as_labels(labels, probs.shape[1], probs.shape[0])
    rows = np.arange(y.size)
    if kind == "zero_one":
        out: FloatArray = (predicted_classes(probs) != y).astype(np.float64)
    elif kind == "log_loss":
        out = -np.log(np.clip(probs[rows, y], _EPS, 1.0 - _EPS))
    elif probs.shape[1] == 2:
        out = (probs[:, 1] - (y == 1)) ** 2
    else:
        out = ((probs - _one_hot(y, probs.shape[1])) ** 2).sum(axis=1)
    out[~np.isfinite(probs).all(axis=1)] = np.nan
    return out


def _mean_loss(
    probabilities: ArrayLike,
    labels: ArrayLike,
    kind: Literal["log_loss", "brier"],
    confidence: float,
) -> MetricValue:
    losses = per_sample_loss(probabilities, labels, kind)
    losses = losses[np.isfinite(losses)]
    mean, lo, hi = mean_interval(losses, confidence)
    return MetricValue(mean, max(lo, 0.0) if math.isfinite(lo) else lo, hi, int(losses.size))


def brier_score(
    probabilities: ArrayLike, labels: ArrayLike, *, confidence: float = 0.95
) -> MetricValue:
    """Mean squared error of the probabilities (binary: (p - y)^2), with a t interval.

    >>> round(brier_score([0.9, 0.2], [1, 1]).value, 4)
    0.325
    """
    return _mean_loss(probabilities, labels, "brier", confidence)


def log_loss(
    probabilities: ArrayLike, labels: ArrayLike, *, confidence: float = 0.95
) -> MetricValue:
    """Mean negative log-likelihood of the labels, with a t interval.

    >>> round(log_loss([0.9, 0.2], [1, 1]).value, 4)
    0.8574
    """
    return _mean_loss(probabilities, labels, "log_loss", confidence)


def _calibration_error(
    probabilities: ArrayLike,
    labels: ArrayLike,
    adaptive: bool,
    n_bins: int,
    confidence: float,
    n_bootstrap: int,
    seed: int,
) -> MetricValue:
    _check_settings(confidence, n_bootstrap, seed)
    check_positive_int("n_bins", n_bins)
    probs, y, _ = finite_pairs(probabilities, labels)
    n = int(y.size)
    if n == 0:
        return _undefined(0)
    conf, gap = _confidence_gaps(probs, y)
    kernel = _weighted_adaptive_ece if adaptive else _weighted_ece
    value = float(kernel(conf, gap, np.ones((1, n)), n_bins)[0])
    boot = kernel(conf, gap, bootstrap_counts(n, n_bootstrap, seed), n_bins)
    lo, hi = percentile_interval(boot, confidence)
    return MetricValue(value, lo, hi, n)


def expected_calibration_error(
    probabilities: ArrayLike,
    labels: ArrayLike,
    *,
    n_bins: int = N_BINS,
    confidence: float = 0.95,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> MetricValue:
    """Top-label ECE over `n_bins` equal-width bins (Guo et al. 2017), bootstrap interval.

    >>> round(expected_calibration_error([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0]).value, 4)
    0.425
    """
    return _calibration_error(probabilities, labels, False, n_bins, confidence, n_bootstrap, seed)


def adaptive_calibration_error(
    probabilities: ArrayLike,
    labels: ArrayLike,
    *,
    n_bins: int = N_BINS,
    confidence: float = 0.95,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> MetricValue:
    """Top-label ECE over `n_bins` equal-mass bins of the sorted confidences, bootstrap interval.

    >>> round(adaptive_calibration_error([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0], n_bins=2).value, 4)
    0.425
    """
    return _calibration_error(probabilities, labels, True, n_bins, confidence, n_bootstrap, seed)


def classification_metrics(
    probabilities: ArrayLike,
    labels: ArrayLike,
    *,
    confidence: float = 0.95,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> dict[str, MetricValue]:
    """Every classification metric of `CLASSIFICATION_METRICS` for one window of labelled rows.

    Checks the inputs once and shares one set of bootstrap resamples between the metrics,
    so it is cheaper than calling each function. Values equal the single functions'.

    >>> m = classification_metrics([0.9, 0.2, 0.7, 0.4], [1, 0, 0, 0])
    >>> sorted(m) == sorted(CLASSIFICATION_METRICS), m["accuracy"].value, m["roc_auc"].value
    (True, 0.75, 1.0)
    """
    _check_settings(confidence, n_bootstrap, seed)
    probs, y, _ = finite_pairs(probabilities, labels)
    n, k = int(y.size), probs.shape[1]
    if n == 0:
        return {name: _undefined(0) for name in CLASSIFICATION_METRICS}
    pred = predicted_classes(probs)
    ones = np.ones((1, n))
    boot = bootstrap_counts(n, n_bootstrap, seed)

    def booted(kernel_value: FloatArray, kernel_boot: FloatArray) -> MetricValue:
        lo, hi = percentile_interval(kernel_boot, confidence)
        return MetricValue(float(kernel_value[0]), lo, hi, n)

    hits = int((pred == y).sum())
    out = {"accuracy": MetricValue(hits / n, *wilson_interval(hits, n, confidence), n)}
    out["macro_f1"] = booted(
        _weighted_macro_f1(pred, y, k, ones), _weighted_macro_f1(pred, y, k, boot)
    )
    if np.unique(y).size < 2:
        out["roc_auc"] = _undefined(n)
    else:
        out["roc_auc"] = booted(
            _weighted_ovr_auc(probs, y, ones), _weighted_ovr_auc(probs, y, boot)
        )
    out["brier"] = _mean_loss(probs, y, "brier", confidence)
    out["log_loss"] = _mean_loss(probs, y, "log_loss", confidence)
    conf, gap = _confidence_gaps(probs, y)
    out["ece"] = booted(
        _weighted_ece(conf, gap, ones, N_BINS), _weighted_ece(conf, gap, boot, N_BINS)
    )
    out["adaptive_ece"] = booted(
        _weighted_adaptive_ece(conf, gap, ones, N_BINS),
        _weighted_adaptive_ece(conf, gap, boot, N_BINS),
    )
    return out


# -- regression metrics -----------------------------------------------------------------------


def _regression_errors(predictions: ArrayLike, targets: ArrayLike) -> FloatArray:
    try:
        pred = np.asarray(predictions, dtype=np.float64).reshape(-1)
        true = np.asarray(targets, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"predictions and targets must be numeric: {exc}") from None
    if pred.shape != true.shape:
        raise ValueError(f"predictions have {pred.size} values but targets have {true.size}")
    err: FloatArray = pred - true
    return err[np.isfinite(err)]


def mean_absolute_error(
    predictions: ArrayLike, targets: ArrayLike, *, confidence: float = 0.95
) -> MetricValue:
    """Mean |prediction - target| with a t interval (NaN/Inf pairs left out).

    >>> mean_absolute_error([1.0, 2.0, 4.0], [1.5, 2.0, 3.0]).value
    0.5
    """
    err = np.abs(_regression_errors(predictions, targets))
    mean, lo, hi = mean_interval(err, confidence)
    return MetricValue(mean, max(lo, 0.0) if math.isfinite(lo) else lo, hi, int(err.size))


def root_mean_squared_error(
    predictions: ArrayLike, targets: ArrayLike, *, confidence: float = 0.95
) -> MetricValue:
    """sqrt(mean squared error); the interval is the t interval of the MSE, square-rooted.

    >>> round(root_mean_squared_error([1.0, 2.0, 4.0], [1.5, 2.0, 3.0]).value, 4)
    0.6455
    """
    sq = _regression_errors(predictions, targets) ** 2
    mean, lo, hi = mean_interval(sq, confidence)
    root = math.sqrt(mean) if math.isfinite(mean) else _NAN
    lower = math.sqrt(max(lo, 0.0)) if math.isfinite(lo) else _NAN
    upper = math.sqrt(hi) if math.isfinite(hi) else _NAN
    return MetricValue(root, lower, upper, int(sq.size))


def regression_metrics(
    predictions: ArrayLike, targets: ArrayLike, *, confidence: float = 0.95
) -> dict[str, MetricValue]:
    """``{"mae": ..., "rmse": ...}`` for one window of labelled regression rows."""
    return {
        "mae": mean_absolute_error(predictions, targets, confidence=confidence),
        "rmse": root_mean_squared_error(predictions, targets, confidence=confidence),
    }
