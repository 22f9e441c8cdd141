"""Label-free estimators and calibrators: exact cases, expectations, contract, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from detectors.calibration import (
    CALIBRATIONS,
    apply_calibration,
    apply_temperature,
    fit_calibration,
    fit_temperature,
)
from detectors.expected_performance import (
    ESTIMATED_METRICS,
    _draw_labels,
    _drawn_metrics,
    _expected_values,
)
from detectors.performance_estimation import (
    ConfidenceBasedEstimator,
    ThresholdedConfidenceEstimator,
)
from detectors.performance_metrics import accuracy, macro_f1, roc_auc


def _calibrated_binary(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    return p, (rng.uniform(size=n) < p).astype(int)


def _overconfident_multiclass(n: int, seed: int, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from q; the model reports q sharpened (p ~ q^3): over-confident."""
    rng = np.random.default_rng(seed)
    q = rng.dirichlet(np.full(k, 0.7), size=n)
    y = (rng.uniform(size=(n, 1)) > np.cumsum(q, axis=1)).sum(axis=1)
    p = q**3 / (q**3).sum(axis=1, keepdims=True)
    return p, y


# -- calibrators ---------------------------------------------------------------------------------


def test_isotonic_equals_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    for n in (5, 60, 3000):
        s = np.round(rng.uniform(size=n), 2)  # ties pooled as scikit-learn pools them
        t = (rng.uniform(size=n) < s).astype(float)
        x, y = fit_calibration("isotonic", s, t)
        grid = rng.uniform(-0.2, 1.2, size=400)
        want = IsotonicRegression(out_of_bounds="clip").fit(s, t).predict(grid)
        np.testing.assert_allclose(apply_calibration("isotonic", x, y, grid), want, atol=1e-12)


def test_histogram_binning_by_hand() -> None:
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    t = np.array([0, 0, 1, 0, 1, 1, 0, 1.0])
    x, y = fit_calibration("histogram", s, t, n_bins=2)
    assert y.tolist() == [0.25, 0.75]
    out = apply_calibration("histogram", x, y, np.array([-1.0, 0.45, 0.6, 2.0]))
    assert out.tolist() == [0.25, 0.25, 0.75, 0.75]


def test_temperature_and_platt_scaling() -> None:
    p, y = _overconfident_multiclass(4000, 1)
    t = fit_temperature(p, y.astype(float))
    assert t == pytest.approx(3.0, rel=0.15)  # undoes the cube
    np.testing.assert_allclose(apply_temperature(p, t).sum(axis=1), 1.0)
    s, target = _calibrated_binary(4000, 2)
    (a, b), _ = fit_calibration("temperature", s, target.astype(float))
    assert a == pytest.approx(1.0, abs=0.15) and b == pytest.approx(0.0, abs=0.15)
    with pytest.raises(ValueError, match="calibration must be one of"):
        fit_calibration("spline", s, target.astype(float))


# -- expectations --------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 5])
def test_expected_metrics_are_the_mean_over_label_draws(k: int) -> None:
    rng = np.random.default_rng(k)
    q = rng.dirichlet(np.full(k, 0.4), size=300)
    scores = np.clip(q + rng.normal(0, 0.05, q.shape), 1e-3, None)
    scores /= scores.sum(axis=1, keepdims=True)
    pred = scores.argmax(axis=1)
    acc, f1, auc = _expected_values(q, pred, scores)
    labels = _draw_labels(q, 4000, rng)
    f1_draws, auc_draws = _drawn_metrics(labels, pred, scores, k)
    assert acc == pytest.approx((labels == pred).mean(), abs=2e-3)
    assert f1 == pytest.approx(np.nanmean(f1_draws), abs=5e-3)
    assert auc == pytest.approx(np.nanmean(auc_draws), abs=3e-3)
    # a drawn vector's metrics are the realized metrics of that labelling
    p_in = scores[:, 1] if k == 2 else scores
    assert f1_draws[0] == pytest.approx(macro_f1(p_in, labels[0]).value, abs=1e-12)
    assert auc_draws[0] == pytest.approx(roc_auc(p_in, labels[0]).value, abs=1e-12)


def test_estimates_of_a_calibrated_model_track_the_realized_metrics() -> None:
    p, y = _calibrated_binary(3000, 3)
    est = ConfidenceBasedEstimator("isotonic", seed=0).fit(p, y)
    rng = np.random.default_rng(4)
    errors = []
    for _ in range(20):
        chunk = rng.beta(0.5, 0.5, size=400)  # more confident rows than the reference
        labels = (rng.uniform(size=400) < chunk).astype(int)
        m = est.estimate(chunk)
        errors.append(m["accuracy"].value - accuracy(chunk, labels).value)
        assert m["accuracy"].lower < m["accuracy"].value < m["accuracy"].upper
        assert m["roc_auc"].lower < m["roc_auc"].value < m["roc_auc"].upper
    assert abs(np.mean(errors)) < 0.01


