"""Label-free performance estimates of a classifier from its output probabilities alone.

Labels arrive late, or never. These estimators learn on a labelled reference how the
model's probabilities relate to being right, then estimate accuracy, macro F1 and ROC AUC
of any chunk of unlabelled predictions:

- `ConfidenceBasedEstimator`: confidence-based performance estimation (CBPE; NannyML).
  Scores are calibrated on the reference (isotonic regression or histogram binning), each
  row's calibrated probabilities are taken as its label distribution, and the metrics'
  expectations under it are the estimates (`detectors.expected_performance`). Exact when
  the calibration still holds on the chunk: a shift of the inputs the model handles as
  well as before (P(label | score) unchanged). With ``calibration="none"`` it is the naive
  average-confidence estimate.
- `ThresholdedConfidenceEstimator`: average thresholded confidence (ATC; Garg et al. 2022).
  A threshold on a confidence score is fitted so that the fraction of reference rows above
  it equals the reference accuracy; the estimated accuracy of a chunk is its fraction of
  rows above the threshold. Under covariate shift a model is usually over-confident on the
  shifted inputs, which moves calibrated confidences little but pushes many rows below the
  threshold, so ATC follows accuracy drops that CBPE misses. F1 and AUC come from the
  calibrated label distribution with every row's probability of being right moved by one
  common logit offset so that their mean equals the ATC accuracy.

Neither can see a concept shift (the labels change, the model's outputs do not): their
estimates depend on the outputs only. Realized performance on joined labels
(`detectors.performance_metrics`) and `PerformanceDegradationTest` cover that.

Contract: ``fit(probabilities, labels) -> self`` on the labelled reference, then
``estimate(probabilities) -> {metric: MetricValue}`` for a chunk, metrics
``ESTIMATED_METRICS`` = accuracy, macro_f1, roc_auc; each `MetricValue` carries the
estimate, its sampling-error band at `confidence` (the range the realized metric of a chunk
of that size would fall in if the estimator's label distribution is right) and the number
of rows used. Probabilities are ``(n,)`` (binary, positive class) or ``(n, k)``; labels are
integers 0..k-1; rows with NaN/Inf are left out (``n`` says how many were used); an empty
chunk gives NaN. ``estimate`` is a pure function of the chunk (the same chunk always gets
the same band), and ``state_dict()`` / ``load_state_dict()`` hold the fitted calibration as
numpy arrays and numbers.

References
----------
NannyML, Confidence-based Performance Estimation (CBPE), docs "how it works".
Garg, Balakrishnan, Lipton, Neyshabur, Sedghi (2022). Leveraging unlabeled data to predict
out-of-distribution performance. ICLR.
Guillory, Shankar, Ebrahimi, Darrell, Schmidt (2021). Predicting with confidence on unseen
distributions. ICCV (average confidence and its difference as baselines).
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike

from detectors.base import (
    FloatArray,
    _StatefulEstimator,
    check_choice,
    check_open_unit,
    check_positive_int,
)
from detectors.calibration import (
    CALIBRATIONS,
    apply_calibration,
    apply_temperature,
    fit_calibration,
    fit_temperature,
)
from detectors.classifier_outputs import IntArray, as_probabilities, finite_pairs
from detectors.expected_performance import ESTIMATED_METRICS, expected_metrics
from detectors.performance_metrics import MetricValue

MULTICLASS_MODES = ("one_vs_rest", "top_label")
ATC_SCORES = ("negative_entropy", "max_confidence")
#: Fewest labelled reference rows a fit accepts.
MIN_REFERENCE_ROWS = 10
#: Folds of the reference over which ``calibration="auto"`` compares the calibrators.
AUTO_FOLDS = 5

__all__ = [
    "ATC_SCORES",
    "ESTIMATED_METRICS",
    "MULTICLASS_MODES",
    "ConfidenceBasedEstimator",
    "PerformanceEstimator",
    "ThresholdedConfidenceEstimator",
]

_E = TypeVar("_E", bound="PerformanceEstimator")


class PerformanceEstimator(_StatefulEstimator):
    """Base of the label-free estimators: input checks, the fit/estimate contract, state.

    Subclasses implement `_fit(probabilities, labels)` and `_label_distribution(probs)`
    (each row's distribution over its label, for finite checked rows).
    """

    def __init__(self, confidence: float = 0.95, n_draws: int = 200, seed: int | None = None):
        self.confidence = check_open_unit("confidence", confidence)
        self.n_draws = check_positive_int("n_draws", n_draws)
        super().__init__(seed)

    def _params(self) -> dict[str, object]:
        return {"confidence": self.confidence, "n_draws": self.n_draws, "seed": self.seed}

    @property
    def n_classes(self) -> int:
        """Classes of the fitted reference (2 for a binary model); 0 before `fit`."""
        return self._n_features

    def fit(self: _E, probabilities: ArrayLike, labels: ArrayLike) -> _E:
        """Learns from labelled reference rows (rows with NaN/Inf probabilities left out)."""
        probs, y, _ = finite_pairs(probabilities, labels)
        if y.size < MIN_REFERENCE_ROWS:
            raise ValueError(
                f"the reference needs at least {MIN_REFERENCE_ROWS} labelled rows with finite "
                f"probabilities, got {y.size}"
            )
        if np.unique(y).size < 2:
            raise ValueError(
                f"the reference labels hold one class only ({int(y[0])}); performance cannot "
                "be learnt from it"
            )
        self._n_features = probs.shape[1]
        self._fit(probs, y)
        self._fitted = True
        return self

    def estimate(self, probabilities: ArrayLike) -> dict[str, MetricValue]:
        """Estimated accuracy, macro F1 and ROC AUC of a chunk, with sampling-error bands."""
        self._require_fitted()
        probs = as_probabilities(probabilities, self._n_features)
        probs = probs[np.isfinite(probs).all(axis=1)]
        q = self._label_distribution(probs) if probs.shape[0] else probs
        rng = np.random.default_rng([self._entropy, 2])
        return expected_metrics(q, probs, confidence=self.confidence, n_draws=self.n_draws, rng=rng)

    def label_distribution(self, probabilities: ArrayLike) -> FloatArray:
        """Each row's estimated distribution over its label, (n, k) (NaN rows stay NaN)."""
        self._require_fitted()
        probs = as_probabilities(probabilities, self._n_features)
        finite = np.isfinite(probs).all(axis=1)
        out = np.full_like(probs, np.nan)
        if finite.any():
            out[finite] = self._label_distribution(probs[finite])
        return out

    def _fit(self, probs: FloatArray, labels: IntArray) -> None:
        raise NotImplementedError

    def _label_distribution(self, probs: FloatArray) -> FloatArray:
        raise NotImplementedError


def _pack(knots: list[tuple[FloatArray, FloatArray]]) -> tuple[FloatArray, FloatArray, FloatArray]:
    xs = np.concatenate([x for x, _ in knots]) if knots else np.zeros(0)
    ys = np.concatenate([y for _, y in knots]) if knots else np.zeros(0)
    sizes = np.array([x.size for x, _ in knots], dtype=np.float64)
    return xs, ys, sizes


class ConfidenceBasedEstimator(PerformanceEstimator):
    """CBPE: calibrate the scores on the reference, then take the metrics' expectations.

    Binary models get one calibrator of the positive-class probability. Multiclass models
    get, with ``multiclass="one_vs_rest"`` (NannyML's way), one calibrator per class whose
    outputs are renormalised to sum to 1 (uniform where all are 0), or with
    ``"top_label"`` one calibrator of the top probability against being right, the other
    classes keeping their shares of the rest. ``calibration="none"`` keeps the model's
    probabilities: the naive average-confidence estimate.

    Memory: the calibration knots, O(n_reference) per calibrator at most.
    Cost: fit O(n_ref log n_ref) per calibrator (pure-Python PAV loop for isotonic);
    estimate O(n k log n) plus O(n_draws n k) for the bands.

    Parameters
    ----------
    calibration
        "auto" (default: the calibrator with the lowest held-out Brier score over
        `AUTO_FOLDS` folds of the reference, among "none", "isotonic", "histogram" and
        "temperature"; the setting `python -m benchmarks.performance` chose on its validation
        chunks), or one of those four ("isotonic" is NannyML's CBPE; "none" is the naive
        average-confidence estimate).
    n_bins
        Equal-mass bins of the histogram calibrator.
    multiclass
        "one_vs_rest" or "top_label" (ignored for binary models).
    confidence
        Coverage of the sampling-error bands.
    n_draws
        Label vectors drawn for the macro F1 and ROC AUC bands.
    seed
        Seed of those draws (None: fresh entropy, fixed at construction).

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(size=2000)
    >>> y = (rng.uniform(size=2000) < p).astype(int)  # a calibrated binary model
    >>> est = ConfidenceBasedEstimator(seed=0).fit(p, y)
    >>> est.calibration_used  # the model is calibrated: "auto" keeps its probabilities
    'none'
    >>> m = est.estimate(rng.uniform(size=500))
    >>> round(m["accuracy"].value, 2), round(m["roc_auc"].value, 2), m["accuracy"].n
    (0.76, 0.84, 500)
    """

    _FITTED_KEYS: tuple[str, ...] = ("_calibration", "_knots_x", "_knots_y", "_knot_sizes")

    def __init__(
        self,
        calibration: str = "auto",
        n_bins: int = 20,
        multiclass: str = "one_vs_rest",
        confidence: float = 0.95,
        n_draws: int = 200,
        seed: int | None = None,
    ) -> None:
        check_choice("calibration", calibration, (*CALIBRATIONS, "auto"))
        check_choice("multiclass", multiclass, MULTICLASS_MODES)
        self.calibration = calibration
        self.n_bins = check_positive_int("n_bins", n_bins, minimum=2)
        self.multiclass = multiclass
        super().__init__(confidence=confidence, n_draws=n_draws, seed=seed)
        self._calibration = calibration
        self._knots_x = np.zeros(0)
        self._knots_y = np.zeros(0)
        self._knot_sizes = np.zeros(0)

    def _params(self) -> dict[str, object]:
        return {
            "calibration": self.calibration,
            "n_bins": self.n_bins,
            "multiclass": self.multiclass,
            **super()._params(),
        }

    def _calibrators(self) -> list[tuple[FloatArray, FloatArray]]:
        bounds = np.r_[0, np.cumsum(self._knot_sizes.astype(np.int64))]
        return [
            (self._knots_x[a:b], self._knots_y[a:b])
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
        ]

    def _one_calibrator(self) -> bool:
        return self._n_features == 2 or self.multiclass == "top_label" or (
            self._calibration == "temperature"
        )

    def _after_load(self) -> None:
        expected = 1 if self._one_calibrator() else self._n_features
        if self._knot_sizes.size != expected or self._knot_sizes.sum() != self._knots_x.size:
            raise ValueError("state calibration knots do not match the number of classes")

    @property
    def calibration_used(self) -> str:
        """The calibrator fitted: `calibration`, or the one ``"auto"`` chose."""
        return self._calibration

    def _fit(self, probs: FloatArray, labels: IntArray) -> None:
        self._calibration = (
            self._cross_validated_choice(probs, labels)
            if self.calibration == "auto"
            else self.calibration
        )
        self._fit_calibrators(probs, labels)

    def _cross_validated_choice(self, probs: FloatArray, labels: IntArray) -> str:
        """The calibrator with the lowest held-out Brier score over `AUTO_FOLDS` folds."""
        rng = np.random.default_rng([self._entropy, 3])
        folds = rng.permutation(labels.size) % AUTO_FOLDS
        onehot = np.eye(probs.shape[1])[labels]
        best, best_brier = "none", math.inf
        for kind in CALIBRATIONS:  # "none" first, so it wins ties
            brier = 0.0
            for f in range(AUTO_FOLDS):
                train, test = folds != f, folds == f
                if kind != "none" and np.unique(labels[train]).size < 2:
                    brier = math.inf
                    break
                trial = ConfidenceBasedEstimator(kind, self.n_bins, self.multiclass, seed=0)
                trial._n_features = probs.shape[1]
                trial._calibration = kind
                trial._fit_calibrators(probs[train], labels[train])
                q = trial._label_distribution(probs[test])
                brier += float(((q - onehot[test]) ** 2).sum())
            if brier < best_brier:
                best, best_brier = kind, brier
        return best

    def _fit_calibrators(self, probs: FloatArray, labels: IntArray) -> None:
        k = probs.shape[1]
        if k == 2:
            pairs = [(probs[:, 1], (labels == 1).astype(np.float64))]
        elif self._calibration == "temperature":
            t = fit_temperature(probs, labels.astype(np.float64))
            self._knots_x, self._knots_y, self._knot_sizes = _pack([(np.array([t]), np.zeros(0))])
            return
        elif self.multiclass == "top_label":
            top = np.argmax(probs, axis=1)
            pairs = [(probs.max(axis=1), (top == labels).astype(np.float64))]
        else:
            pairs = [(probs[:, c], (labels == c).astype(np.float64)) for c in range(k)]
        knots = [fit_calibration(self._calibration, s, t, self.n_bins) for s, t in pairs]
        self._knots_x, self._knots_y, self._knot_sizes = _pack(knots)

    def _calibrate(self, scores: FloatArray, which: int) -> FloatArray:
        x, y = self._calibrators()[which]
        return np.clip(apply_calibration(self._calibration, x, y, scores), 0.0, 1.0)

    def _label_distribution(self, probs: FloatArray) -> FloatArray:
        k = probs.shape[1]
        if self._calibration == "none":
            return probs
        if k == 2:
            q1 = self._calibrate(probs[:, 1], 0)
            return np.stack([1.0 - q1, q1], axis=1)
        if self._calibration == "temperature":
            return apply_temperature(probs, float(self._knots_x[0]))
        if self.multiclass == "top_label":
            pred = np.argmax(probs, axis=1)
            return _with_top_probability(probs, pred, self._calibrate(probs.max(axis=1), 0))
        q = np.stack([self._calibrate(probs[:, c], c) for c in range(k)], axis=1)
        sums = q.sum(axis=1, keepdims=True)
        out: FloatArray = np.full_like(q, 1.0 / k)
        np.divide(q, sums, out=out, where=sums > 0)
        return out


def _with_top_probability(probs: FloatArray, pred: IntArray, top: FloatArray) -> FloatArray:
    """`probs` with the predicted class's probability set to `top` and the rest rescaled."""
    n, k = probs.shape
    rows = np.arange(n)
    rest = 1.0 - probs[rows, pred]
    scale = np.zeros(n)
    np.divide(1.0 - top, rest, out=scale, where=rest > 0)
    q = probs * scale[:, None]
    flat = rest <= 0  # the model put everything on one class: spread the rest evenly
    if flat.any():
        q[flat] = ((1.0 - top[flat]) / (k - 1))[:, None]
    q[rows, pred] = top
    return q


def _confidence_score(kind: str, probs: FloatArray) -> FloatArray:
    if kind == "max_confidence":
        out: FloatArray = probs.max(axis=1)
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(probs > 0, probs * np.log(probs), 0.0)
    ent: FloatArray = plogp.sum(axis=1)
    return ent


def _shift_to_mean(c: FloatArray, target: float) -> FloatArray:
    """sigmoid(logit(c) + d) with the one offset d that makes its mean equal `target`."""
    eps = 1e-9
    logit = np.log(np.clip(c, eps, 1 - eps)) - np.log1p(-np.clip(c, eps, 1 - eps))
    lo, hi = -50.0, 50.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if float((1.0 / (1.0 + np.exp(-(logit + mid)))).mean()) < target:
            lo = mid
        else:
            hi = mid
    out: FloatArray = 1.0 / (1.0 + np.exp(-(logit + 0.5 * (lo + hi))))
    return out


class ThresholdedConfidenceEstimator(ConfidenceBasedEstimator):
    """ATC: accuracy as the fraction of rows whose confidence passes a reference-fitted threshold.

    The threshold t on the `score` (negative entropy of the calibrated probabilities, or
    the top calibrated probability) is set on the reference so that the fraction of rows
    scoring above it equals the reference accuracy; a chunk's estimated accuracy is its
    fraction above t (Garg et al. 2022, ATC-NE with the default score). Macro F1 and ROC
    AUC come from the calibrated label distribution of `ConfidenceBasedEstimator` (same
    `calibration`, `n_bins`, `multiclass`), with every row's probability of being right
    shifted by one logit offset so that their mean equals the ATC accuracy.

    Parameters
    ----------
    score
        "negative_entropy" or "max_confidence".
    calibration, n_bins, multiclass, confidence, n_draws, seed
        As in `ConfidenceBasedEstimator`.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(size=2000)
    >>> y = (rng.uniform(size=2000) < p).astype(int)
    >>> est = ThresholdedConfidenceEstimator(seed=0).fit(p, y)
    >>> round(est.threshold, 3)
    -0.663
    >>> round(est.estimate(rng.uniform(size=500))["accuracy"].value, 2)
    0.73

    References
    ----------
    Garg, S., Balakrishnan, S., Lipton, Z. C., Neyshabur, B., Sedghi, H. (2022). Leveraging
    unlabeled data to predict out-of-distribution performance. ICLR.
    """

    _FITTED_KEYS = (*ConfidenceBasedEstimator._FITTED_KEYS, "_atc_threshold")

    def __init__(
        self,
        score: str = "negative_entropy",
        calibration: str = "isotonic",
        n_bins: int = 20,
        multiclass: str = "one_vs_rest",
        confidence: float = 0.95,
        n_draws: int = 200,
        seed: int | None = None,
    ) -> None:
        check_choice("score", score, ATC_SCORES)
        self.score = score
        super().__init__(
            calibration=calibration,
            n_bins=n_bins,
            multiclass=multiclass,
            confidence=confidence,
            n_draws=n_draws,
            seed=seed,
        )
        self._atc_threshold = math.nan

    def _params(self) -> dict[str, object]:
        return {"score": self.score, **super()._params()}

    @property
    def threshold(self) -> float | None:
        """The fitted confidence threshold on the `score` scale (None before `fit`)."""
        return None if math.isnan(self._atc_threshold) else self._atc_threshold

    def _fit(self, probs: FloatArray, labels: IntArray) -> None:
        super()._fit(probs, labels)
        calibrated = super()._label_distribution(probs)
        scores = np.sort(_confidence_score(self.score, calibrated))
        n = scores.size
        above = int(round(float((np.argmax(probs, axis=1) == labels).mean()) * n))
        self._atc_threshold = float(scores[n - above - 1]) if above < n else -math.inf

    def thresholded_accuracy(self, probabilities: ArrayLike) -> float:
        """The ATC accuracy of a chunk: its fraction of finite rows above the threshold."""
        self._require_fitted()
        probs = as_probabilities(probabilities, self._n_features)
        probs = probs[np.isfinite(probs).all(axis=1)]
        if probs.shape[0] == 0:
            return math.nan
        calibrated = super()._label_distribution(probs)
        return float((_confidence_score(self.score, calibrated) > self._atc_threshold).mean())

    def _label_distribution(self, probs: FloatArray) -> FloatArray:
        q = super()._label_distribution(probs)
        target = float((_confidence_score(self.score, q) > self._atc_threshold).mean())
        pred = np.argmax(probs, axis=1)
        right = q[np.arange(q.shape[0]), pred]
        shifted = _shift_to_mean(right, target)
        if q.shape[1] == 2:
            out = q.copy()
            out[np.arange(q.shape[0]), pred] = shifted
            out[np.arange(q.shape[0]), 1 - pred] = 1.0 - shifted
            return out
        return _with_top_probability(q, pred.astype(np.int64), shifted)
