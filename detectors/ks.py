"""Kolmogorov-Smirnov drift test per dimension, reference vs the last window of rows."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors.base import FloatArray, check_choice, check_positive_int
from detectors.columnwise import ColumnwiseTwoSampleTest
from detectors.critical_values import IntArray, largest_accepted_int
from detectors.ks_distribution import METHODS, KSPValueTable, ks_statistics_columns
from detectors.multiple_testing import CORRECTIONS
from detectors.windowed import TwoSampleOutcome


class KSDrift(ColumnwiseTwoSampleTest):
    """Two-sample Kolmogorov-Smirnov test on every dimension, combined across dimensions.

    Rows enter a ring buffer of `window_size`; when it is full, and then every `test_every`
    rows, each column of the window is tested against the same column of the reference.
    Per-column p-values equal those of ``scipy.stats.ks_2samp`` with the same `method`
    (default "auto": exact up to 10 000 rows, asymptotic beyond) and are combined by Bonferroni or
    Benjamini-Hochberg (`correction`); drift is signalled when the combined p-value is
    below `alpha`. `score` is the largest per-column statistic D, `p_value` the combined
    p-value. `threshold` is the critical value of D: the largest D (a multiple of
    1 / lcm(n_ref, window_size)) whose p-value, by the same `method`, the
    correction does not reject, so ``score > threshold`` exactly when drift is signalled.
    With Bonferroni that cut is the level ``alpha / d``; with Benjamini-Hochberg it depends
    on the other columns' p-values and is taken at the cut of that test (``alpha * i / d``
    for the largest rejected rank i, ``alpha / d`` when nothing is rejected). `threshold`
    is None before the first test. Per-column values are in `statistics` and `p_values`.

    Rows with NaN or Inf are dropped and counted in `rejected`; a wrong number of columns,
    an empty batch or an input that is not (n, d) or a single row raises ValueError.

    Memory: O(reference + window) -- the sorted reference (n_ref x d) and the window
    (window_size x d); memoised p-values (one float per distinct statistic seen).
    Cost per test: O(d * window_size * log(n_ref)) -- about 0.01 s for 384 columns, 2000
    reference and 500 window rows. The exact null distribution is tabulated at the first
    test when that is cheap (about 1 s for 2000 vs 500 rows), otherwise memoised per
    statistic value; p-values below 1e-9 use the asymptotic formula (still within 1e-6 of
    scipy's exact value). With ``method="asymp"`` there is no table: each distinct
    statistic's asymptotic p-value is computed once and memoised, so the first test costs
    little more than later ones. Critical values are searched once per cut rank and kept.

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
    method
        P-value method, as scipy.stats.ks_2samp's: "auto" (exact when both samples have at
        most 10 000 rows, else asymptotic), "exact" (always exact; scipy's own fallback to
        asymptotic when lcm(n_ref, window_size) exceeds int32) or "asymp" (always
        ``kstwo.sf(D, round(n_ref window_size / (n_ref + window_size)))``, what alibi-detect
        asks scipy for).
    seed
        Unused by the test itself (it is deterministic); kept for a uniform API.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = KSDrift(rng.normal(size=(500, 3)), window_size=100, seed=0)
    >>> det.update(rng.normal(size=(100, 3))).drift_detected
    False
    >>> det.update(rng.normal(loc=1.0, size=(100, 3))).drift_detected
    True
    >>> det.p_value < 0.05
    True
    >>> det.score > det.threshold
    True

    References
    ----------
    Rabanser, S., Günnemann, S. and Lipton, Z. C. (2019). Failing loudly: an empirical study
    of methods for detecting dataset shift. NeurIPS.
    Hodges, J. L. (1958). The significance probability of the Smirnov two-sample test.
    """

    _FITTED_KEYS = ("_reference_sorted_t",)

    def __init__(
        self,
        reference: ArrayLike | None = None,
        window_size: int = 100,
        test_every: int | None = None,
        alpha: float = 0.05,
        correction: str = "bonferroni",
        seed: int | None = None,
        method: Literal["auto", "exact", "asymp"] = "auto",
    ) -> None:
        super().__init__(window_size=window_size, test_every=test_every, alpha=alpha, seed=seed)
        check_choice("correction", correction, CORRECTIONS)
        check_choice("method", method, METHODS)
        self.correction = correction
        self.method: Literal["auto", "exact", "asymp"] = method
        self._reference_sorted_t = np.zeros((0, 0))
        self._table: KSPValueTable | None = None
        # critical statistic per cut rank, for the table's sample sizes (a cache, not state)
        self._critical: dict[int, float] = {}
        if reference is not None:
            self.fit(reference)

    def _params(self) -> dict[str, object]:
        return {**super()._params(), "correction": self.correction, "method": self.method}

    @property
    def statistics(self) -> FloatArray:
        """Per-column KS statistics D of the latest test (empty before the first)."""
        return self._statistics.copy()

    def _fit(self, reference: FloatArray) -> None:
        if reference.shape[0] < 2:
            raise ValueError(f"reference needs at least 2 rows, got {reference.shape[0]}")
        self._reference_sorted_t = np.ascontiguousarray(np.sort(reference.T, axis=1))
        self._table = None
        self._critical = {}

    def _after_load(self) -> None:
        super()._after_load()
        ref = self._reference_sorted_t
        if ref.ndim != 2 or ref.shape[0] != self._n_features:
            raise ValueError("state reference does not match the number of features")
        self._table = None
        self._critical = {}

    def column_p_values(self, window: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(statistics D, p-values) of each column of `window` against the reference."""
        n1 = self._reference_sorted_t.shape[1]
        n2 = window.shape[0]
        if self._table is None or self._table.n2 != n2:
            self._table = KSPValueTable(n1, n2, self.method)
            self._critical = {}
        h = ks_statistics_columns(self._reference_sorted_t, window)
        lcm = (n1 // math.gcd(n1, n2)) * n2
        return h / lcm, self._table(h)

    def _test(self, window: FloatArray, rng: np.random.Generator) -> TwoSampleOutcome:
        stats, p_values = self.column_p_values(window)
        p, rank = self._combine_columns(stats, p_values)
        threshold = self.critical_statistic(window.shape[0], rank)
        return TwoSampleOutcome(p < self.alpha, float(stats.max()), p, threshold)

    def critical_statistic(self, window_size: int, rank: int = 1) -> float:
        """Largest D whose p-value the cut at `rank` accepts, for windows of `window_size`.

        The cut rejects a column when ``p d / rank < alpha`` (rank 1: Bonferroni's
        ``alpha / d``); D is a multiple of 1 / lcm(n_ref, window_size), and 1.0 means no
        window of that size can be rejected.
        """
        self._require_fitted()
        window_size = check_positive_int("window_size", window_size)
        rank = self._check_rank(rank)
        n1 = self._reference_sorted_t.shape[1]
        if self._table is None or self._table.n2 != window_size:
            self._table = KSPValueTable(n1, window_size, self.method)
            self._critical = {}
        if rank not in self._critical:
            table = self._table

            def rejects(h: IntArray) -> NDArray[np.bool_]:
                return self._cut_rejects(table(h), rank)

            lcm = (n1 // math.gcd(n1, window_size)) * window_size
            self._critical[rank] = largest_accepted_int(rejects, lcm) / lcm
        return self._critical[rank]
