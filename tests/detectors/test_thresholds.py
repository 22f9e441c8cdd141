"""Windowed two-sample tests: `threshold` is the critical value of `score` at `alpha`.

For each test over seeded streams of undrifted and drifted windows,
``drift_detected == (score > threshold)`` must hold exactly, and thresholds must equal a
computation independent of the detector (scipy's distributions, an exact lattice-path
count, the published limiting Cramér-von Mises quantiles, replayed permutations).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy import stats

from detectors import BBSDDrift, ChiSquareDrift, CVMDrift, KSDrift, MMDDrift
from detectors.critical_values import largest_accepted_float, largest_accepted_int
from detectors.cvm_statistics import cvm_asymptotic_sf, cvm_null_moments
from detectors.mmd import mmd_permutation_statistics
from detectors.multiple_testing import cut_rank, rejected_at_rank


def _replay(det: Any, windows: list[np.ndarray]) -> list[tuple[bool, float, float]]:
    """(drift_detected, score, threshold) after each window (one test per window)."""
    seen = []
    for window in windows:
        det.update(window)
        assert det.score is not None and det.threshold is not None
        seen.append((det.drift_detected, det.score, det.threshold))
    return seen


def _gauss_windows(rng: np.random.Generator, n: int, d: int, w: int, top: float) -> list[Any]:
    """Windows whose first column is shifted by 0 .. `top` (half of them unshifted)."""
    shifts = np.concatenate([np.zeros(n // 2), np.linspace(0.0, top, n - n // 2)])
    out = []
    for s in rng.permutation(shifts):
        x = rng.normal(size=(w, d))
        x[:, 0] += s
        out.append(x)
    return out


def _assert_decides_like_threshold(seen: list[tuple[bool, float, float]]) -> None:
    detected = [drift for drift, _, _ in seen]
    assert detected == [score > threshold for _, score, threshold in seen]
    # both outcomes occur, so the equivalence is tested from both sides
    assert 0 < sum(detected) < len(detected)


CASES: dict[str, Callable[[np.random.Generator], tuple[Any, list[np.ndarray]]]] = {
    "ks-bonferroni": lambda r: (
        KSDrift(r.normal(size=(300, 3)), window_size=40, seed=0),
        _gauss_windows(r, 60, 3, 40, 1.0),
    ),
    "ks-fdr": lambda r: (
        KSDrift(r.normal(size=(300, 4)), window_size=40, correction="fdr", seed=0),
        _gauss_windows(r, 60, 4, 40, 1.0),
    ),
    "bbsd": lambda r: (
        BBSDDrift(r.normal(size=(300, 3)), window_size=40, input="logits", seed=0),
        _gauss_windows(r, 60, 3, 40, 1.5),
    ),
    "cvm-bonferroni": lambda r: (
        CVMDrift(r.normal(size=(300, 3)), window_size=40, seed=0),
        _gauss_windows(r, 60, 3, 40, 1.0),
    ),
    "cvm-fdr": lambda r: (
        CVMDrift(r.normal(size=(300, 4)), window_size=40, correction="fdr", seed=0),
        _gauss_windows(r, 60, 4, 40, 1.0),
    ),
    "mmd": lambda r: (
        MMDDrift(r.normal(size=(80, 2)), window_size=20, n_permutations=40, seed=0),
        _gauss_windows(r, 40, 2, 20, 1.5),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_score_above_threshold_exactly_when_drift_is_signalled(name: str) -> None:
    det, windows = CASES[name](np.random.default_rng(11))
    assert det.threshold is None  # no test yet
    _assert_decides_like_threshold(_replay(det, windows))
    det.reset()
    assert det.threshold is None


@pytest.mark.parametrize("correction", ["bonferroni", "fdr"])
def test_chi_square_score_above_threshold_exactly_when_drift_is_signalled(
    correction: str,
) -> None:
    rng = np.random.default_rng(12)
    det = ChiSquareDrift(
        rng.integers(0, 4, size=(400, 3)), n_categories=4, window_size=60, correction=correction
    )
    assert det.threshold is None
    windows = []
    for lean in rng.permutation(np.concatenate([np.zeros(30), np.linspace(0.0, 0.2, 30)])):
        x = rng.integers(0, 4, size=(60, 3))
        x[:, 1] = rng.choice(4, p=[0.25 + lean, 0.25, 0.25, 0.25 - lean], size=60)
        windows.append(x)
    _assert_decides_like_threshold(_replay(det, windows))


# -- thresholds against independent computations ------------------------------------------


def _exact_ks_sf(h: int, n1: int, n2: int) -> float:
    """P(D >= h / lcm) by counting lattice paths that stay strictly inside the band."""
    g = math.gcd(n1, n2)
    inside = [[0] * (n2 + 1) for _ in range(n1 + 1)]
    for x in range(n1 + 1):
        for y in range(n2 + 1):
            if abs(x * n2 - y * n1) >= h * g:
                continue
            if x == 0 and y == 0:
                inside[x][y] = 1
            else:
                inside[x][y] = (inside[x - 1][y] if x else 0) + (inside[x][y - 1] if y else 0)
    return 1.0 - inside[n1][n2] / math.comb(n1 + n2, n1)


@pytest.mark.parametrize(("n1", "n2", "d", "alpha"), [(60, 20, 2, 0.05), (45, 30, 3, 0.1)])
def test_ks_threshold_is_the_largest_exact_statistic_not_rejected(
    n1: int, n2: int, d: int, alpha: float
) -> None:
    rng = np.random.default_rng(n1 + n2)
    ref, win = rng.normal(size=(n1, d)), rng.normal(size=(n2, d))
    win[:, 0] += 0.9  # a column near the critical value
    det = KSDrift(ref, window_size=n2, alpha=alpha, seed=0).update(win)
    lcm = n1 * n2 // math.gcd(n1, n2)
    level = alpha / d
    accepted = [h for h in range(lcm + 1) if _exact_ks_sf(h, n1, n2) >= level]
    assert det.threshold == max(accepted) / lcm
    assert _exact_ks_sf(max(accepted) + 1, n1, n2) < level
    # each column's scipy p-value is below the level exactly when its D is above threshold
    for j in range(d):
        result = stats.ks_2samp(ref[:, j], win[:, j])
        assert (result.pvalue < level) == (result.statistic > det.threshold)


def test_ks_threshold_in_the_asymptotic_regime_matches_kstwo() -> None:
    rng = np.random.default_rng(4)
    n1, n2, d, alpha = 10_001, 400, 3, 0.05
    det = KSDrift(rng.normal(size=(n1, d)), window_size=n2, alpha=alpha)
    det.update(rng.normal(size=(n2, d)))
    en = round(n1 * n2 / (n1 + n2))
    lcm = n1 * n2 // math.gcd(n1, n2)
    threshold = det.threshold
    assert threshold is not None
    assert stats.kstwo.sf(threshold, en) >= alpha / d > stats.kstwo.sf(threshold + 1 / lcm, en)
    assert abs(threshold - stats.kstwo.isf(alpha / d, en)) <= 1 / lcm


def test_fdr_threshold_sits_at_the_benjamini_hochberg_cut() -> None:
    rng = np.random.default_rng(21)
    n1, n2, d, alpha = 60, 20, 4, 0.1
    det = KSDrift(rng.normal(size=(n1, d)), window_size=n2, alpha=alpha, correction="fdr")
    win = rng.normal(size=(n2, d)) + [1.2, 0.9, 0.0, 0.0]
    det.update(win)
    rejected = stats.false_discovery_control(det.p_values) < alpha
    rank = int(rejected.sum())
    assert rank == 2 and det.drift_detected
    lcm = n1 * n2 // math.gcd(n1, n2)
    level = alpha * rank / d
    accepted = [h for h in range(lcm + 1) if _exact_ks_sf(h, n1, n2) >= level]
    assert det.threshold == max(accepted) / lcm
    assert det.threshold < det.critical_statistic(n2, 1)  # a looser cut than Bonferroni's


def test_bbsd_threshold_equals_ks_on_probabilities() -> None:
    rng = np.random.default_rng(2)
    ref, win = rng.normal(size=(300, 4)), rng.normal(size=(50, 4)) + [0.8, 0, 0, 0]
    bbsd = BBSDDrift(ref, window_size=50, input="logits").update(win)
    from detectors.bbsd import softmax

    ks = KSDrift(softmax(ref), window_size=50).update(softmax(win))
    assert bbsd.threshold == ks.threshold
    assert bbsd.score == ks.score


# Limiting Cramér-von Mises distribution: upper 10 %, 5 % and 1 % points (Anderson and
# Darling 1952, Table 1; Csörgő and Faraway 1996).
CVM_QUANTILES = {0.10: 0.34730, 0.05: 0.46136, 0.01: 0.74346}


@pytest.mark.parametrize(
    ("alpha", "d", "level"), [(0.05, 1, 0.05), (0.1, 2, 0.05), (0.03, 3, 0.01)]
)
def test_cvm_threshold_is_the_limiting_quantile(alpha: float, d: int, level: float) -> None:
    rng = np.random.default_rng(5)
    n_ref, m = 500, 100
    det = CVMDrift(rng.normal(size=(n_ref, d)), window_size=m, alpha=alpha)
    det.update(rng.normal(size=(m, d)))
    threshold = det.threshold
    assert threshold is not None
    mean, sd = cvm_null_moments(n_ref, m)
    standardised = (threshold - mean) / (math.sqrt(45.0) * sd) + 1.0 / 6.0
    assert standardised == pytest.approx(CVM_QUANTILES[level], abs=1e-5)
    # the largest float the cut accepts: the next float up is rejected
    sf = cvm_asymptotic_sf(np.array([threshold, np.nextafter(threshold, np.inf)]), n_ref, m)
    assert sf[0] * d >= alpha > sf[1] * d
    assert sf[0] == pytest.approx(alpha / d, abs=1e-9)


def test_cvm_decision_matches_scipy_p_values() -> None:
    rng = np.random.default_rng(6)
    ref = rng.normal(size=(200, 2))
    det = CVMDrift(ref, window_size=50)
    for window in _gauss_windows(rng, 30, 2, 50, 1.0):
        det.update(window)
        p = [
            stats.cramervonmises_2samp(ref[:, j], window[:, j], method="asymptotic").pvalue
            for j in range(2)
        ]
        assert (min(1.0, 2 * min(p)) < 0.05) == (det.score > det.threshold)


def test_chi_square_threshold_equals_chi2_isf_at_the_cut_level() -> None:
    rng = np.random.default_rng(7)
    det = ChiSquareDrift(rng.integers(0, 5, size=(500, 2)), n_categories=5, window_size=80)
    det.update(rng.integers(0, 5, size=(80, 2)))
    assert det.threshold == pytest.approx(stats.chi2.isf(0.05 / 2, 4), rel=1e-9)
    assert det.critical_statistic(2, 1) == pytest.approx(stats.chi2.isf(0.025, 2), rel=1e-9)
    assert det.critical_statistic(0) == math.inf


def test_chi_square_score_is_the_most_significant_columns_statistic() -> None:
    # column 0 uses 2 categories (dof 1), column 1 all 6 (dof 5): a smaller statistic with
    # fewer degrees of freedom can be the more significant one
    ref = np.stack([np.repeat([0, 1], 300), np.repeat(np.arange(6), 100)], axis=1)
    win = np.stack(
        [np.repeat([0, 1], [66, 34]), np.repeat(np.arange(6), [27, 9, 20, 14, 18, 12])], axis=1
    )
    det = ChiSquareDrift(ref, n_categories=6, window_size=100).update(win)
    top = int(np.argmin(det.p_values))
    assert top == 0 and det.statistics[1] > det.statistics[0]
    assert det.score == det.statistics[0]
    assert det.threshold == pytest.approx(stats.chi2.isf(0.05 / 2, 1), rel=1e-9)
    assert det.drift_detected == (det.score > det.threshold)


@pytest.mark.parametrize(
    ("n_permutations", "alpha", "k"), [(100, 0.05, 5), (99, 0.05, 4), (40, 0.1, 4)]
)
def test_mmd_threshold_is_the_kth_largest_permuted_statistic(
    n_permutations: int, alpha: float, k: int
) -> None:
    rng = np.random.default_rng(9)
    ref = rng.normal(size=(60, 2))
    det = MMDDrift(ref, window_size=20, alpha=alpha, n_permutations=n_permutations, seed=3)
    assert det.critical_rank() == k
    for test, shift in enumerate([0.0, 0.4, 0.8, 1.6]):
        window = rng.normal(size=(20, 2)) + shift
        det.update(window)
        replayed = mmd_permutation_statistics(
            ref, window, det.kernel_bandwidth, n_permutations, np.random.default_rng([3, 1, test])
        )
        assert det.score == replayed[0]
        assert det.threshold == np.sort(replayed[1:])[-k]
        n_at_least = int((replayed[1:] >= replayed[0]).sum())
        assert det.p_value == (1 + n_at_least) / (1 + n_permutations)
        assert det.drift_detected == (det.score > det.threshold)


def test_mmd_threshold_is_inf_when_no_p_value_can_fall_below_alpha() -> None:
    rng = np.random.default_rng(0)
    det = MMDDrift(rng.normal(size=(100, 2)), window_size=30, n_permutations=19, seed=0)
    det.update(rng.normal(loc=3.0, size=(30, 2)))
    assert det.critical_rank() == 0
    assert det.threshold == math.inf and det.drift_detected is False


def test_threshold_survives_a_state_round_trip() -> None:
    rng = np.random.default_rng(10)
    det = KSDrift(rng.normal(size=(200, 2)), window_size=30, correction="fdr")
    det.update(rng.normal(size=(30, 2)) + 1.0)
    fresh = KSDrift(window_size=30, correction="fdr").load_state_dict(det.state_dict())
    assert fresh.threshold == det.threshold and fresh.score == det.score


# -- the building blocks ------------------------------------------------------------------


def test_cut_rank_is_one_for_bonferroni_and_the_bh_cut_for_fdr() -> None:
    p = np.array([0.001, 0.2, 0.012, 0.031, 0.9])
    assert cut_rank(p, "bonferroni", 0.05) == 1
    # BH at 0.05 over 5: 0.001 < 0.01, 0.012 < 0.02, 0.031 > 0.03, 0.2 > 0.04
    assert cut_rank(p, "fdr", 0.05) == 2
    assert cut_rank(p, "fdr", 0.0001) == 1  # nothing rejected
    assert cut_rank(p, "fdr", 0.06) == 3  # 0.031 < 0.036
    np.testing.assert_array_equal(
        rejected_at_rank(p, 5, 2, 0.05), [True, False, True, False, False]
    )
    with pytest.raises(ValueError, match="correction"):
        cut_rank(p, "holm", 0.05)


def test_integer_search_finds_the_last_accepted_value() -> None:
    calls: list[int] = []

    def rejects(h: np.ndarray) -> np.ndarray:
        calls.append(h.size)
        return np.asarray(h > 123_456)

    assert largest_accepted_int(rejects, 10**7) == 123_456
    assert len(calls) <= 6  # 32 candidates per call
    assert largest_accepted_int(lambda h: np.asarray(h > 50), 40) == 40  # never rejected
    assert largest_accepted_int(lambda h: np.asarray(h > 0), 1) == 0


def test_float_search_stops_at_adjacent_floats() -> None:
    t = largest_accepted_float(lambda x: x > math.pi, 0.0, 1.0)
    assert t == math.pi
    assert largest_accepted_float(lambda x: False, 0.0, 1.0) == math.inf
    with pytest.raises(ValueError, match="accepted"):
        largest_accepted_float(lambda x: True, 0.0, 1.0)