def test_temperature_calibration_corrects_an_overconfident_model() -> None:
    p, y = _overconfident_multiclass(3000, 5)
    chunk, labels = _overconfident_multiclass(1000, 6)
    realized = accuracy(chunk, labels).value
    naive = ConfidenceBasedEstimator("none", seed=0).fit(p, y).estimate(chunk)
    scaled = ConfidenceBasedEstimator("temperature", seed=0).fit(p, y).estimate(chunk)
    assert naive["accuracy"].value - realized > 0.08  # over-confidence shows as optimism
    assert abs(scaled["accuracy"].value - realized) < 0.03


def test_auto_calibration_picks_by_cross_validation() -> None:
    p, y = _overconfident_multiclass(2000, 7)
    auto = ConfidenceBasedEstimator("auto", seed=0).fit(p, y)
    assert auto.calibration_used in CALIBRATIONS and auto.calibration_used != "none"
    assert auto.calibration == "auto"
    again = ConfidenceBasedEstimator("auto", seed=0).fit(p, y)
    assert again.calibration_used == auto.calibration_used


# -- ATC -----------------------------------------------------------------------------------------


def test_atc_threshold_reproduces_the_reference_accuracy() -> None:
    p, y = _overconfident_multiclass(2000, 8)
    for score in ("negative_entropy", "max_confidence"):
        est = ThresholdedConfidenceEstimator(score=score, calibration="none", seed=0).fit(p, y)
        assert est.thresholded_accuracy(p) == pytest.approx(accuracy(p, y).value, abs=1e-3)
        # the estimate's expected accuracy is the thresholded accuracy
        chunk, _ = _overconfident_multiclass(500, 9)
        assert est.estimate(chunk)["accuracy"].value == pytest.approx(
            est.thresholded_accuracy(chunk), abs=1e-6
        )


def test_atc_follows_a_drop_in_confidence() -> None:
    p, y = _calibrated_binary(3000, 10)
    est = ThresholdedConfidenceEstimator(calibration="none", seed=0).fit(p, y)
    unsure = np.random.default_rng(11).uniform(0.4, 0.6, size=500)  # t is near 0.625
    assert est.thresholded_accuracy(unsure) == 0.0  # nothing passes the threshold
    m = est.estimate(unsure)
    assert m["accuracy"].value < 0.01


# -- contract and edge cases ---------------------------------------------------------------------

ESTIMATORS = [
    lambda: ConfidenceBasedEstimator("isotonic", seed=3),
    lambda: ConfidenceBasedEstimator("histogram", multiclass="top_label", seed=3),
    lambda: ConfidenceBasedEstimator("auto", seed=3),
    lambda: ThresholdedConfidenceEstimator(calibration="temperature", seed=3),
]


@pytest.mark.parametrize("make", ESTIMATORS)
@pytest.mark.parametrize("k", [2, 4])
def test_state_round_trip_and_pure_estimates(make, k: int) -> None:  # type: ignore[no-untyped-def]
    p, y = _overconfident_multiclass(500, 12, k=k)
    p_in = p[:, 1] if k == 2 else p
    est = make().fit(p_in, y)
    chunk = p_in[:100]
    first = est.estimate(chunk)
    assert list(first) == list(ESTIMATED_METRICS)
    assert est.estimate(chunk) == first  # the same chunk, the same band
    fresh = make().load_state_dict(est.state_dict())
    assert fresh.estimate(chunk) == first
    for value in est.state_dict().values():
        assert isinstance(value, (np.ndarray, int, float, str))
    other = ConfidenceBasedEstimator("isotonic", n_bins=7, seed=3)
    with pytest.raises(ValueError):
        other.load_state_dict(est.state_dict())


def test_fit_and_estimate_edge_cases() -> None:
    p, y = _overconfident_multiclass(300, 13)
    est = ConfidenceBasedEstimator(seed=0)
    with pytest.raises(RuntimeError, match="no reference"):
        est.estimate(p)
    with pytest.raises(ValueError, match="one class only"):
        est.fit(p, np.zeros(300, dtype=int))
    with pytest.raises(ValueError, match="at least 10"):
        est.fit(p[:5], y[:5])
    with pytest.raises(ValueError, match="look like logits"):
        est.fit(np.log(p), y)
    est.fit(p, y)
    assert est.n_classes == 4
    with pytest.raises(ValueError, match="3 classes but 4 were expected"):
        est.estimate(p[:, :3] / p[:, :3].sum(axis=1, keepdims=True))
    empty = est.estimate(np.zeros((0, 4)))
    assert all(math.isnan(v.value) and v.n == 0 for v in empty.values())
    dirty = p[:50].copy()
    dirty[[0, 5]] = np.nan
    assert est.estimate(dirty) == est.estimate(np.delete(p[:50], [0, 5], axis=0))
    assert est.estimate(dirty)["accuracy"].n == 48
    q = est.label_distribution(dirty)
    assert np.isnan(q[0]).all() and np.allclose(q[1:5].sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="calibration must be one of"):
        ConfidenceBasedEstimator("platt")
    with pytest.raises(ValueError, match="score must be one of"):
        ThresholdedConfidenceEstimator(score="margin")
    with pytest.raises(ValueError, match="n_draws"):
        ConfidenceBasedEstimator(n_draws=0)
