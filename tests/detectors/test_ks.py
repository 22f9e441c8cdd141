"""KSDrift: p-values equal scipy's, uniform under no drift, exact detection indices."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from detectors import KSDrift
from detectors.ks_distribution import KSPValueTable, ks_asymptotic_sf, ks_statistics


@pytest.mark.parametrize(
    ("n1", "n2"), [(40, 40), (200, 30), (30, 200), (501, 100), (7, 3), (1000, 250)]
)
def test_statistics_and_p_values_equal_scipy_ks_2samp(n1: int, n2: int) -> None:
    rng = np.random.default_rng(n1 * 1000 + n2)
    ref = rng.normal(size=(n1, 6))
    win = rng.normal(size=(n2, 6)) + np.linspace(0.0, 0.6, 6)
    ref[:5, 1] = 0.0  # ties inside and across samples
    win[:3, 1] = 0.0
    win[:, 2] = np.round(win[:, 2], 1)
    ref[:, 2] = np.round(ref[:, 2], 1)
    h = ks_statistics(np.sort(ref, axis=0), win)
    lcm = n1 * n2 // math.gcd(n1, n2)
    p = KSPValueTable(n1, n2)(h)
    for j in range(6):
        want = stats.ks_2samp(ref[:, j], win[:, j])
        assert h[j] / lcm == pytest.approx(want.statistic, abs=1e-12)
        assert abs(p[j] - want.pvalue) <= 1e-6


def test_large_samples_use_scipys_asymptotic_rule() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(10_001, 2))
    win = rng.normal(size=(300, 2)) + 0.1
    h = ks_statistics(np.sort(ref, axis=0), win)
    p = KSPValueTable(10_001, 300)(h)
    for j in range(2):
        assert abs(p[j] - stats.ks_2samp(ref[:, j], win[:, j]).pvalue) <= 1e-6
    np.testing.assert_array_equal(p, ks_asymptotic_sf(h, 10_001, 300))


def test_detector_p_values_match_scipy_per_column() -> None:
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(300, 4))
    det = KSDrift(ref, window_size=60, seed=0)
    win = rng.normal(size=(60, 4))
    det.update(win)
    want = [stats.ks_2samp(ref[:, j], win[:, j]).pvalue for j in range(4)]
    np.testing.assert_allclose(det.p_values, want, atol=1e-6, rtol=0)
    assert det.p_value == pytest.approx(min(1.0, 4 * min(want)), abs=1e-6)


def test_null_p_values_are_uniform() -> None:
    rng = np.random.default_rng(2024)
    ref = rng.normal(size=(400, 1))
    det = KSDrift(ref, window_size=50, seed=0)
    p_values = []
    for _ in range(300):
        det.update(rng.normal(size=(50, 1)))
        p_values.append(det.p_value)
    # the exact null distribution is discrete; its p-values are uniform up to the lattice
    result = stats.kstest(p_values, "uniform")
    assert result.pvalue > 0.01
    assert 0.02 <= np.mean(np.array(p_values) < 0.05) <= 0.09


def test_fdr_rejects_at_least_when_bonferroni_does() -> None:
    rng = np.random.default_rng(9)
    ref = rng.normal(size=(300, 8))
    win = rng.normal(size=(80, 8))
    win[:, :3] += 0.45
    bonf = KSDrift(ref, window_size=80, correction="bonferroni", seed=0).update(win)
    fdr = KSDrift(ref, window_size=80, correction="fdr", seed=0).update(win)
    assert fdr.p_value is not None and bonf.p_value is not None
    assert fdr.p_value <= bonf.p_value


def test_golden_detection_index_on_mean_shift() -> None:
    rng = np.random.default_rng(2)
    det = KSDrift(rng.normal(size=(500, 5)), window_size=50, test_every=5, alpha=0.01, seed=0)
    stream = rng.normal(size=(400, 5))
    stream[200:, 2] += 0.8
    for row in stream:
        det.update(row)
    assert det.detection_index == GOLDEN_KS
    assert det.n_tests == (400 - 50) // 5 + 1


GOLDEN_KS = 224  # first test whose window holds 25 shifted rows


def test_tabulated_and_tail_p_values_equal_scipy() -> None:
    rng = np.random.default_rng(8)
    ref = rng.normal(size=(2000, 3))
    win = rng.normal(size=(500, 3)) + [0.0, 0.2, 1.0]  # null, moderate, far tail
    det = KSDrift(ref, window_size=500).update(win)
    want = [stats.ks_2samp(ref[:, j], win[:, j]).pvalue for j in range(3)]
    np.testing.assert_allclose(det.p_values, want, atol=1e-6, rtol=0)
    assert det.p_values[2] < 1e-9
