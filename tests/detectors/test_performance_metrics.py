"""Realized performance metrics: exact small cases, scikit-learn equality, stream edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from detectors.classifier_outputs import as_labels, as_probabilities, sigmoid, softmax
from detectors.confidence_intervals import (
    bootstrap_counts,
    mean_interval,
    percentile_interval,
    wilson_interval,
)
from detectors.performance_metrics import (
    CLASSIFICATION_METRICS,
    MetricValue,
    accuracy,
    adaptive_calibration_error,
    brier_score,
    classification_metrics,
    expected_calibration_error,
    grouped_auc,
    log_loss,
    macro_f1,
    mean_absolute_error,
    per_sample_loss,
    regression_metrics,
    roc_auc,
    root_mean_squared_error,
)


def _random_case(k: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, k, n])
    p2 = rng.dirichlet(np.full(k, 0.5), size=n)
    y = rng.integers(0, k, size=n)
    y[:k] = np.arange(k)
    return (p2[:, 1] if k == 2 else p2), p2, y


def _ece_loop(p2: np.ndarray, y: np.ndarray, n_bins: int = 15, adaptive: bool = False) -> float:
    conf, correct = p2.max(axis=1), (p2.argmax(axis=1) == y).astype(float)
    n, total = len(y), 0.0
    if adaptive:
        order = np.argsort(conf, kind="stable")
        for b in range(n_bins):
            idx = order[(b * n) // n_bins : ((b + 1) * n) // n_bins]
            total += abs(correct[idx].sum() - conf[idx].sum())
        return total / n
    edges = np.linspace(0, 1, n_bins + 1)
    for m in range(n_bins):
        inside = (conf > edges[m]) & (conf <= edges[m + 1])
        if m == 0:
            inside |= conf == 0
        total += abs(correct[inside].sum() - conf[inside].sum())
    return total / n


# -- exact values --------------------------------------------------------------------------------


def test_accuracy_with_its_wilson_interval() -> None:
    m = accuracy([0.9, 0.2, 0.7, 0.4], [1, 0, 0, 0])
    assert (m.value, m.n) == (0.75, 4)
    assert (round(m.lower, 4), round(m.upper, 4)) == (0.3006, 0.9544)
    assert [round(v, 4) for v in wilson_interval(8, 10)] == [0.4902, 0.9433]
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0


def test_small_cases_by_hand() -> None:
    p = [0.9, 0.8, 0.3, 0.1]
    y = [1, 0, 1, 0]
    assert roc_auc(p, y).value == 0.75  # 3 of the 4 (positive, negative) pairs ordered
    # confidences 0.9, 0.8, 0.7, 0.9, right 1, 0, 0, 1: |2 - 1.8| + 0.8 + 0.7 over 4 rows
    assert expected_calibration_error(p, y).value == pytest.approx(0.425, abs=1e-15)
    assert adaptive_calibration_error(p, y, n_bins=2).value == pytest.approx(0.425, abs=1e-15)
    assert brier_score([0.9, 0.2], [1, 1]).value == pytest.approx((0.01 + 0.64) / 2)
    assert log_loss([0.9, 0.2], [1, 1]).value == pytest.approx(-(math.log(0.9) + math.log(0.2)) / 2)
    three = [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]]
    # class 0: F1 1; class 1: TP 1, FP 1 -> 2/3; class 2: FN 1 -> 0
    assert macro_f1(three, [0, 1, 2]).value == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_regression_metrics_exact() -> None:
    m = regression_metrics([1.0, 2.0, 4.0, math.nan], [1.5, 2.0, 3.0, 1.0])
    assert m["mae"].value == pytest.approx(0.5) and m["mae"].n == 3
    assert m["rmse"].value == pytest.approx(math.sqrt((0.25 + 1.0) / 3))
    assert m["mae"].lower <= 0.5 <= m["mae"].upper
    assert m["rmse"].lower <= m["rmse"].value <= m["rmse"].upper
    assert math.isnan(mean_absolute_error([1.0], [2.0]).lower)  # one value: no interval
    with pytest.raises(ValueError, match="2 values but targets have 3"):
        root_mean_squared_error([1.0, 2.0], [1.0, 2.0, 3.0])


def test_mean_interval_is_student_t() -> None:
    mean, lo, hi = mean_interval(np.array([1.0, 2.0, 3.0, 4.0]))
    assert (mean, round(lo, 4), round(hi, 4)) == (2.5, 0.4457, 4.5543)


def test_per_sample_losses() -> None:
    assert per_sample_loss([0.9, 0.2, 0.7], [1, 1, 0]).tolist() == [0.0, 1.0, 1.0]
    np.testing.assert_allclose(per_sample_loss([0.9, 0.2], [1, 1], "brier"), [0.01, 0.64])
    np.testing.assert_allclose(
        per_sample_loss([[0.5, 0.25, 0.25]], [1], "log_loss"), [math.log(4.0)]
    )
    assert np.isnan(per_sample_loss([0.9, math.nan], [1, 1])).tolist() == [False, True]
    with pytest.raises(ValueError, match="kind must be one of"):
        per_sample_loss([0.5], [1], "hinge")  # type: ignore[arg-type]


# -- scikit-learn equality -----------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 10])
@pytest.mark.parametrize("n", [30, 500])
def test_equal_to_scikit_learn(k: int, n: int) -> None:
    for seed in range(3):
        p, p2, y = _random_case(k, n, seed)
        pred = p2.argmax(axis=1)
        labels = list(range(k))
        assert accuracy(p, y).value == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
        assert macro_f1(p, y).value == pytest.approx(
            skm.f1_score(y, pred, average="macro"), abs=1e-12
        )
        sk_auc = (
            skm.roc_auc_score(y, p2, multi_class="ovr", labels=labels)
            if k > 2
            else skm.roc_auc_score(y, p)
        )
        assert roc_auc(p, y).value == pytest.approx(sk_auc, abs=1e-12)
        assert brier_score(p, y).value == pytest.approx(
            skm.brier_score_loss(y, p, labels=labels), abs=1e-12
        )
        assert log_loss(p, y).value == pytest.approx(skm.log_loss(y, p2, labels=labels), abs=1e-12)
        assert expected_calibration_error(p, y).value == pytest.approx(
            _ece_loop(p2, y), abs=1e-12
        )
        assert adaptive_calibration_error(p, y).value == pytest.approx(
            _ece_loop(p2, y, adaptive=True), abs=1e-12
        )


def test_tied_scores_count_half_as_scikit_learn() -> None:
    rng = np.random.default_rng(5)
    p = rng.integers(0, 5, size=300) / 4.0
    y = rng.integers(0, 2, size=300)
    assert roc_auc(p, y).value == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)


def test_absent_classes() -> None:
    rng = np.random.default_rng(3)
    p2 = rng.dirichlet(np.ones(4), size=200)
    y = rng.choice([0, 1, 3], size=200)  # class 2 never appears in the labels
    pred = p2.argmax(axis=1)
    # macro F1 over classes in labels or predictions, as scikit-learn's default
    assert macro_f1(p2, y).value == pytest.approx(
        skm.f1_score(y, pred, average="macro"), abs=1e-12
    )
    # ROC AUC: mean one-vs-rest AUC over the classes present in the labels
    want = np.mean([skm.roc_auc_score(y == c, p2[:, c]) for c in (0, 1, 3)])
    assert roc_auc(p2, y).value == pytest.approx(want, abs=1e-12)


def test_all_in_one_equals_single_functions() -> None:
    p, _, y = _random_case(3, 300, 0)
    m = classification_metrics(p, y, n_bootstrap=50, seed=4)
    assert list(m) == list(CLASSIFICATION_METRICS)
    singles = {
        "accuracy": accuracy(p, y),
        "macro_f1": macro_f1(p, y, n_bootstrap=50, seed=4),
        "roc_auc": roc_auc(p, y, n_bootstrap=50, seed=4),
        "brier": brier_score(p, y),
        "log_loss": log_loss(p, y),
        "ece": expected_calibration_error(p, y, n_bootstrap=50, seed=4),
        "adaptive_ece": adaptive_calibration_error(p, y, n_bootstrap=50, seed=4),
    }
    for name, single in singles.items():
        assert m[name] == single, name
        assert m[name].lower <= m[name].value <= m[name].upper, name


def test_bootstrap_intervals_follow_the_seed() -> None:
    p, _, y = _random_case(2, 200, 1)
    a = roc_auc(p, y, seed=1)
    assert roc_auc(p, y, seed=1) == a
    assert roc_auc(p, y, seed=2).lower != a.lower
    # weights of a resample give the metric of the materialised resample
    w = bootstrap_counts(200, 1, seed=9)[0]
    rows = np.repeat(np.arange(200), w.astype(int))
    direct = skm.roc_auc_score(y[rows], p[rows])
    yy = (y == 1).astype(float)
    assert grouped_auc(p, (w * yy)[None], (w * (1 - yy))[None])[0] == pytest.approx(direct)


def test_percentile_interval_needs_most_resamples_defined() -> None:
    assert all(math.isnan(v) for v in percentile_interval(np.array([np.nan, np.nan, 1.0])))
    lo, hi = percentile_interval(np.array([0.0, 1.0, 2.0, np.nan]), confidence=0.5)
    assert (lo, hi) == (0.5, 1.5)


# -- edge cases a live stream produces -----------------------------------------------------------


def test_undefined_metrics_are_nan_not_errors() -> None:
    one_class = roc_auc([0.9, 0.8, 0.1], [1, 1, 1])
    assert math.isnan(one_class.value) and one_class.n == 3
    empty = classification_metrics(np.zeros((0, 3)), np.zeros(0, dtype=int))
    assert all(math.isnan(v.value) and v.n == 0 for v in empty.values())
    nothing_finite = accuracy([math.nan, math.inf], [0, 1])
    assert math.isnan(nothing_finite.value) and nothing_finite.n == 0
    assert math.isnan(roc_auc(np.full((5, 3), 1 / 3), [0, 0, 0, 0, 0]).value)


def test_rows_with_nan_are_left_out_and_counted() -> None:
    p, _, y = _random_case(3, 100, 2)
    dirty = p.copy()
    dirty[[3, 7]] = np.nan
    keep = np.ones(100, dtype=bool)
    keep[[3, 7]] = False
    m = classification_metrics(dirty, y, n_bootstrap=20)
    clean = classification_metrics(p[keep], y[keep], n_bootstrap=20)
    assert m == clean and m["accuracy"].n == 98


def test_logits_and_unnormalised_rows_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="look like logits"):
        accuracy([[2.0, -1.0, 0.5]], [0])
    with pytest.raises(ValueError, match="look like logits"):
        accuracy([1.7, -0.3], [1, 0])
    with pytest.raises(ValueError, match=r"sum to 1 .*row 1 sums to 0\.5"):
        accuracy([[0.5, 0.5], [0.25, 0.25]], [0, 1])
    # float32 outputs and 4-decimal rounding are renormalised, not rejected
    rounded = np.array([[0.3333, 0.3333, 0.3333], [0.1, 0.2, 0.7001]])
    np.testing.assert_allclose(as_probabilities(rounded).sum(axis=1), 1.0, atol=1e-15)
    # the helpers turn logits into probabilities
    np.testing.assert_allclose(softmax([[0.0, np.log(3.0)]]), [[0.25, 0.75]])
    assert accuracy(sigmoid([3.0, -2.0]), [1, 0]).value == 1.0


def test_bad_labels_and_shapes_raise() -> None:
    with pytest.raises(ValueError, match=r"0\.\.2 for 3 classes"):
        accuracy(np.full((2, 3), 1 / 3), [0, 3])
    with pytest.raises(ValueError, match="integer class indices"):
        accuracy([0.2, 0.7], [0.5, 1.0])
    with pytest.raises(ValueError, match="integer class indices"):
        accuracy([0.2, 0.7], [math.nan, 1.0])
    with pytest.raises(ValueError, match="3 rows but probabilities have 2"):
        accuracy([0.2, 0.7], [0, 1, 1])
    with pytest.raises(ValueError, match=r"\(n,\) for a binary"):
        accuracy(np.zeros((2, 2, 2)), [0, 1])
    with pytest.raises(ValueError, match="numeric"):
        accuracy(["a", "b"], [0, 1])
    with pytest.raises(ValueError, match="confidence"):
        macro_f1([0.2], [0], confidence=1.0)
    assert as_labels([1.0, 0.0], 2).tolist() == [1, 0]


def test_metric_value_is_a_float() -> None:
    m = MetricValue(0.5, 0.4, 0.6, 10)
    assert float(m) == 0.5
