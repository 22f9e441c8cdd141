"""The performance degradation test: exact p-values, threshold semantics, false-alarm rate."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors.performance_degradation import PerformanceDegradationTest


def test_zero_one_p_value_is_the_beta_binomial_predictive_tail() -> None:
    ref = np.r_[np.ones(30), np.zeros(270)]  # 30 errors in 300 rows
    det = PerformanceDegradationTest(ref, window_size=50)
    window = np.r_[np.ones(11), np.zeros(39)]
    det.update(window)
    want = stats.betabinom.sf(10, 50, 31, 271)
    assert det.p_value == pytest.approx(want, rel=1e-12)
    assert det.score == 11 / 50
    assert det.drift_detected == (want < 0.05)
    # the threshold is the largest error rate the test lets pass
    sf = stats.betabinom.sf(np.arange(51) - 1, 50, 31, 271)
    first = int(np.flatnonzero(sf < 0.05)[0])
    assert det.threshold == (first - 1) / 50


def test_score_above_threshold_exactly_when_it_signals() -> None:
    rng = np.random.default_rng(0)
    det = PerformanceDegradationTest((rng.random(1000) < 0.1).astype(float), window_size=40)
    for rate in np.linspace(0.0, 0.5, 30):
        det.update((rng.random(40) < rate).astype(float))
        assert det.drift_detected == (det.score > det.threshold)


def test_continuous_loss_is_welch_one_sided() -> None:
    rng = np.random.default_rng(1)
    ref = rng.exponential(0.3, size=500)
    window = rng.exponential(0.36, size=100)
    det = PerformanceDegradationTest(ref, loss="continuous", window_size=100).update(window)
    want = stats.ttest_ind(window, ref, equal_var=False, alternative="greater")
    assert det.score == pytest.approx(want.statistic, rel=1e-10)
    assert det.p_value == pytest.approx(want.pvalue, rel=1e-10)
    assert det.drift_detected == (det.score > det.threshold)


def test_values_other_than_zero_and_one_are_rejected_and_counted() -> None:
    det = PerformanceDegradationTest(np.r_[np.ones(5), np.zeros(45)], window_size=10)
    det.update([0.0, 1.0, 0.5, 2.0, np.nan, 0.0])
    assert (det.n_seen, det.rejected) == (3, 3)
    with pytest.raises(ValueError, match="must be 0 or 1"):
        PerformanceDegradationTest([0.0, 0.3, 1.0])
    with pytest.raises(ValueError, match="at least 2"):
        PerformanceDegradationTest([1.0])


def test_a_perfect_reference_still_gives_a_usable_test() -> None:
    det = PerformanceDegradationTest(np.zeros(500), window_size=100)
    det.update(np.zeros(100))
    assert not det.drift_detected
    det.update(np.r_[np.ones(5), np.zeros(95)])
    assert det.drift_detected


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["zero_one", "continuous"])
def test_false_alarm_rate_with_no_change_is_at_most_alpha(loss: str) -> None:
    alpha, runs, tests, window = 0.05, 400, 10, 200
    signalled = 0
    for r in range(runs):
        rng = np.random.default_rng(r)

        def draw(n: int, rng: np.random.Generator = rng) -> np.ndarray:
            if loss == "zero_one":
                return (rng.random(n) < 0.1).astype(float)
            return rng.lognormal(-1.5, 1.0, size=n)

        det = PerformanceDegradationTest(draw(2000), loss=loss, window_size=window, alpha=alpha)
        for _ in range(tests):
            signalled += int(det.update(draw(window)).drift_detected)
    rate = signalled / (runs * tests)
    se = np.sqrt(alpha * (1 - alpha) / (runs * tests))
    assert rate <= alpha + 3 * se
