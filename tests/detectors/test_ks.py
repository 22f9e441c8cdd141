"""KSDrift: p-values equal scipy's, uniform under no drift, exact detection indices."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from detectors import BBSDDrift, KSDrift
from detectors.bbsd import softmax
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


@pytest.mark.parametrize(("n1", "n2"), [(300, 70), (70, 300), (1, 5), (5, 1)])
def test_tie_free_statistics_equal_scipy_including_values_outside_the_reference(
    n1: int, n2: int
) -> None:
    # no ties anywhere takes the one-pass path; the shifts put window values below and above
    # every reference value
    rng = np.random.default_rng(n1 + 7 * n2)
    ref = rng.normal(size=(n1, 5))
    win = rng.normal(size=(n2, 5)) * np.array([1.0, 0.2, 5.0, 1.0, 1.0]) + [0.0, 0, 0, 9, -9]
    h = ks_statistics(np.sort(ref, axis=0), win)
    lcm = n1 * n2 // math.gcd(n1, n2)
    for j in range(5):
        want = stats.ks_2samp(ref[:, j], win[:, j]).statistic
        assert h[j] / lcm == pytest.approx(want, abs=1e-12)


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


def _tied_samples(n1: int, n2: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (n1, 6) and (n2, 6) samples, shifted per column, with ties in two columns."""
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(n1, 6))
    win = rng.normal(size=(n2, 6)) + np.linspace(0.0, 0.7, 6)
    ref[:5, 1] = 0.0
    win[:3, 1] = 0.0
    ref[:, 2] = np.round(ref[:, 2], 1)
    win[:, 2] = np.round(win[:, 2], 1)
    return ref, win


@pytest.mark.parametrize("method", ["asymp", "exact"])
@pytest.mark.parametrize(
    ("n1", "n2"), [(40, 40), (200, 30), (30, 200), (501, 100), (7, 3), (2000, 500), (12_000, 50)]
)
def test_method_p_values_equal_scipy_ks_2samp_with_that_method(
    method: str, n1: int, n2: int
) -> None:
    ref, win = _tied_samples(n1, n2, n1 + 7 * n2)
    det = KSDrift(ref, window_size=n2, method=method, seed=0).update(win)  # type: ignore[arg-type]
    want = [stats.ks_2samp(ref[:, j], win[:, j], method=method) for j in range(6)]
    np.testing.assert_allclose(det.statistics, [w.statistic for w in want], atol=1e-12, rtol=0)
    assert np.abs(det.p_values - [w.pvalue for w in want]).max() <= 1e-6


def test_asymp_differs_from_default_where_scipy_does() -> None:
    ref, win = _tied_samples(300, 60, 11)
    asymp = KSDrift(ref, window_size=60, method="asymp").update(win).p_values
    auto = KSDrift(ref, window_size=60).update(win).p_values
    exact = KSDrift(ref, window_size=60, method="exact").update(win).p_values
    np.testing.assert_array_equal(auto, exact)  # 300 and 60 rows: "auto" is exact
    assert np.abs(asymp - auto).max() > 1e-4


def test_exact_beyond_auto_limit_is_still_exact() -> None:
    ref, win = _tied_samples(10_010, 20, 4)
    exact = KSDrift(ref, window_size=20, method="exact").update(win).p_values
    auto = KSDrift(ref, window_size=20).update(win).p_values
    np.testing.assert_array_equal(auto, KSDrift(ref, 20, method="asymp").update(win).p_values)
    assert np.abs(exact - auto).max() > 1e-4


def test_method_is_validated_with_the_valid_values() -> None:
    with pytest.raises(ValueError) as excinfo:
        KSDrift(window_size=10, method="asymptotic")  # type: ignore[arg-type]
    assert str(excinfo.value) == (
        "method must be one of ['auto', 'exact', 'asymp'], got 'asymptotic'"
    )
    with pytest.raises(ValueError, match="method must be one of"):
        KSPValueTable(10, 10, "approx")


def test_method_is_a_stored_param_and_round_trips_in_state() -> None:
    ref, win = _tied_samples(200, 40, 5)
    det = KSDrift(ref, window_size=40, method="asymp", seed=0).update(win)
    assert det.method == "asymp"
    assert "method='asymp'" in repr(det)
    state = det.state_dict()
    assert "('method', 'asymp')" in str(state["params"])
    clone = KSDrift(window_size=40, method="asymp", seed=0).load_state_dict(state)
    more = _tied_samples(200, 40, 6)[1]
    det.update(more)
    clone.update(more)
    np.testing.assert_array_equal(clone.p_values, det.p_values)
    assert (clone.score, clone.threshold, clone.p_value) == (det.score, det.threshold, det.p_value)
    with pytest.raises(ValueError, match="other settings"):
        KSDrift(window_size=40, seed=0).load_state_dict(state)


@pytest.mark.parametrize("correction", ["bonferroni", "fdr"])
def test_asymp_threshold_agrees_with_the_decision(correction: str) -> None:
    rng = np.random.default_rng(17)
    ref = rng.normal(size=(300, 6))
    det = KSDrift(ref, window_size=40, test_every=5, method="asymp", correction=correction)
    shift = np.zeros(6)
    decisions = []
    for step in range(80):
        if step == 30:
            shift[:2] = 0.6
        det.update(rng.normal(size=(5, 6)) + shift)
        if det.threshold is None:
            continue
        assert det.score is not None
        assert det.drift_detected == (det.score > det.threshold)
        decisions.append(det.drift_detected)
        # the critical statistic is the largest lattice D the cut accepts
        lcm = 300 * 40 // math.gcd(300, 40)
        h = round(det.threshold * lcm)
        sf = ks_asymptotic_sf(np.array([h, h + 1]), 300, 40)
        assert sf[0] * 6 >= det.alpha > sf[1] * 6 or correction == "fdr"
    assert True in decisions and False in decisions


def test_bbsd_passes_method_through() -> None:
    rng = np.random.default_rng(21)
    ref = rng.normal(size=(200, 3))
    win = rng.normal(size=(50, 3)) + [0.5, 0.0, 0.0]
    det = BBSDDrift(ref, window_size=50, input="logits", method="asymp").update(win)
    assert det.method == "asymp"
    p_ref, p_win = softmax(ref), softmax(win)
    want = [stats.ks_2samp(p_ref[:, j], p_win[:, j], method="asymp").pvalue for j in range(3)]
    assert np.abs(det.p_values - want).max() <= 1e-6
