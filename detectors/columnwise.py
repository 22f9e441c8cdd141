"""Shell for windowed tests run on each column, combined by a multiple-testing correction.

KS, CvM and chi-squared all test every column of the window against the same column of
the reference, keep the per-column statistics and p-values of the latest test, combine
the p-values by Bonferroni or Benjamini-Hochberg and put `threshold` at the critical value
of the cut rank that correction applies. Only the statistic and its null distribution are
their own.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from detectors.base import FloatArray, check_positive_int
from detectors.multiple_testing import combine_p_values, cut_rank, rejected_at_rank
from detectors.windowed import WindowedTwoSampleTest


class ColumnwiseTwoSampleTest(WindowedTwoSampleTest):
    """Per-column two-sample test whose p-values are combined across columns.

    Subclasses validate and store `correction` (one of `multiple_testing.CORRECTIONS`),
    compute per-column statistics and p-values in `_test` and pass them to
    `_combine_columns`.
    """

    _STREAM_KEYS = ("_statistics", "_p_values")

    correction: str

    def __init__(
        self,
        window_size: int,
        test_every: int | None,
        alpha: float,
        seed: int | None,
    ) -> None:
        super().__init__(window_size=window_size, test_every=test_every, alpha=alpha, seed=seed)
        self._statistics = np.zeros(0)
        self._p_values = np.zeros(0)

    @property
    def p_values(self) -> FloatArray:
        """Per-column p-values of the latest test (empty before the first)."""
        return self._p_values.copy()

    def _reset_stream(self) -> None:
        super()._reset_stream()
        self._statistics = np.zeros(0)
        self._p_values = np.zeros(0)

    def _combine_columns(self, statistics: FloatArray, p_values: FloatArray) -> tuple[float, int]:
        """Keeps the latest per-column results; returns (combined p-value, cut rank)."""
        self._statistics = statistics
        self._p_values = p_values
        p = combine_p_values(p_values, self.correction)
        return p, cut_rank(p_values, self.correction, self.alpha)

    def _check_rank(self, rank: object) -> int:
        """Validates a cut rank: an int in 1..number of columns."""
        checked = check_positive_int("rank", rank)
        if checked > self._n_features:
            raise ValueError(f"rank must be an int in 1..{self._n_features}, got {checked!r}")
        return checked

    def _cut_rejects(self, p_values: FloatArray, rank: int) -> NDArray[np.bool_]:
        """Which p-values the cut at `rank` rejects among this detector's columns."""
        return rejected_at_rank(p_values, self._n_features, rank, self.alpha)
