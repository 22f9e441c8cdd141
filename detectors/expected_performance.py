"""Expected accuracy, macro F1 and ROC AUC of unlabelled rows whose label distribution is known.

A label-free estimator (`detectors.performance_estimation`) turns each unlabelled row into
a distribution over its label, Q[i, c] = P(label_i = c). With the model's predictions
(argmax of its own probabilities) and scores fixed, the realized metric of the chunk is a
random variable over labels drawn from Q, independently per row. This module gives its
expectation and a sampling-error band:

- accuracy: mean_i Q[i, pred_i] exactly; the band is the normal approximation of the
  Poisson-binomial count (variance sum_i q_i (1 - q_i)).
- macro F1: per class, the ratio of expected counts 2 E[TP] / (2 E[TP] + E[FP] + E[FN])
  (as NannyML's CBPE), averaged over classes weighted by the probability that the class
  appears among the labels or predictions (the realized macro F1 skips absent classes).
- ROC AUC: per class, the expected number of correctly ordered (positive, negative) pairs
  of distinct rows over the expected number of such pairs, sum_{i != j} q_i (1 - q_j)
  [s_i > s_j] (ties 1/2) / sum_{i != j} q_i (1 - q_j); binary uses the positive class,
  multiclass averages one-vs-rest, weighted by the probability the class appears.
- bands of macro F1 and ROC AUC: percentiles of the realized metric over `n_draws` label
  vectors drawn from Q with an explicit seed.

The band is sampling error only: it assumes Q is right. Error in Q itself (calibration
learnt on a finite reference, or a shift that breaks it) is not inside the band.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from detectors.base import FloatArray
from detectors.classifier_outputs import IntArray
from detectors.confidence_intervals import percentile_interval
from detectors.performance_metrics import MetricValue, grouped_auc, macro_f1_from_counts

ESTIMATED_METRICS = ("accuracy", "macro_f1", "roc_auc")

__all__ = ["ESTIMATED_METRICS", "expected_metrics"]


def _presence(q: FloatArray) -> FloatArray:
    """P(class c appears at least once among labels drawn from q), per class."""
    with np.errstate(divide="ignore"):
        log_absent = np.log1p(-np.clip(q, 0.0, 1.0)).sum(axis=0)
    out: FloatArray = -np.expm1(log_absent)
    return out


def _expected_auc(scores: FloatArray, q: FloatArray) -> float:
    pos, neg = q[None, :], 1.0 - q[None, :]
    auc_all = grouped_auc(scores, pos, neg)[0]
    # grouped_auc counts the pair (i, i) as a tie; take those self-pairs out again
    self_pairs = float((q * (1.0 - q)).sum())
    den = float(q.sum() * (1.0 - q).sum())
    num = auc_all * den if math.isfinite(auc_all) else 0.0
    den -= self_pairs
    return float((num - 0.5 * self_pairs) / den) if den > 1e-12 else math.nan


def _expected_values(
    q: FloatArray, pred: IntArray, scores: FloatArray
) -> tuple[float, float, float]:
    n, k = q.shape
    rows = np.arange(n)
    acc = float(q[rows, pred].mean())
    p_hot = np.zeros((n, k))
    p_hot[rows, pred] = 1.0
    tp = (q * p_hot).sum(axis=0)
    predicted = p_hot.sum(axis=0)
    actual = q.sum(axis=0)
    present = np.maximum(_presence(q), (predicted > 0).astype(np.float64))
    f1 = float(macro_f1_from_counts(tp[None], predicted[None], actual[None], present[None])[0])
    if k == 2:
        auc = _expected_auc(scores[:, 1], q[:, 1])
    else:
        per_class = np.array([_expected_auc(scores[:, c], q[:, c]) for c in range(k)])
        # a class needs a positive and a negative to have an AUC
        weight = _presence(q) * _presence(1.0 - q)
        ok = np.isfinite(per_class) & (weight > 0)
        auc = float((per_class[ok] * weight[ok]).sum() / weight[ok].sum()) if ok.any() else math.nan
    return acc, f1, auc


def _draw_labels(q: FloatArray, n_draws: int, rng: np.random.Generator) -> IntArray:
    u = rng.random((n_draws, q.shape[0]))
    if q.shape[1] == 2:
        ones: IntArray = (u >= q[None, :, 0]).astype(np.int64)
        return ones
    cum = np.cumsum(q, axis=1)
    cum[:, -1] = 1.0
    # the label is the number of the row's cumulative bounds at or below u: one search over
    # all rows at once, row i's bounds offset by i so that the whole array stays sorted
    n, k = q.shape
    offsets = np.arange(n, dtype=np.float64)
    flat = (cum + offsets[:, None]).ravel()
    found = np.searchsorted(flat, u + offsets[None, :], side="right")
    labels: IntArray = np.minimum(found - np.arange(n)[None, :] * k, k - 1).astype(np.int64)
    return labels


def _mid_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks, tied values sharing their mean rank (scipy's rankdata "average")."""
    order = np.argsort(values, kind="stable")
    s = values[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], s.size]
    group_rank = (starts + ends + 1) / 2.0
    ranks: FloatArray = np.empty(s.size)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def _drawn_metrics(
    labels: IntArray, pred: IntArray, scores: FloatArray, k: int
) -> tuple[FloatArray, FloatArray]:
    """Macro F1 and ROC AUC of each drawn label vector (rows of `labels`)."""
    d, n = labels.shape
    cells = (np.arange(d)[:, None] * k + labels).ravel()
    actual = np.bincount(cells, minlength=d * k).reshape(d, k).astype(np.float64)
    hit = (labels == pred[None, :]).ravel().astype(np.float64)
    tp = np.bincount(cells, weights=hit, minlength=d * k).reshape(d, k).astype(np.float64)
    predicted = np.broadcast_to(np.bincount(pred, minlength=k).astype(np.float64), (d, k))
    f1 = macro_f1_from_counts(tp, predicted, actual)
    # Mann-Whitney: AUC = (sum of the positives' mid-ranks - P (P + 1) / 2) / (P N)
    aucs = np.full((d, k), np.nan)
    for c in [1] if k == 2 else range(k):
        ranks = _mid_ranks(scores[:, c])
        is_c = (labels == c).astype(np.float64)
        n_pos = actual[:, c]
        den = n_pos * (n - n_pos)
        np.divide(is_c @ ranks - n_pos * (n_pos + 1) / 2, den, out=aucs[:, c], where=den > 0)
    if k == 2:
        return f1, aucs[:, 1]
    defined = np.isfinite(aucs)
    counts = defined.sum(axis=1)
    auc: FloatArray = np.full(d, np.nan)
    np.divide(np.where(defined, aucs, 0.0).sum(axis=1), counts, out=auc, where=counts >= 2)
    return f1, auc


