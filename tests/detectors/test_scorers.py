"""OOD scorers: reference implementations, calibration at the target FPR, OOD-rate test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special
from sklearn.covariance import LedoitWolf

from detectors import EnergyScorer, KnnScorer, MahalanobisScorer, MaxSoftmaxScorer, OODRateTest
from detectors.mahalanobis import ledoit_wolf


@pytest.mark.parametrize(("n", "d"), [(500, 5), (40, 100)])
def test_ledoit_wolf_equals_sklearn(n: int, d: int) -> None:
    x = np.random.default_rng(n).normal(size=(n, d)) @ np.diag(np.linspace(1, 3, d))
    cov, rho = ledoit_wolf(x)
    want = LedoitWolf(assume_centered=False).fit(x)
    assert rho == pytest.approx(want.shrinkage_, rel=1e-9)
    np.testing.assert_allclose(cov, want.covariance_, rtol=1e-9, atol=1e-12)


def test_mahalanobis_score_is_the_quadratic_form() -> None:
    rng = np.random.default_rng(1)
    scorer = MahalanobisScorer(rng.normal(size=(400, 3)), seed=0)
    q = rng.normal(size=(5, 3))
    diff = q - scorer._mean
    want = np.einsum("ij,jk,ik->i", diff, scorer._precision, diff)
    np.testing.assert_allclose(scorer.score(q), want, rtol=1e-12)


def test_knn_score_equals_brute_force_sorted_distances() -> None:
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(600, 6))
    scorer = KnnScorer(ref, k=7, seed=0)
    kept = scorer._reference.astype(np.float64)
    q = rng.normal(size=(300, 6))
    unit = q / np.linalg.norm(q, axis=1, keepdims=True)
    dists = np.linalg.norm(unit[:, None, :] - kept[None, :, :], axis=2)
    want = np.sort(dists, axis=1)[:, 6]
    np.testing.assert_allclose(scorer.score(q), want, atol=1e-5)


def test_logit_scores_match_their_formulas() -> None:
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0], [50.0, -50.0, 0.0]])
    energy = EnergyScorer(np.random.default_rng(0).normal(size=(50, 3)), temperature=2.0)
    np.testing.assert_allclose(energy.score(logits), -2.0 * special.logsumexp(logits / 2.0, axis=1))
    msp = MaxSoftmaxScorer(np.random.default_rng(0).normal(size=(50, 3)))
    np.testing.assert_allclose(msp.score(logits), 1.0 - special.softmax(logits, axis=1).max(axis=1))


@pytest.mark.parametrize("make", [MahalanobisScorer, KnnScorer])
def test_threshold_gives_the_target_false_positive_rate(make) -> None:
    rng = np.random.default_rng(3)
    centre = np.array([3.0, 0.0, 0.0, 0.0])  # off the origin, so directions differ too
    scorer = make(rng.normal(size=(5000, 4)) + centre, target_fpr=0.05, seed=1)
    fpr = scorer.is_ood(rng.normal(size=(20_000, 4)) + centre).mean()
    assert 0.03 <= fpr <= 0.07  # 1000 calibration rows: standard error ~0.007
    assert scorer.is_ood(rng.normal(size=(100, 4)) - centre).mean() > 0.9


def test_ood_rate_test_threshold_is_the_smallest_significant_rate() -> None:
    det = OODRateTest(
        MahalanobisScorer(seed=0),
        np.random.default_rng(4).normal(size=(500, 2)),
        window_size=100,
        alpha=0.05,
    )
    # P(Binomial(100, 0.05) >= 10) = 0.028 < 0.05 <= P(>= 9) = 0.063
    assert det.threshold == 0.10


def test_ood_rate_golden_index() -> None:
    rng = np.random.default_rng(5)
    det = OODRateTest(
        MahalanobisScorer(seed=0),
        rng.normal(size=(4000, 3)),
        window_size=50,
        test_every=10,
        alpha=0.01,
    )
    stream = rng.normal(size=(400, 3))
    stream[200:] *= 1.6
    for start in range(0, 400, 10):
        det.update(stream[start : start + 10])
    assert det.detection_index == GOLDEN_OOD_RATE


def test_scorer_held_out_state_survives_a_round_trip_in_the_rate_test() -> None:
    rng = np.random.default_rng(6)
    det = OODRateTest(KnnScorer(k=3, seed=0), rng.normal(size=(200, 2)), window_size=20)
    state = det.state_dict()
    assert "scorer._reference" in state
    fresh = OODRateTest(KnnScorer(k=3, seed=0), window_size=20).load_state_dict(state)
    batch = rng.normal(size=(40, 2))
    assert fresh.update(batch).p_value == det.update(batch).p_value
    with pytest.raises(ValueError, match="settings"):
        OODRateTest(KnnScorer(k=4, seed=0), window_size=20).load_state_dict(state)


GOLDEN_OOD_RATE = 239  # scale change at 200
