"""Two-sample Cramér-von Mises statistics from reference counts, and their null moments.

For a window of m values and a sorted reference of N values, let c_j be the number of
reference values below window value j. With c sorted ascending, the rank statistic
U = N sum_i (r_i - i)^2 + m sum_j (s_j - j)^2 of Anderson (1962) reduces to
``U = N (m^2 N - sum_k (2k - 1) c_(k)) + m sum_k c_(k)^2`` (no ties), so the reference
never has to be merged with the window, and
``T = U / (N m (N + m)) - (4 N m - 1) / (6 (N + m))``.

References
----------
Anderson, T. W. (1962). On the distribution of the two-sample Cramér-von Mises criterion.
Ann. Math. Statist. 33(3), 1148-1159.
"""

from __future__ import annotations

import math

import numpy as np

from detectors.base import FloatArray


def cvm_from_counts(counts_sorted: FloatArray, n_ref: int) -> FloatArray:
    """T for windows whose reference counts are sorted along the last axis."""
    m = counts_sorted.shape[-1]
    weights = 2.0 * np.arange(1, m + 1) - 1.0
    q = counts_sorted @ weights
    s2 = (counts_sorted * counts_sorted).sum(axis=-1)
    return cvm_from_sums(q, s2, n_ref, m)


def cvm_from_sums(q: FloatArray, s2: FloatArray, n_ref: int, m: int) -> FloatArray:
    """T from Q = sum_k (2k - 1) c_(k) and S2 = sum_k c_k^2."""
    n = float(n_ref)
    u = n * (m * m * n - q) + m * s2
    t: FloatArray = u / (n * m * (n + m)) - (4.0 * n * m - 1.0) / (6.0 * (n + m))
    return t


def cvm_null_moments(n_ref: int, m: int) -> tuple[float, float]:
    """Mean and standard deviation of T under the null (Anderson 1962)."""
    n = float(n_ref)
    total = n + m
    mean = (1.0 + 1.0 / total) / 6.0
    var = (total + 1.0) * (4.0 * n * m * total - 3.0 * (n * n + m * m) - 2.0 * n * m)
    var /= 180.0 * total * total * n * m
    return mean, math.sqrt(var)


def cvm_asymptotic_sf(t: FloatArray, n_ref: int, m: int) -> FloatArray:
    """P-values of T from the limiting distribution, as scipy's method="asymptotic" does.

    T is standardised to the limiting mean and variance and passed to the CDF of the
    limiting Cramér-von Mises distribution (series of Csörgő and Faraway 1996).
    """
    from scipy.special import gammaln, kv

    mean, sd = cvm_null_moments(n_ref, m)
    tn = (np.asarray(t, dtype=np.float64) - mean) / (math.sqrt(45.0) * sd) + 1.0 / 6.0
    x = np.maximum(tn, 1e-12)[..., None]
    k = np.arange(0, 12, dtype=np.float64)
    y = 4.0 * k + 1.0
    q = y * y / (16.0 * x)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        terms = (
            np.exp(gammaln(k + 0.5) - gammaln(k + 1.0))
            / (math.pi**1.5 * np.sqrt(x))
            * np.sqrt(y)
            * np.exp(-q)
            * kv(0.25, q)
        )
    cdf = np.nan_to_num(terms, nan=0.0).sum(axis=-1)
    p: FloatArray = np.clip(1.0 - cdf, 0.0, 1.0)
    # below 0.003 the limiting CDF is < 1.3e-18: p is 1 (as scipy returns)
    return np.where(tn < 0.003, 1.0, p)
