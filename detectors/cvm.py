"""Cramér-von Mises drift test per dimension, reference vs the last window of rows."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from detectors.base import FloatArray, check_choice, check_positive_int
from detectors.columnwise import ColumnwiseTwoSampleTest
from detectors.critical_values import largest_accepted_float
from detectors.cvm_statistics import cvm_asymptotic_sf, cvm_from_counts
from detectors.multiple_testing import CORRECTIONS
from detectors.windowed import TwoSampleOutcome


class CVMDrift(ColumnwiseTwoSampleTest):
    """Two-sample Cramér-von Mises test on every dimension, combined across dimensions.

    More sensitive than KS to differences spread over the whole distribution (KS looks at
    the single largest gap). When the window is full, and then every `test_every` rows,
    each column is tested against the reference; p-values come from the limiting
    distribution (equal to ``scipy.stats.cramervonmises_2samp(..., method="asymptotic")``)
    and are combined by Bonferroni or Benjamini-Hochberg. Drift is signalled when the
    combined p-value is below `alpha`. `score` is the largest per-column statistic T,
    `p_value` the combined p-value. `threshold` is the critical value of T: the largest T
    whose limiting p-value the correction does not reject (found by bisection on the same
    p-value function, to the last bit), so ``score > threshold`` exactly when drift is
    signalled. With Bonferroni the cut is the level ``alpha / d``; with Benjamini-Hochberg
    it is the cut of that test (``alpha * i / d`` for the largest rejected rank i,
    ``alpha / d`` when nothing is rejected). `threshold` is None before the first test.
    Values are assumed continuous (ties are not corrected for).

    Rows with NaN or Inf are dropped and counted in `rejected`; a wrong number of columns,
    an empty batch or an input that is not (n, d) or a single row raises ValueError.

    Memory: O(reference + window) -- the sorted reference and the window.
    Cost per test: O(d * window_size * log(n_ref)).

    Parameters
    ----------
    reference
        (n_ref, d) reference rows, or None to call `fit` later.
    window_size
        Rows per test window.
    test_every
        New rows between tests once the window is full (default: `window_size`).
    alpha
        Significance level of the combined test.
    correction
        "bonferroni" or "fdr" (Benjamini-Hochberg).
    seed
        Unused (the test is deterministic); kept for a uniform API.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = CVMDrift(rng.normal(size=(500, 2)), window_size=100)
    >>> det.update(rng.normal(size=(100, 2))).drift_detected
    False
    >>> det.update(rng.normal(scale=2.0, size=(100, 2))).drift_detected
    True

    References
    ----------
    Anderson, T. W. (1962). On the distribution of the two-sample Cramér-von Mises
    criterion. Ann. Math. Statist. 33(3).
    Csörgő, S. and Faraway, J. (1996). The exact and asymptotic distributions of
    Cramér-von Mises statistics. JRSS B 58(1).
    """

    _FITTED_KEYS = ("_reference_sorted",)

    def __init__(
        self,
        reference: ArrayLike | None = None,
        window_size: int = 100,
        test_every: int | None = None,
        alpha: float = 0.05,
        correction: str = "bonferroni",
        seed: int | None = None,
    ) -> None:
        super().__init__(window_size=window_size, test_every=test_every, alpha=alpha, seed=seed)
        check_choice("correction", correction, CORRECTIONS)
        self.correction = correction
        self._reference_sorted = np.zeros((0, 0))
        # critical statistic per (window size, cut rank) for this reference (a cache)
        self._critical: dict[tuple[int, int], float] = {}
        if reference is not None:
            self.fit(reference)

    def _params(self) -> dict[str, object]:
        return {**super()._params(), "correction": self.correction}

    @property
    def statistics(self) -> FloatArray:
        """Per-column statistics T of the latest test (empty before the first)."""
        return self._statistics.copy()

    def _fit(self, reference: FloatArray) -> None:
        if reference.shape[0] < 2:
            raise ValueError(f"reference needs at least 2 rows, got {reference.shape[0]}")
        self._reference_sorted = np.sort(reference, axis=0)
        self._critical = {}

    def _after_load(self) -> None:
        super()._after_load()
        if self._reference_sorted.ndim != 2 or self._reference_sorted.shape[1] != self._n_features:
            raise ValueError("state reference does not match the number of features")
        self._critical = {}

    def _test(self, window: FloatArray, rng: np.random.Generator) -> TwoSampleOutcome:
        n_ref, d = self._reference_sorted.shape
        ws = np.sort(window, axis=0)
        counts = np.empty(ws.shape)
        for j in range(d):
            counts[:, j] = np.searchsorted(self._reference_sorted[:, j], ws[:, j])
        stats = cvm_from_counts(counts.T, n_ref)
        p_values = cvm_asymptotic_sf(stats, n_ref, window.shape[0])
        p, rank = self._combine_columns(stats, p_values)
        threshold = self.critical_statistic(window.shape[0], rank)
        return TwoSampleOutcome(p < self.alpha, float(stats.max()), p, threshold)

    def critical_statistic(self, window_size: int, rank: int = 1) -> float:
        """Largest T whose p-value the cut at `rank` accepts, for windows of `window_size`.

        The cut rejects a column when ``p d / rank < alpha`` (rank 1: Bonferroni's
        ``alpha / d``).
        """
        self._require_fitted()
        window_size = check_positive_int("window_size", window_size, minimum=2)
        rank = self._check_rank(rank)
        key = (window_size, rank)
        if key not in self._critical:
            n_ref = self._reference_sorted.shape[0]

            def rejects(t: float) -> bool:
                p = cvm_asymptotic_sf(np.array([t]), n_ref, window_size)
                return bool(self._cut_rejects(p, rank)[0])

            self._critical[key] = largest_accepted_float(rejects, 0.0, 1.0)
        return self._critical[key]
