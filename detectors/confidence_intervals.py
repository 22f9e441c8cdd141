"""Confidence intervals for performance metrics: Wilson, Student t, and the seeded bootstrap.

Which interval a metric gets (see `detectors.performance_metrics`):

- a proportion (accuracy): the Wilson score interval, good down to a handful of labels;
- a mean of per-sample losses (Brier score, log loss, absolute error): the Student t
  interval of the mean;
- a metric with no closed-form variance (macro F1, ROC AUC, calibration errors): the
  percentile bootstrap, with resamples drawn from an explicit seed so that the same window
  always gets the same interval.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from detectors.base import FloatArray, check_open_unit

__all__ = [
    "bootstrap_counts",
    "mean_interval",
    "percentile_interval",
    "wilson_interval",
]

_NAN = float("nan")


def _z(confidence: float) -> float:
    return float(stats.norm.isf((1.0 - check_open_unit("confidence", confidence)) / 2.0))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion successes / n ((nan, nan) when n = 0).

    >>> [round(v, 4) for v in wilson_interval(8, 10)]
    [0.4902, 0.9433]
    >>> wilson_interval(0, 0)
    (nan, nan)

    Reference: Wilson, E. B. (1927). Probable inference, the law of succession, and
    statistical inference. JASA 22(158).
    """
    z = _z(confidence)
    if n <= 0:
        return _NAN, _NAN
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in 0..n={n}, got {successes}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: FloatArray, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, lower, upper): Student t interval of the mean (NaN bounds below 2 values).

    >>> [round(v, 4) for v in mean_interval(np.array([1.0, 2.0, 3.0, 4.0]))]
    [2.5, 0.4457, 4.5543]
    """
    check_open_unit("confidence", confidence)
    n = int(values.size)
    if n == 0:
        return _NAN, _NAN, _NAN
    mean = float(values.mean())
    if n < 2:
        return mean, _NAN, _NAN
    sem = float(values.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.isf((1.0 - confidence) / 2.0, n - 1)) * sem
    return mean, mean - half, mean + half


def bootstrap_counts(n: int, n_bootstrap: int, seed: int) -> NDArray[np.float64]:
    """(n_bootstrap, n) multiplicities of each row in each resample (rows sum to n).

    A metric evaluated with these as row weights equals the metric of the materialised
    resample, without copying the rows.

    >>> bootstrap_counts(4, 2, seed=0).tolist()
    [[0.0, 1.0, 2.0, 1.0], [3.0, 1.0, 0.0, 0.0]]
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_bootstrap, n))
    flat = (np.arange(n_bootstrap)[:, None] * n + idx).ravel()
    counts = np.bincount(flat, minlength=n_bootstrap * n).reshape(n_bootstrap, n)
    return counts.astype(np.float64)


def percentile_interval(samples: FloatArray, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap (or simulated) values, ignoring undefined (NaN) ones.

    When more than half of the values are undefined (a resample without one of the classes
    a metric needs), the interval is (nan, nan): too few labels for a bootstrap interval.

    >>> [round(v, 6) for v in percentile_interval(np.arange(101.0), confidence=0.9)]
    [5.0, 95.0]
    """
    check_open_unit("confidence", confidence)
    defined = samples[np.isfinite(samples)]
    if defined.size == 0 or defined.size * 2 < samples.size:
        return _NAN, _NAN
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(defined, [tail, 1.0 - tail])
    return float(lo), float(hi)
