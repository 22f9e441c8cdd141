"""Maps from a classifier's scores to calibrated probabilities, fitted on labelled rows.

Three calibrators in numpy and scipy, each stored as plain arrays (so an estimator's
`state_dict` holds them as they are):

- ``"isotonic"``: isotonic regression by pool-adjacent-violators (Zadrozny and Elkan 2002),
  the non-decreasing step fit minimising squared error; between the first and last score
  of neighbouring blocks it interpolates linearly and outside the fitted range it clips,
  as scikit-learn's ``IsotonicRegression(out_of_bounds="clip")`` does (and NannyML's CBPE
  uses).
- ``"histogram"``: histogram binning (Zadrozny and Elkan 2001) over `n_bins` equal-mass bins
  of the scores: a score maps to the fraction of positives in its bin.
- ``"temperature"``: temperature scaling (Guo et al. 2017), one parameter for all classes,
  softmax(log(p) / T) with T minimising the reference's log loss; for one binary score it is
  Platt scaling, sigmoid(a logit(p) + b). Two parameters at most: little variance, so it
  suits small references and models that are only over- or under-confident overall.

References
----------
Guo, C., Pleiss, G., Sun, Y., Weinberger, K. Q. (2017). On calibration of modern neural
networks. ICML. Platt, J. (1999). Probabilistic outputs for support vector machines.
Zadrozny, B. and Elkan, C. (2002). Transforming classifier scores into accurate multiclass
probability estimates. KDD. Zadrozny, B. and Elkan, C. (2001). Obtaining calibrated
probability estimates from decision trees and naive Bayesian classifiers. ICML.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from detectors.base import FloatArray
from detectors.classifier_outputs import sigmoid

CALIBRATIONS = ("isotonic", "histogram", "temperature", "none")

__all__ = [
    "CALIBRATIONS",
    "apply_calibration",
    "apply_temperature",
    "fit_calibration",
    "fit_temperature",
]
_CLIP = 1e-12


def _logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, _CLIP, 1.0 - _CLIP)
    out: FloatArray = np.log(q) - np.log1p(-q)
    return out


def _fit_platt(scores: FloatArray, targets: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(a, b) of sigmoid(a logit(s) + b) by Newton's method on the log loss."""
    x = np.stack([_logit(scores), np.ones(scores.size)], axis=1)
    ab = np.array([1.0, 0.0])
    for _ in range(50):
        p = sigmoid(x @ ab)
        grad = x.T @ (p - targets)
        # a tiny ridge keeps the step finite when the scores separate the targets
        hess = (x * (p * (1.0 - p))[:, None]).T @ x + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        ab = ab - step
        if float(np.abs(step).max()) < 1e-10:
            break
    return ab, np.zeros(0)


def fit_temperature(probabilities: FloatArray, labels: FloatArray) -> float:
    """The temperature T minimising the log loss of softmax(log(p) / T) on labelled rows.

    >>> p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    >>> round(fit_temperature(p, np.array([0, 1, 1, 0])), 3)
    1.678
    """
    logp = np.log(np.clip(probabilities, _CLIP, 1.0))
    rows = np.arange(labels.size)
    y = labels.astype(np.int64)

    def nll(log_t: float) -> float:
        z = logp / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float((np.log(np.exp(z).sum(axis=1)) - z[rows, y]).sum())

    res = optimize.minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded")
    return float(np.exp(res.x))


