"""The paired regression test: does the current version get more probes wrong than the baseline?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class RegressionVerdict:
    """The outcome of comparing a version's per-probe correctness with the baseline's."""

    regression: bool
    p_value: float
    accuracy: float
    baseline_accuracy: float
    newly_wrong: int
    """Probes the baseline got right and the current version gets wrong (McNemar's b)."""
    newly_right: int
    """Probes the baseline got wrong and the current version gets right (McNemar's c)."""


def paired_regression(
    current_correct: np.ndarray,
    baseline_correct: np.ndarray,
    *,
    alpha: float,
    min_accuracy_drop: float,
) -> RegressionVerdict:
    """One-sided exact McNemar test on discordant pairs, plus a minimum accuracy drop.

    Under "no change" each discordant probe is equally likely to go either way, so
    b ~ Binomial(b + c, 1/2); a regression needs p < alpha and a drop of at least
    `min_accuracy_drop`, so a large suite does not flag a negligible but significant change.
    """
    current = np.asarray(current_correct, dtype=bool)
    baseline = np.asarray(baseline_correct, dtype=bool)
    if current.shape != baseline.shape or current.ndim != 1:
        raise ValueError(
            "paired results must be 1-D and the same length, "
            f"got {current.shape} and {baseline.shape}"
        )
    if len(current) == 0:
        raise ValueError("paired results are empty")
    b = int(np.sum(baseline & ~current))
    c = int(np.sum(~baseline & current))
    p_value = (
        1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue)
    )
    accuracy = float(current.mean())
    baseline_accuracy = float(baseline.mean())
    drop = baseline_accuracy - accuracy
    return RegressionVerdict(
        regression=bool(p_value < alpha and drop >= min_accuracy_drop),
        p_value=p_value,
        accuracy=accuracy,
        baseline_accuracy=baseline_accuracy,
        newly_wrong=b,
        newly_right=c,
    )
