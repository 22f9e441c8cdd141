"""Chi-squared drift test for categorical values (e.g. predicted class) per dimension."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from detectors.base import FloatArray, check_choice, check_positive_int, finite_rows
from detectors.columnwise import ColumnwiseTwoSampleTest
from detectors.critical_values import largest_accepted_float
from detectors.multiple_testing import CORRECTIONS
from detectors.windowed import TwoSampleOutcome

#: Most cached critical values (one per degrees of freedom and cut rank) kept at once.
_MAX_CRITICAL = 4096


class ChiSquareDrift(ColumnwiseTwoSampleTest):
    """Chi-squared test of category frequencies, reference vs the last window, per column.

    Each column holds category codes 0..n_categories-1 (for example the predicted class).
    When the window is full, and then every `test_every` rows, the window's category counts
    in each column are compared with the reference's by a chi-squared test of homogeneity
    on the 2 x K contingency table (categories absent from both are left out; no Yates
    correction), equal to ``scipy.stats.chi2_contingency(table, correction=False)``.
    Per-column p-values are combined by Bonferroni or Benjamini-Hochberg; drift is
    signalled when the combined p-value is below `alpha`. `score` is the chi-squared
    statistic of the most significant column (smallest p-value; ties go to the larger
    statistic, then the larger degrees of freedom) -- the largest statistic whenever the
    columns have the same degrees of freedom -- and `p_value` the combined p-value.
    `threshold` is the critical value for that column's degrees of freedom: the largest
    statistic whose chi-squared p-value the correction does not reject (bisection on
    ``scipy.stats.chi2.sf``, to the last bit; equal to ``chi2.isf`` at the cut level), so
    ``score > threshold`` exactly when drift is signalled. With Bonferroni the cut is the
    level ``alpha / d``; with Benjamini-Hochberg it is the cut of that test
    (``alpha * i / d`` for the largest rejected rank i, ``alpha / d`` when nothing is
    rejected). A column seeing a single category has no degrees of freedom and p = 1; when
    every column is like that `threshold` is inf. `threshold` is None before the first test.

    Rows with NaN or Inf, or with a value that is not an integer in 0..n_categories-1, are
    dropped and counted in `rejected`; a wrong number of columns, an empty batch or an
    input that is not (n, d) or a single row raises ValueError.

    Memory: O(d * n_categories + window) -- reference counts and the window.
    Cost per test: O(d * (window_size + n_categories)).

    Parameters
    ----------
    reference
        (n_ref, d) category codes, or None to call `fit` later.
    n_categories
        Number of categories K; valid codes are 0..K-1.
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
    >>> det = ChiSquareDrift(rng.integers(0, 3, size=(600, 1)), n_categories=3, window_size=100)
    >>> det.update(rng.integers(0, 3, size=(100, 1))).drift_detected
    False
    >>> det.update(rng.choice(3, p=[0.6, 0.2, 0.2], size=(100, 1))).drift_detected
    True

    References
    ----------
    Pearson, K. (1900). On the criterion that a given system of deviations ... Phil. Mag.
    Rabanser, S., Günnemann, S. and Lipton, Z. C. (2019). Failing loudly. NeurIPS.
    """

    _FITTED_KEYS = ("_reference_counts",)

    def __init__(
        self,
        reference: ArrayLike | None = None,
        n_categories: int = 10,
        window_size: int = 100,
        test_every: int | None = None,
        alpha: float = 0.05,
        correction: str = "bonferroni",
        seed: int | None = None,
    ) -> None:
        super().__init__(window_size=window_size, test_every=test_every, alpha=alpha, seed=seed)
        self.n_categories = check_positive_int("n_categories", n_categories, minimum=2)
        check_choice("correction", correction, CORRECTIONS)
        self.correction = correction
        self._reference_counts = np.zeros((0, 0))
        # critical statistic per (degrees of freedom, cut rank): a cache, not state
        self._critical: dict[tuple[int, int], float] = {}
        if reference is not None:
            self.fit(reference)

    def _params(self) -> dict[str, object]:
        return {
            **super()._params(),
            "n_categories": self.n_categories,
            "correction": self.correction,
        }

    @property
    def statistics(self) -> FloatArray:
        """Per-column chi-squared statistics of the latest test (empty before the first)."""
        return self._statistics.copy()

    def _valid_rows(self, arr: FloatArray) -> NDArray[np.bool_]:
        ok = finite_rows(arr)
        with np.errstate(invalid="ignore"):
            codes_ok = (arr == np.round(arr)) & (arr >= 0) & (arr < self.n_categories)
        return np.asarray(ok & codes_ok.all(axis=1))

    def _counts(self, codes: FloatArray) -> FloatArray:
        d = codes.shape[1]
        flat = codes.astype(np.int64) + self.n_categories * np.arange(d)[None, :]
        counts = np.bincount(flat.ravel(), minlength=d * self.n_categories)
        return counts.reshape(d, self.n_categories).astype(np.float64)

    def _fit(self, reference: FloatArray) -> None:
        ok = self._valid_rows(reference)
        if not ok.any():
            raise ValueError(
                f"reference holds no row of integer codes in 0..{self.n_categories - 1}"
            )
        self._reference_counts = self._counts(reference[ok])
        self._critical = {}  # they depend on the number of columns

    def _after_load(self) -> None:
        super()._after_load()
        if self._reference_counts.shape != (self._n_features, self.n_categories):
            raise ValueError("state reference counts do not match features and categories")

    def _test(self, window: FloatArray, rng: np.random.Generator) -> TwoSampleOutcome:
        obs = np.stack([self._reference_counts, self._counts(window)], axis=1)  # (d, 2, K)
        col_tot = obs.sum(axis=1, keepdims=True)
        row_tot = obs.sum(axis=2, keepdims=True)
        expected = row_tot * col_tot / obs.sum(axis=(1, 2), keepdims=True)
        present = col_tot > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(present, (obs - expected) ** 2 / expected, 0.0)
        chi2 = terms.sum(axis=(1, 2))
        dof = present[:, 0, :].sum(axis=1) - 1
        p_values = np.where(dof > 0, stats.chi2.sf(chi2, np.maximum(dof, 1)), 1.0)
        p, rank = self._combine_columns(chi2, p_values)
        # the columns' degrees of freedom can differ, so the largest statistic need not be
        # the most significant one: report the most significant column's statistic
        top = int(np.lexsort((-dof, -chi2, p_values))[0])
        threshold = self.critical_statistic(int(dof[top]), rank)
        return TwoSampleOutcome(p < self.alpha, float(chi2[top]), p, threshold)

    def critical_statistic(self, dof: int, rank: int = 1) -> float:
        """Largest chi-squared statistic with `dof` degrees of freedom the cut accepts.

        The cut at `rank` rejects a column when ``p d / rank < alpha`` (rank 1:
        Bonferroni's ``alpha / d``); inf for ``dof == 0`` (p is always 1).
        """
        self._require_fitted()
        dof = check_positive_int("dof", dof, minimum=0)
        rank = self._check_rank(rank)
        if dof == 0:
            return float("inf")
        key = (dof, rank)
        if key not in self._critical:
            if len(self._critical) >= _MAX_CRITICAL:
                self._critical = {}  # a cache, not state: keep its memory bounded

            def rejects(x: float) -> bool:
                p = np.array([stats.chi2.sf(x, dof)])
                return bool(self._cut_rejects(p, rank)[0])

            self._critical[key] = largest_accepted_float(rejects, 0.0, float(dof))
        return self._critical[key]
