"""Online detectors: mean run length at the target ERT with no drift, exact detection indices."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors import CVMDrift, CVMOnline, RffMmdOnline
from detectors.cvm_statistics import cvm_asymptotic_sf, cvm_from_counts
from detectors.ert_calibration import ert_thresholds, steady_threshold


def _mean_run_length(det, rng: np.random.Generator, runs: int, d: int) -> float:
    lengths = []
    for _ in range(runs):
        det.reset()
        while det.detection_index is None:
            det.update(rng.normal(size=(int(det.ert), d)))
        lengths.append(det.detection_index + 1)
    return float(np.mean(lengths))


def test_rff_mmd_mean_run_length_is_near_ert() -> None:
    rng = np.random.default_rng(0)
    det = RffMmdOnline(rng.normal(size=(2000, 4)), ert=100, window_size=10, seed=1)
    mean = _mean_run_length(det, rng, runs=400, d=4)
    assert 90 <= mean <= 110, mean
    assert mean == pytest.approx(GOLDEN_RFF_MEAN_RL, abs=1e-9)


def test_cvm_online_mean_run_length_is_near_ert() -> None:
    rng = np.random.default_rng(0)
    det = CVMOnline(rng.normal(size=(2000, 2)), ert=100, window_sizes=(5, 10), seed=1)
    mean = _mean_run_length(det, rng, runs=400, d=2)
    assert 90 <= mean <= 110, mean
    assert mean == pytest.approx(GOLDEN_CVM_MEAN_RL, abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("detector", ["rff", "cvm"])
def test_mean_run_length_within_ten_percent_of_ert_500(detector: str) -> None:
    rng = np.random.default_rng(10)
    d = 8
    ref = rng.normal(size=(5000, d)) @ rng.normal(size=(d, d)) / 3  # correlated columns
    mix = np.linalg.cholesky(np.cov(ref, rowvar=False))
    if detector == "rff":
        det = RffMmdOnline(ref, ert=500, window_size=50, seed=2)
    else:
        det = CVMOnline(ref, ert=500, window_sizes=(20, 50), seed=2)
    lengths = []
    for _ in range(400):
        det.reset()
        while det.detection_index is None:
            det.update(rng.normal(size=(500, d)) @ mix.T)
        lengths.append(det.detection_index + 1)
    assert 450 <= np.mean(lengths) <= 550, np.mean(lengths)


def test_golden_detection_indices_on_mean_shift() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(3000, 6))
    stream = rng.normal(size=(400, 6))
    stream[300:, :2] += 1.0
    rff = RffMmdOnline(ref, ert=1000, window_size=30, seed=0)
    cvm = CVMOnline(ref, ert=1000, window_sizes=(10, 30), seed=0)
    for row in stream:
        rff.update(row)
        cvm.update(row)
    assert (rff.detection_index, cvm.detection_index) == GOLDEN_ONLINE
    # the same rows in one batch give the same answer
    assert (
        RffMmdOnline(ref, ert=1000, window_size=30, seed=0).update(stream).detection_index
        == (GOLDEN_ONLINE[0])
    )


def test_thresholds_flat_after_the_ramp_and_per_step_before() -> None:
    rng = np.random.default_rng(0)
    det = CVMOnline(rng.normal(size=(500, 1)), ert=50, window_sizes=(4, 8), seed=0)
    thr = det.thresholds
    assert thr.shape == (17,)
    assert np.isinf(thr[:3]).all() and np.isfinite(thr[3:]).all()
    det.update(rng.normal(size=(40, 1)))
    assert det.threshold == thr[-1]


def test_steady_threshold_hits_the_hazard_on_iid_statistics() -> None:
    rng = np.random.default_rng(0)
    sims = rng.normal(size=(4000, 200))
    u = steady_threshold(sims, ert=100)
    # iid steps: the hazard is the exceedance probability, 1 - Phi(u) = 0.01
    assert stats.norm.sf(u) == pytest.approx(0.01, rel=0.05)
    thr = ert_thresholds(sims, ert=100, n_ramp=3)
    assert stats.norm.sf(thr[:3]) == pytest.approx([0.01] * 3, rel=0.25)


def test_cvm_statistic_and_p_value_equal_scipy() -> None:
    rng = np.random.default_rng(4)
    for n, m in [(300, 40), (1000, 50), (60, 60)]:
        ref = rng.normal(size=n)
        win = rng.normal(size=m) + 0.2
        counts = np.sort(np.searchsorted(np.sort(ref), win)).astype(float)
        t = cvm_from_counts(counts, n)
        want = stats.cramervonmises_2samp(ref, win, method="asymptotic")
        assert t == pytest.approx(want.statistic, abs=1e-12)
        assert abs(cvm_asymptotic_sf(t, n, m) - want.pvalue) <= 1e-9
    det = CVMDrift(ref.reshape(-1, 1), window_size=60).update(win.reshape(-1, 1))
    assert det.p_value == pytest.approx(want.pvalue, abs=1e-9)


GOLDEN_RFF_MEAN_RL = 107.7625
GOLDEN_CVM_MEAN_RL = 106.785
GOLDEN_ONLINE = (308, 327)  # shift starts at row 300