def expected_metrics(
    q: FloatArray,
    probabilities: FloatArray,
    *,
    confidence: float,
    n_draws: int,
    rng: np.random.Generator,
) -> dict[str, MetricValue]:
    """Expected accuracy, macro F1 and ROC AUC with bands, for finite, checked inputs.

    `q` is the (n, k) label distribution, `probabilities` the model's own (n, k) outputs
    (they give the predictions and the AUC ranking). An empty chunk gives NaN values.
    """
    n, k = probabilities.shape
    if n == 0:
        nan = MetricValue(math.nan, math.nan, math.nan, 0)
        return dict.fromkeys(ESTIMATED_METRICS, nan)
    pred = np.argmax(probabilities, axis=1).astype(np.int64)
    acc, f1, auc = _expected_values(q, pred, probabilities)
    c = q[np.arange(n), pred]
    z = float(stats.norm.isf((1.0 - confidence) / 2.0))
    half = z * math.sqrt(float((c * (1.0 - c)).sum())) / n
    f1_draws, auc_draws = _drawn_metrics(_draw_labels(q, n_draws, rng), pred, probabilities, k)
    return {
        "accuracy": MetricValue(acc, max(0.0, acc - half), min(1.0, acc + half), n),
        "macro_f1": MetricValue(f1, *percentile_interval(f1_draws, confidence), n),
        "roc_auc": MetricValue(auc, *percentile_interval(auc_draws, confidence), n),
    }
