from __future__ import annotations

import numpy as np
import pytest

from service.probes.regression import paired_regression


def test_ten_newly_wrong_and_none_newly_right_is_significant() -> None:
    baseline = np.ones(100, dtype=bool)
    current = baseline.copy()
    current[:10] = False
    verdict = paired_regression(current, baseline, alpha=0.01, min_accuracy_drop=0.02)
    assert verdict.newly_wrong == 10 and verdict.newly_right == 0
    assert verdict.p_value == 0.5**10
    assert verdict.accuracy == 0.9 and verdict.baseline_accuracy == 1.0
    assert verdict.regression is True


def test_significant_but_small_drop_is_not_a_regression() -> None:
    baseline = np.ones(10000, dtype=bool)
    current = baseline.copy()
    current[:15] = False  # p = 2^-15, but a drop of 0.15 %
    verdict = paired_regression(current, baseline, alpha=0.01, min_accuracy_drop=0.02)
    assert verdict.p_value == 0.5**15
    assert verdict.regression is False


def test_balanced_discordance_is_not_significant() -> None:
    baseline = np.array([True] * 6 + [False] * 6 + [True] * 8)
    current = np.array([False] * 6 + [True] * 6 + [True] * 8)
    verdict = paired_regression(current, baseline, alpha=0.05, min_accuracy_drop=0.0)
    assert verdict.newly_wrong == 6 and verdict.newly_right == 6
    # P(X >= 6) for X ~ Binomial(12, 1/2) = 1 - (1 + 12 + 66 + 220 + 495 + 792) / 4096.
    assert verdict.p_value == pytest.approx(2510 / 4096, rel=1e-12)
    assert verdict.regression is False


def test_identical_results_have_p_one() -> None:
    same = np.array([True, False, True])
    verdict = paired_regression(same, same, alpha=0.05, min_accuracy_drop=0.0)
    assert verdict.p_value == 1.0 and verdict.regression is False


def test_unpaired_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match=r"same length, got \(3,\) and \(4,\)"):
        paired_regression(np.ones(3, bool), np.ones(4, bool), alpha=0.05, min_accuracy_drop=0.0)
