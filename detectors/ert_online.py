"""Shell for online detectors that test at every row against thresholds set for an ERT.

Such a detector computes one statistic per accepted row and compares it with the
threshold of that step: per-step thresholds while its windows ramp up, then one
steady-state threshold (see `detectors.ert_calibration`). Only the statistic, the
simulation that calibrates it and the window it keeps are a detector's own.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from detectors.base import DriftDetector, FloatArray, check_positive_float

#: Rows handled at once (bounds the transient memory of large batches).
_CHUNK_ROWS = 1024


class ErtOnlineDetector(DriftDetector):
    """Online detector with a statistic per row and thresholds calibrated to `ert`.

    Subclasses set `_thresholds` (``n_ramp + 1`` values from `ert_thresholds`) in `_fit`,
    give `_n_ramp` and compute the statistics of a chunk of rows in `_step_statistics`.
    """

    def __init__(self, ert: float, seed: int | None) -> None:
        super().__init__(seed=seed)
        self.ert = check_positive_float("ert", ert)
        if self.ert <= 1.0:
            raise ValueError(f"ert must be a float > 1, got {ert!r}")
        self._thresholds = np.zeros(0)

    def _update(self, rows: FloatArray) -> None:
        self._drift_flag = 0
        if rows.shape[0] == 1:  # one row at a time is the common live case: no index arrays
            score = float(self._step_statistics(rows)[0])
            step = self._n_seen
            threshold = float(self._thresholds[min(step, self._n_ramp)])
            if score > threshold:
                self._mark_detection(step)
            self._n_seen += 1
            self._score, self._threshold = score, threshold
            return
        for start in range(0, rows.shape[0], _CHUNK_ROWS):
            stats = self._step_statistics(rows[start : start + _CHUNK_ROWS])
            steps = self._n_seen + np.arange(stats.shape[0])  # 0-based step index of each row
            thr = self._thresholds[np.minimum(steps, self._n_ramp)]
            crossed = np.flatnonzero(stats > thr)
            if crossed.size:
                self._mark_detection(int(steps[crossed[0]]))
            self._n_seen += stats.shape[0]
            self._score = float(stats[-1])
            self._threshold = float(thr[-1])

    @property
    @abstractmethod
    def _n_ramp(self) -> int:
        """Steps with a threshold of their own; later steps share the last threshold."""

    @abstractmethod
    def _step_statistics(self, rows: FloatArray) -> FloatArray:
        """The statistic after each of `rows` (finite, validated), advancing the window."""
