"""Maximum mean discrepancy drift test with a permutation p-value, reference vs last window."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from detectors.base import FloatArray, check_positive_float, check_positive_int
from detectors.kernels import median_bandwidth
from detectors.windowed import TwoSampleOutcome, WindowedTwoSampleTest

#: Kernel rows computed at once during a test (bounds the transient memory).
_BLOCK_ROWS = 512


class MMDDrift(WindowedTwoSampleTest):
    """Kernel two-sample test (unbiased MMD^2, Gaussian kernel) with a permutation p-value.

    The kernel is exp(-||x - y||^2 / (2 bandwidth^2)); `bandwidth=None` takes the median
    pairwise distance of (a seeded subsample of at most 1000) reference rows at fit time.
    When the window is full, and then every `test_every` rows, the pooled sample
    (reference + window) is split at random `n_permutations` times; the p-value counts the
    observed statistic as one of the permutations,
    ``p = (1 + #{permuted >= observed}) / (1 + n_permutations)``, so it is never 0 and is
    uniform under no drift. Drift is signalled when p < `alpha`. `score` is the observed
    unbiased MMD^2, `p_value` the permutation p-value. `threshold` is the permutation
    critical value on the MMD^2 scale: the k-th largest permuted statistic of that test,
    with k the number of counts c = #{permuted >= observed} for which
    (1 + c) / (1 + n_permutations) < `alpha` (k = ceil(alpha (n_permutations + 1)) - 1), so
    ``score > threshold`` exactly when drift is signalled, ties included. When k = 0 (too
    few permutations for any p-value below `alpha`) `threshold` is inf and no window can
    signal drift. `threshold` is None before the first test.

    All permutations are evaluated at once as quadratic forms of one kernel matrix, built in
    blocks of 512 rows, so a test costs O((n_ref + w)^2 (d + n_permutations)) flops.

    Rows with NaN or Inf are dropped and counted in `rejected`; a wrong number of columns,
    an empty batch or an input that is not (n, d) or a single row raises ValueError.

    Memory: O(reference + window) kept between tests (n_ref x d reference, window_size x d
    window); a test needs O(512 (n_ref + w) + (n_ref + w) n_permutations) more.

    Parameters
    ----------
    reference
        (n_ref, d) reference rows, or None to call `fit` later.
    window_size
        Rows per test window.
    test_every
        New rows between tests once the window is full (default: `window_size`).
    alpha
        Significance level.
    n_permutations
        Random splits for the p-value.
    bandwidth
        Kernel bandwidth, or None for the median heuristic on the reference.
    seed
        Seeds the median-heuristic subsample and the permutations (test k uses
        ``default_rng([entropy, 1, k])``).

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = MMDDrift(rng.normal(size=(200, 2)), window_size=50, seed=0)
    >>> det.update(rng.normal(size=(50, 2))).drift_detected
    False
    >>> det.update(rng.normal(loc=1.0, size=(50, 2))).drift_detected
    True
    >>> det.p_value
    0.009900990099009901
    >>> det.score > det.threshold
    True

    References
    ----------
    Gretton, A., Borgwardt, K., Rasch, M., Schölkopf, B. and Smola, A. (2012). A kernel
    two-sample test. JMLR 13, 723-773.
    Phipson, B. and Smyth, G. (2010). Permutation p-values should never be zero.
    Stat. Appl. Genet. Mol. Biol. 9(1).
    """

    _FITTED_KEYS = ("_reference", "_bandwidth")

    def __init__(
        self,
        reference: ArrayLike | None = None,
        window_size: int = 100,
        test_every: int | None = None,
        alpha: float = 0.05,
        n_permutations: int = 100,
        bandwidth: float | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(window_size=window_size, test_every=test_every, alpha=alpha, seed=seed)
        self.n_permutations = check_positive_int("n_permutations", n_permutations)
        self.bandwidth = None if bandwidth is None else check_positive_float("bandwidth", bandwidth)
        self._reference = np.zeros((0, 0))
        self._bandwidth = 1.0
        if reference is not None:
            self.fit(reference)

    def _params(self) -> dict[str, object]:
        return {
            **super()._params(),
            "n_permutations": self.n_permutations,
            "bandwidth": self.bandwidth,
        }

    @property
    def kernel_bandwidth(self) -> float:
        """The bandwidth in use (given, or from the median heuristic)."""
        return self._bandwidth

    def _fit(self, reference: FloatArray) -> None:
        if reference.shape[0] < 2:
            raise ValueError(f"reference needs at least 2 rows, got {reference.shape[0]}")
        self._reference = reference.copy()
        if self.bandwidth is None:
            rng = np.random.default_rng([self._entropy, 0])
            self._bandwidth = median_bandwidth(reference, rng)
        else:
            self._bandwidth = self.bandwidth

    def _after_load(self) -> None:
        super()._after_load()
        if self._reference.ndim != 2 or self._reference.shape[1] != self._n_features:
            raise ValueError("state reference does not match the number of features")

    def _test(self, window: FloatArray, rng: np.random.Generator) -> TwoSampleOutcome:
        stats = mmd_permutation_statistics(
            self._reference, window, self._bandwidth, self.n_permutations, rng
        )
        observed = stats[0]
        p = float((1 + int((stats[1:] >= observed).sum())) / (1 + self.n_permutations))
        k = self.critical_rank()
        # observed > k-th largest permuted  <=>  at most k - 1 permuted >= observed
        threshold = float(np.sort(stats[1:])[::-1][k - 1]) if k else float("inf")
        return TwoSampleOutcome(p < self.alpha, float(observed), p, threshold)

    def critical_rank(self) -> int:
        """How many permuted statistics may reach the observed one with drift still signalled.

        The number of counts c in 0..n_permutations with (1 + c) / (1 + n_permutations)
        below `alpha`, evaluated as the p-value is, so the rank and the p-value never
        disagree by rounding; `threshold` is the permuted statistic of this rank.
        """
        counts = np.arange(self.n_permutations + 1)
        return int(((1 + counts) / (1 + self.n_permutations) < self.alpha).sum())


def mmd_permutation_statistics(
    x: FloatArray,
    y: FloatArray,
    bandwidth: float,
    n_permutations: int,
    rng: np.random.Generator,
) -> FloatArray:
    """Unbiased MMD^2 of (x, y) followed by that of `n_permutations` random re-splits.

    Every split is a 0/1 assignment vector a (1 = second sample) over the pooled rows, so
    with kernel matrix K: s_yy = a'Ka, s_xy = a'K1 - s_yy and s_xx = 1'K1 - 2 s_xy - s_yy.
    """
    n, m = x.shape[0], y.shape[0]
    pooled = np.vstack([x, y])
    total = n + m
    assign = np.zeros((n_permutations + 1, total))
    assign[0, n:] = 1.0
    if n_permutations:
        picks = np.argsort(rng.random((n_permutations, total)), axis=1)[:, :m]
        np.put_along_axis(assign[1:], picks, 1.0, axis=1)
    scale = -0.5 / (bandwidth * bandwidth)
    s_yy = np.zeros(n_permutations + 1)
    a_row_sums = np.zeros(n_permutations + 1)
    s_all = 0.0
    sq_norms = (pooled * pooled).sum(axis=1)
    for start in range(0, total, _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, total)
        # exp(scale * ||a - b||^2) built in place: the block is the largest array of a test
        k_block = pooled[start:stop] @ pooled.T
        k_block *= -2.0
        k_block += sq_norms[start:stop, None]
        k_block += sq_norms[None, :]
        np.maximum(k_block, 0.0, out=k_block)
        k_block *= scale
        np.exp(k_block, out=k_block)
        ka = k_block @ assign.T  # (block, P + 1)
        s_yy += (assign[:, start:stop].T * ka).sum(axis=0)
        row_sums = k_block.sum(axis=1)
        a_row_sums += assign[:, start:stop] @ row_sums
        s_all += float(row_sums.sum())
    s_xy = a_row_sums - s_yy
    s_xx = s_all - 2.0 * s_xy - s_yy
    # the Gaussian kernel is 1 on the diagonal: drop those terms for the unbiased estimate
    return np.asarray(
        (s_xx - n) / (n * (n - 1)) + (s_yy - m) / (m * (m - 1)) - 2.0 * s_xy / (n * m),
        dtype=np.float64,
    )
