"""Chi-squared, BBSD and PCA-reconstruction detectors: reference values and golden indices."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors import BBSDDrift, ChiSquareDrift, KSDrift, PCAReconstructionDrift
from detectors.bbsd import softmax


def test_chi_square_p_values_equal_scipy_contingency() -> None:
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 5, size=(400, 2)).astype(float)
    ref[:, 1] = np.minimum(ref[:, 1], 3)  # category 4 never seen in column 1
    win = rng.choice(5, p=[0.3, 0.3, 0.2, 0.1, 0.1], size=(80, 2)).astype(float)
    win[:, 1] = np.minimum(win[:, 1], 3)
    det = ChiSquareDrift(ref, n_categories=5, window_size=80, correction="fdr").update(win)
    for j in range(2):
        table = np.stack(
            [
                np.bincount(ref[:, j].astype(int), minlength=5),
                np.bincount(win[:, j].astype(int), minlength=5),
            ]
        )
        table = table[:, table.sum(axis=0) > 0]
        want = stats.chi2_contingency(table, correction=False).pvalue
        assert det.p_values[j] == pytest.approx(want, abs=1e-12)


def test_chi_square_rejects_codes_outside_the_range() -> None:
    det = ChiSquareDrift(np.zeros((10, 1)) + [[0], [1]] * 5, n_categories=2, window_size=4)
    det.update(np.array([[0.0], [1.5], [2.0], [-1.0], [1.0]]))
    assert (det.rejected, det.n_seen) == (3, 2)


def test_chi_square_golden_index_on_label_shift() -> None:
    rng = np.random.default_rng(1)
    det = ChiSquareDrift(
        rng.integers(0, 10, size=(2000, 1)), n_categories=10, window_size=100, test_every=20
    )
    stream = rng.integers(0, 10, size=(600, 1))
    stream[300:, 0] = rng.choice(10, p=[0.28] + [0.08] * 9, size=300)
    for start in range(0, 600, 20):
        det.update(stream[start : start + 20])
    assert det.detection_index == GOLDEN_CHI2


def test_bbsd_equals_ks_on_softmax_outputs() -> None:
    rng = np.random.default_rng(2)
    ref_logits = rng.normal(size=(300, 4))
    win_logits = rng.normal(size=(50, 4)) + [0.8, 0, 0, 0]
    bbsd = BBSDDrift(ref_logits, window_size=50, input="logits").update(win_logits)
    ks = KSDrift(softmax(ref_logits), window_size=50).update(softmax(win_logits))
    np.testing.assert_array_equal(bbsd.p_values, ks.p_values)
    assert bbsd.p_value == ks.p_value
    probs = softmax(np.array([[1000.0, 0.0], [np.inf, 0.0]]))
    assert probs[0].tolist() == [1.0, 0.0] and np.isnan(probs[1]).all()


def test_pca_reconstruction_keeps_the_variance_share_and_catches_a_correlation_flip() -> None:
    rng = np.random.default_rng(3)
    cov = np.full((4, 4), 0.8) + 0.2 * np.eye(4)
    det = PCAReconstructionDrift(rng.multivariate_normal(np.zeros(4), cov, 3000), window_size=50)
    assert det.n_components == 1  # the first component explains 85 % > 65 %
    assert det.lower_threshold < det.threshold
    flipped = cov.copy()
    flipped[0, 1:] = flipped[1:, 0] = -0.8
    stream = np.vstack(
        [
            rng.multivariate_normal(np.zeros(4), cov, 300),
            rng.multivariate_normal(np.zeros(4), flipped, 200),
        ]
    )
    for start in range(0, 500, 25):
        det.update(stream[start : start + 25])
    # per-column marginals are unchanged, so KS sees nothing; PCA does
    assert det.detection_index == GOLDEN_PCA


GOLDEN_CHI2 = 359  # shift at 300; the window ending at 359 holds 60 shifted rows
GOLDEN_PCA = 349  # flip at 300: first window (300-349) fully flipped