def apply_temperature(probabilities: FloatArray, temperature: float) -> FloatArray:
    """softmax(log(p) / T) per row (zeros stay zero)."""
    logp = np.log(np.clip(probabilities, _CLIP, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    e = np.exp(logp)
    out: FloatArray = e / e.sum(axis=1, keepdims=True)
    return out


def _pool_adjacent_violators(y: FloatArray, w: FloatArray) -> tuple[FloatArray, list[int]]:
    """Block means and block start indices of the weighted isotonic (non-decreasing) fit of y."""
    try:  # scipy >= 1.12 runs PAV in compiled code
        from scipy.optimize import isotonic_regression
    except ImportError:  # pragma: no cover - older scipy
        return _pool_adjacent_violators_loop(y, w)
    fitted = isotonic_regression(y, weights=w)
    starts = np.asarray(fitted.blocks[:-1], dtype=np.intp)
    return np.asarray(fitted.x[starts], dtype=np.float64), starts.tolist()


def _pool_adjacent_violators_loop(y: FloatArray, w: FloatArray) -> tuple[FloatArray, list[int]]:
    means: list[float] = []
    weights: list[float] = []
    starts: list[int] = []
    for i, (yi, wi) in enumerate(zip(y.tolist(), w.tolist(), strict=True)):
        means.append(yi)
        weights.append(wi)
        starts.append(i)
        while len(means) > 1 and means[-2] >= means[-1]:
            m2, w2 = means.pop(), weights.pop()
            starts.pop()
            w1 = weights[-1]
            total = w1 + w2
            means[-1] = (means[-1] * w1 + m2 * w2) / total if total > 0 else means[-1]
            weights[-1] = total
    return np.asarray(means), starts


def _fit_isotonic(scores: FloatArray, targets: FloatArray) -> tuple[FloatArray, FloatArray]:
    order = np.argsort(scores, kind="stable")
    s, t = scores[order], targets[order]
    # equal scores are one point with the mean target (as scikit-learn pools ties)
    uniq, start = np.unique(s, return_index=True)
    counts = np.diff(np.r_[start, s.size]).astype(np.float64)
    sums = np.add.reduceat(t, start)
    means, block_starts = _pool_adjacent_violators(sums / counts, counts)
    ends = [*block_starts[1:], uniq.size]
    xs: list[float] = []
    ys: list[float] = []
    for value, a, b in zip(means.tolist(), block_starts, ends, strict=True):
        xs.append(float(uniq[a]))
        ys.append(value)
        if b - 1 > a:  # a block spanning several scores is flat between its ends
            xs.append(float(uniq[b - 1]))
            ys.append(value)
    return np.asarray(xs), np.asarray(ys)


def _fit_histogram(
    scores: FloatArray, targets: FloatArray, n_bins: int
) -> tuple[FloatArray, FloatArray]:
    order = np.argsort(scores, kind="stable")
    s, t = scores[order], targets[order]
    cuts = np.unique(np.floor(np.arange(n_bins) * s.size / n_bins).astype(np.intp))
    # a bin starts at its first score; ties straddling a cut all go to the earlier bin
    lefts = np.unique(s[cuts])
    bins = np.searchsorted(lefts, s, side="right") - 1
    sums = np.bincount(bins, weights=t, minlength=lefts.size)
    counts = np.bincount(bins, minlength=lefts.size)
    values = sums / np.maximum(counts, 1)
    lefts = lefts.copy()
    lefts[0] = -np.inf
    return lefts, values


def fit_calibration(
    kind: str, scores: FloatArray, targets: FloatArray, n_bins: int = 20
) -> tuple[FloatArray, FloatArray]:
    """Knots (x, y) of a calibration map fitted on scores and 0/1 (or fractional) targets.

    >>> scores, targets = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 1, 0, 1.0])
    >>> x, y = fit_calibration("isotonic", scores, targets)
    >>> x.tolist(), y.tolist()
    ([0.1, 0.35, 0.4, 0.8], [0.0, 0.0, 1.0, 1.0])
    >>> apply_calibration("isotonic", x, y, np.array([0.0, 0.375, 0.9])).tolist()
    [0.0, 0.5, 1.0]
    """
    if kind == "isotonic":
        return _fit_isotonic(scores, targets)
    if kind == "histogram":
        return _fit_histogram(scores, targets, n_bins)
    if kind == "temperature":  # one score: Platt scaling, knots are (a, b)
        return _fit_platt(scores, targets)
    if kind == "none":
        return np.zeros(0), np.zeros(0)
    raise ValueError(f"calibration must be one of {list(CALIBRATIONS)}, got {kind!r}")


def apply_calibration(kind: str, x: FloatArray, y: FloatArray, scores: FloatArray) -> FloatArray:
    """Calibrated probabilities of `scores` from the knots of `fit_calibration`."""
    if kind == "none":
        return scores.copy()
    if kind == "isotonic":
        out: FloatArray = np.interp(scores, x, y)
        return out
    if kind == "temperature":
        platt: FloatArray = sigmoid(x[0] * _logit(scores) + x[1])
        return platt
    idx = np.searchsorted(x, scores, side="right") - 1
    binned: FloatArray = y[np.clip(idx, 0, y.size - 1)]
    return binned
