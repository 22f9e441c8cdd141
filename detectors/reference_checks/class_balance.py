"""Class balance of a reference's predicted or true classes against the expected priors.

A capture during an incident or a biased export shifts the class mix; the drift detectors
then compare traffic with the wrong mix. A chi-squared goodness-of-fit test gives the
p-value, and the total variation distance the size of the imbalance: with 100,000 rows a
test alone calls 0.5 % of imbalance significant, so both must pass their limit to flag.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from detectors.base import FloatArray
from detectors.reference_checks.findings import CheckResult, build_result

PREDICTED_CHECK = "class_balance_predicted"
LABELS_CHECK = "class_balance_labels"


def class_balance(
    classes: NDArray[np.int64],
    priors: FloatArray | None,
    *,
    n_classes: int,
    check: str = PREDICTED_CHECK,
    alpha: float = 1e-3,
    min_effect: float = 0.02,
) -> CheckResult:
    """Class shares against `priors`: chi-squared p-value and total variation distance.

    Without priors only the shares are reported (status "ok"). With priors the result is
    "flagged" when p < `alpha` and the total variation distance (half the L1 distance of
    the shares) is at least `min_effect`. A class with prior 0 that occurs gives p = 0.
    No rows are flagged: the finding is about the set.

    Example
    -------
    >>> import numpy as np
    >>> classes = np.array([0] * 700 + [1] * 300)
    >>> result = class_balance(classes, np.array([0.5, 0.5]), n_classes=2)
    >>> result.status, round(result.summary["total_variation"], 3)
    ('flagged', 0.2)
    """
    n = len(classes)
    counts = np.bincount(classes, minlength=n_classes).astype(np.float64)
    shares = counts / n if n else counts
    summary: dict[str, object] = {"rows": n, "observed_share": shares.tolist()}
    if priors is None:
        return build_result(
            check,
            n_rows=n,
            flagged=np.zeros(n, dtype=bool),
            reasons=(),
            scores=np.zeros(n),
            above_warn=False,
            summary={**summary, "p_value": None, "total_variation": None},
            message="no priors given: class shares only",
        )
    expected = np.asarray(priors, dtype=np.float64)
    if expected.shape != (n_classes,):
        raise ValueError(f"priors must have {n_classes} entries, got shape {expected.shape}")
    if np.any(expected < 0) or not np.isclose(expected.sum(), 1.0, atol=1e-6):
        raise ValueError(f"priors must be non-negative and sum to 1, got {expected.tolist()}")
    impossible = (expected == 0) & (counts > 0)
    support = expected > 0
    if impossible.any():
        statistic, p_value = float("inf"), 0.0
    elif support.sum() < 2:
        statistic, p_value = 0.0, 1.0
    else:
        result = stats.chisquare(counts[support], expected[support] * n)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    tv = 0.5 * float(np.abs(shares - expected).sum())
    excess = shares - expected
    flagged = p_value < alpha and tv >= min_effect
    summary.update(
        {
            "expected_share": expected.tolist(),
            "statistic": statistic,
            "p_value": p_value,
            "total_variation": tv,
            "most_over_represented": int(np.argmax(excess)),
            "most_under_represented": int(np.argmin(excess)),
            "alpha": alpha,
            "min_effect": min_effect,
        }
    )
    over = int(np.argmax(excess))
    return build_result(
        check,
        n_rows=n,
        flagged=np.zeros(n, dtype=bool),
        reasons=(),
        scores=np.zeros(n),
        above_warn=flagged,
        summary=summary,
        message=(
            f"class shares differ from the priors by {tv:.3f} (total variation, p = "
            f"{p_value:.3g}); class {over} is {shares[over]:.1%} against {expected[over]:.1%}"
        ),
    )
