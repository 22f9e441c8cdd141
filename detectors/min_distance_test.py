"""Model-extraction signal: a client's minimum query distances against the benign reference.

PRADA (Juuti et al. 2019) observed that the distance from each new query of a client to
its nearest earlier query follows a roughly normal law for benign clients and not for
extraction attacks, and tests it with Shapiro-Wilk. That needs the benign law to be normal,
which image traffic with a near-duplicate now and then is not, and it misses clients whose
distances are normal but in the wrong place (uniform random queries: every distance is
large and alike). Here the client's recent minimum distances are compared with the same
minimum distances measured on the benign reference by a two-sample Kolmogorov-Smirnov
test: the reference is measured, not assumed, and any departure (synthetic queries close
to their seeds, random queries far from everything) moves D.

Distances are Euclidean on rows scaled to [0, 1] (through the guard's random projection),
to the client's previous `history_size` distinct queries; the reference is, for reference
rows, the minimum distance to `history_size` other reference rows drawn at random, so both
are minima over the same number of candidates. Critical values of D come from the one-
sample Kolmogorov distribution at n_eff = n m / (n + m) (`scipy.stats.kstwo`, as
`ks_2samp(method="asymp")`), one per sample size, computed once.

References
----------
Juuti, M., Szyller, S., Marchal, S. and Asokan, N. (2019). PRADA: Protecting against DNN
model stealing attacks. IEEE EuroS&P.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import stats

FloatArray = NDArray[np.float64]


def reference_min_distances(
    sketches: NDArray[np.floating], history_size: int, rng: np.random.Generator
) -> FloatArray:
    """For each reference row, the distance to its nearest of `history_size` random others.

    Needs more than `history_size` rows. Returns them sorted (float64).
    """
    n = sketches.shape[0]
    if n <= history_size:
        raise ValueError(f"the reference needs more than history_size={history_size} rows, got {n}")
    rows = np.asarray(sketches, dtype=np.float64)
    norms = (rows * rows).sum(axis=1)
    out = np.empty(n)
    for i in range(n):
        others = rng.choice(n - 1, size=history_size, replace=False)
        others += others >= i  # skip row i itself
        sq = norms[others] - 2.0 * rows[others] @ rows[i] + norms[i]
        out[i] = np.sqrt(max(float(sq.min()), 0.0))
    out.sort()
    return out


def ks_statistic(sample: NDArray[np.floating], reference_sorted: FloatArray) -> float:
    """Two-sample Kolmogorov-Smirnov D between `sample` and an already sorted reference."""
    s = np.sort(np.asarray(sample, dtype=np.float64))
    n, m = s.shape[0], reference_sorted.shape[0]
    below = np.searchsorted(reference_sorted, s, side="left") / m
    upto = np.searchsorted(reference_sorted, s, side="right") / m
    steps = np.arange(1, n + 1) / n
    # Between sample points the sample's CDF is flat, so D is reached at a sample point
    # (from the right) or just before one (from the left).
    return float(max(np.max(np.abs(steps - upto)), np.max(np.abs(steps - 1.0 / n - below))))


def critical_values(max_n: int, reference_size: int, alpha: float) -> FloatArray:
    """D above which the test rejects at `alpha`, for sample sizes 0..max_n (inf below 1)."""
    out = np.full(max_n + 1, np.inf)
    for n in range(1, max_n + 1):
        n_eff = max(int(round(n * reference_size / (n + reference_size))), 1)
        out[n] = float(stats.kstwo.isf(alpha, n_eff))
    return out


def ks_p_value(d: float, n: int, reference_size: int) -> float:
    """Asymptotic p-value of D for a sample of n against the reference (as the critical values)."""
    if n < 1:
        return 1.0
    n_eff = max(int(round(n * reference_size / (n + reference_size))), 1)
    return float(stats.kstwo.sf(d, n_eff))
