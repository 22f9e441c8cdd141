"""Two-sample Cramér-von Mises statistics from reference counts, and their null moments.

For a window of m values and a sorted reference of N values, let c_j be the number of
reference values below window value j. With c sorted ascending, the rank statistic
U = N sum_i (r_i - i)^2 + m sum_j (s_j - j)^2 of Anderson (1962) reduces to
``U = N (m^2 N - sum_k (2k - 1) c_(k)) + m sum_k c_(k)^2`` (no ties), so the reference
never has to be merged with the window, and
``T = U / (N m (N + m)) - (4 N m - 1) / (6 (N + m))``. The same Q is the sum of
max(c_j, c_l) over all ordered pairs (j, l) of the window, j = l included, which lets a
sliding window update Q pair by pair instead of sorting every window.

References
----------
Anderson, T. W. (1962). On the distribution of the two-sample Cramér-von Mises criterion.
Ann. Math. Statist. 33(3), 1148-1159.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detectors.base import FloatArray

Int64Array = NDArray[np.int64]


def cvm_from_counts(counts_sorted: FloatArray, n_ref: int) -> FloatArray:
    """T for windows whose reference counts are sorted along the last axis."""
    return cvm_from_u(cvm_u_from_counts(counts_sorted, n_ref), n_ref, counts_sorted.shape[-1])


def cvm_u_from_counts(counts_sorted: FloatArray, n_ref: int) -> FloatArray:
    """U for windows whose reference counts are sorted along the last axis."""
    m = counts_sorted.shape[-1]
    q = counts_sorted @ _rank_weights(m)
    s2 = (counts_sorted * counts_sorted).sum(axis=-1)
    return cvm_u_from_sums(q, s2, n_ref, m)


def cvm_from_sums(q: FloatArray, s2: FloatArray, n_ref: int, m: int) -> FloatArray:
    """T from Q = sum_k (2k - 1) c_(k) and S2 = sum_k c_k^2."""
    return cvm_from_u(cvm_u_from_sums(q, s2, n_ref, m), n_ref, m)


def cvm_u_from_sums(q: FloatArray, s2: FloatArray, n_ref: int, m: int) -> FloatArray:
    """U from Q = sum_k (2k - 1) c_(k) and S2 = sum_k c_k^2."""
    n = float(n_ref)
    u: FloatArray = n * (m * m * n - q) + m * s2
    return u


def cvm_from_u(u: FloatArray, n_ref: int, m: int) -> FloatArray:
    """T from U.

    Each rounded step rises with U, so the largest T of a set of windows is T of their
    largest U, to the bit: take the maximum first and convert one value instead of many.
    """
    n = float(n_ref)
    t: FloatArray = u / (n * m * (n + m)) - (4.0 * n * m - 1.0) / (6.0 * (n + m))
    return t


@functools.lru_cache(maxsize=32)
def _rank_weights(m: int) -> FloatArray:
    """2k - 1 for k = 1..m (read-only: the array is shared between calls)."""
    weights: FloatArray = 2.0 * np.arange(1, m + 1, dtype=np.float64) - 1.0
    weights.flags.writeable = False
    return weights


def sliding_window_sums(
    counts: NDArray[np.integer[Any]], window_sizes: Sequence[int], n_ref: int
) -> Iterator[tuple[int, Int64Array, Int64Array]]:
    """Q and S2 of every full window of each size sliding down the rows of `counts`.

    `counts` is (steps, ...): independent streams of reference counts in 0..n_ref, one row
    per step. `window_sizes` are ascending, each in 2..steps. Yields (w, q, s2) for each
    window size, q and s2 of shape (steps - w + 1, ...), row i for the window of rows
    i..i + w - 1. Exact integer arithmetic, so any summation order gives the same values.
    """
    steps, *shape = counts.shape
    w_max = window_sizes[-1]
    # pair sums below hold fewer than w_max values <= n_ref, doubled once: int32 halves the
    # memory traffic of the loop over lags whenever that provably fits
    pair_type = np.int32 if 2 * w_max * n_ref < 2**31 else np.int64
    values = counts.astype(pair_type, copy=False)
    squares = values.astype(np.int64) ** 2
    # entering[t]: sum of max(c_t, c_(t-k)) over the lags k seen so far (pairs with the rows
    # before t); leaving[t]: sum of max(c_t, c_(t+k)) (pairs with the rows after t). Each lag's
    # pair maxima are computed once, as whole rows, for every window size above the lag.
    entering = np.zeros(counts.shape, pair_type)
    leaving = np.zeros(counts.shape, pair_type)
    lag_max = np.empty(counts.shape, pair_type)
    pending = list(window_sizes)
    for k in range(1, w_max):
        pair = np.maximum(values[k:], values[:-k], out=lag_max[: steps - k])
        entering[k:] += pair
        leaving[:-k] += pair
        if pending and pending[0] == k + 1:
            w = pending.pop(0)
            # row t: the change from the window ending at t - 1 to the one ending at t (the
            # entering row's pairs in, the leaving row's pairs out), summed down the rows
            change = np.empty((steps, 2, *shape), np.int64)
            dq, ds = change[:, 0], change[:, 1]
            np.multiply(entering, 2, out=dq)
            dq += values
            dq[w:] -= 2 * leaving[:-w]
            dq[w:] -= values[:-w]
            ds[...] = squares
            ds[w:] -= squares[:-w]
            # a loop of row additions: np.cumsum over the leading axis is several times slower
            for t in range(1, steps):
                np.add(change[t - 1], change[t], out=change[t])
            yield w, change[w - 1 :, 0], change[w - 1 :, 1]


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
