"""MMDDrift: permutation p-values count the observed statistic, are uniform under no drift."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors import MMDDrift
from detectors.kernels import squared_distances
from detectors.mmd import mmd_permutation_statistics


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    k = lambda a, b: np.exp(-squared_distances(a, b) / (2 * bandwidth**2))  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * kxy.mean()
    )


def test_statistics_equal_the_direct_unbiased_estimate_for_every_split() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(700, 3)), rng.normal(size=(40, 3)) + 0.3
    perm_rng = np.random.default_rng(1)
    got = mmd_permutation_statistics(x, y, 1.3, 5, perm_rng)
    assert got[0] == pytest.approx(_unbiased_mmd2(x, y, 1.3), rel=1e-9, abs=1e-12)
    # replay the same splits directly
    pooled = np.vstack([x, y])
    picks = np.argsort(np.random.default_rng(1).random((5, 740)), axis=1)[:, :40]
    for i in range(5):
        mask = np.zeros(740, dtype=bool)
        mask[picks[i]] = True
        want = _unbiased_mmd2(pooled[~mask], pooled[mask], 1.3)
        assert got[i + 1] == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_p_value_counts_the_observed_statistic() -> None:
    rng = np.random.default_rng(0)
    det = MMDDrift(rng.normal(size=(100, 2)), window_size=30, n_permutations=19, seed=0)
    det.update(rng.normal(loc=3.0, size=(30, 2)))
    assert det.p_value == 1 / 20  # never 0: the observed split is one of the 20
    assert det.drift_detected is False  # 0.05 is not < alpha = 0.05


def test_null_p_values_are_uniform() -> None:
    rng = np.random.default_rng(7)
    det = MMDDrift(rng.normal(size=(60, 2)), window_size=20, n_permutations=49, seed=3)
    p_values = []
    for _ in range(240):
        det.update(rng.normal(size=(20, 2)))
        p_values.append(det.p_value)
    assert stats.kstest(p_values, "uniform").pvalue > 0.01
    assert 0.02 <= np.mean(np.array(p_values) < 0.05) <= 0.09


def test_median_heuristic_bandwidth_is_the_median_distance() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 2))
    det = MMDDrift(ref, window_size=10, seed=0)
    d = np.sqrt(squared_distances(ref, ref)[np.triu_indices(50, 1)])
    assert det.kernel_bandwidth == pytest.approx(float(np.median(d)), rel=1e-12)
    assert MMDDrift(ref, window_size=10, bandwidth=2.5).kernel_bandwidth == 2.5


def test_golden_detection_index_on_mean_shift() -> None:
    rng = np.random.default_rng(1)
    det = MMDDrift(rng.normal(size=(200, 4)), window_size=40, test_every=10, alpha=0.01, seed=0)
    stream = rng.normal(size=(300, 4))
    stream[150:] += 0.7
    for start in range(0, 300, 10):
        det.update(stream[start : start + 10])
    assert det.detection_index == GOLDEN_MMD


GOLDEN_MMD = 169  # the window ending at row 169 holds 20 shifted rows
