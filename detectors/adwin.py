"""ADWIN: adaptive windowing change detector for a scalar stream, in bounded memory."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from detectors.base import (
    DriftDetector,
    FloatArray,
    check_open_unit,
    check_positive_int,
)

#: Levels of the exponential histogram: the window can reach max_buckets * 2**_LEVELS rows.
_LEVELS = 40


class ADWIN(DriftDetector):
    """Adaptive window: drops old values whenever two sub-windows have different means.

    The window is stored as an exponential histogram (Bifet and Gavaldà 2007): at most
    `max_buckets` + 1 buckets per level, level i summarising 2**i values by their sum and
    variance, so memory is O(max_buckets * log(window)) and fixed here at 40 levels.
    Every `clock` values (once the window holds more than `grace_period`), each split of the
    window into an older and a newer part at a bucket boundary is tested with the Hoeffding-
    Bernstein bound of ADWIN2 at confidence `delta`; while a split shows a difference, the
    oldest bucket is dropped and drift is signalled. The reference, if given, fills the
    window first (without signalling), so drift is judged against it from the start.

    `drift_detected` is True when any value of the latest update caused a cut; `score` is
    the largest mean difference of the last check minus its bound (> 0 means a cut),
    `threshold` is 0, `p_value` is None. `width` and `mean` describe the current window.

    Input: a float, a 1-D array or an (n, 1) matrix; NaN/Inf values are dropped and counted
    in `rejected`. A 2-D input with more than one column, an empty input or an input with
    more dimensions raises ValueError.

    Memory: O(max_buckets * 40) floats, whatever the stream length.

    Parameters
    ----------
    reference
        Values that fill the initial window, or None to call `fit` later.
    delta
        Confidence of the cut test (smaller: fewer false alarms, slower detection).
    clock
        Values between cut checks.
    max_buckets
        Buckets kept per level before two are merged.
    min_window_length
        Smallest sub-window on either side of a split.
    grace_period
        Values the window must hold before cuts are checked.
    seed
        Unused (deterministic); kept for a uniform API.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = ADWIN(rng.normal(size=300))
    >>> det.update(rng.normal(size=300)).drift_detected
    False
    >>> det.update(rng.normal(loc=1.0, size=200)).detection_index
    351

    References
    ----------
    Bifet, A. and Gavaldà, R. (2007). Learning from time-changing data with adaptive
    windowing. SIAM International Conference on Data Mining.
    """

    _SCALAR_INPUT = True
    _FITTED_KEYS = ("_init_state",)
    _STREAM_KEYS = (
        "_totals",
        "_variances",
        "_counts",
        "_width",
        "_total",
        "_variance",
        "_ticks",
    )

    def __init__(
        self,
        reference: ArrayLike | None = None,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.delta = check_open_unit("delta", delta)
        self.clock = check_positive_int("clock", clock)
        self.max_buckets = check_positive_int("max_buckets", max_buckets, minimum=2)
        self.min_window_length = check_positive_int("min_window_length", min_window_length)
        self.grace_period = check_positive_int("grace_period", grace_period)
        self._init_state = np.zeros(0)
        self._clear_window()
        if reference is not None:
            self.fit(reference)

    def _params(self) -> dict[str, object]:
        return {
            "delta": self.delta,
            "clock": self.clock,
            "max_buckets": self.max_buckets,
            "min_window_length": self.min_window_length,
            "grace_period": self.grace_period,
            "seed": self.seed,
        }

    @property
    def width(self) -> int:
        """Values in the current window."""
        return int(self._width)

    @property
    def mean(self) -> float | None:
        """Mean of the current window (None when empty)."""
        return self._total / self._width if self._width else None

    def _clear_window(self) -> None:
        self._totals = np.zeros((_LEVELS, self.max_buckets + 1))
        self._variances = np.zeros((_LEVELS, self.max_buckets + 1))
        self._counts = np.zeros(_LEVELS, dtype=np.int64)
        self._width = 0
        self._total = 0.0
        self._variance = 0.0
        self._ticks = 0

    def _pack(self) -> FloatArray:
        return np.concatenate(
            [
                self._totals.ravel(),
                self._variances.ravel(),
                self._counts.astype(np.float64),
                [self._width, self._total, self._variance],
            ]
        )

    def _unpack(self, packed: FloatArray) -> None:
        size = _LEVELS * (self.max_buckets + 1)
        self._totals = packed[:size].reshape(_LEVELS, -1).copy()
        self._variances = packed[size : 2 * size].reshape(_LEVELS, -1).copy()
        self._counts = packed[2 * size : 2 * size + _LEVELS].astype(np.int64)
        self._width = int(packed[-3])
        self._total = float(packed[-2])
        self._variance = float(packed[-1])
        self._ticks = 0

    def _fit(self, reference: FloatArray) -> None:
        self._clear_window()
        for x in reference[:, 0].tolist():
            self._insert(x)
        self._init_state = self._pack()

    def _reset_stream(self) -> None:
        self._unpack(self._init_state)
        self._threshold = 0.0

    def _after_load(self) -> None:
        size = _LEVELS * (self.max_buckets + 1)
        if self._totals.shape != (_LEVELS, self.max_buckets + 1) or self._init_state.shape != (
            2 * size + _LEVELS + 3,
        ):
            raise ValueError("state buckets do not match max_buckets")

    def _insert(self, x: float) -> None:
        if self._width:
            mean = self._total / self._width
            self._variance += self._width * (x - mean) ** 2 / (self._width + 1)
        self._width += 1
        self._total += x
        self._add_bucket(0, x, 0.0)

    def _add_bucket(self, level: int, total: float, variance: float) -> None:
        cap = self.max_buckets + 1
        while True:
            c = int(self._counts[level])
            self._totals[level, c] = total
            self._variances[level, c] = variance
            self._counts[level] = c + 1
            if c + 1 < cap:
                return
            # merge the two oldest buckets of this level into one of the next level
            t1, t2 = self._totals[level, 0], self._totals[level, 1]
            v1, v2 = self._variances[level, 0], self._variances[level, 1]
            size = 2.0**level
            total = t1 + t2
            variance = v1 + v2 + size * size * (t1 / size - t2 / size) ** 2 / (2 * size)
            self._totals[level, :-2] = self._totals[level, 2:]
            self._variances[level, :-2] = self._variances[level, 2:]
            self._counts[level] = c - 1
            if level + 1 == _LEVELS:  # pragma: no cover - needs ~10**12 values
                self._width -= int(2 * size)
                self._total -= total
                return
            level += 1

    def _drop_oldest(self) -> None:
        level = int(np.flatnonzero(self._counts)[-1])
        size = 2**level
        total, variance = self._totals[level, 0], self._variances[level, 0]
        rest = self._width - size
        rest_mean = (self._total - total) / rest if rest else 0.0
        self._variance -= variance + size * rest * (total / size - rest_mean) ** 2 / self._width
        self._variance = max(self._variance, 0.0)
        self._width = rest
        self._total -= total
        c = int(self._counts[level])
        self._totals[level, : c - 1] = self._totals[level, 1:c]
        self._variances[level, : c - 1] = self._variances[level, 1:c]
        self._counts[level] = c - 1

    def _check_cut(self) -> bool:
        """Drops old buckets while some split shows a change; True if any was dropped."""
        cut_any = False
        while self._width > self.grace_period:
            w = self._width
            var = self._variance / w
            dd = math.log(2.0 * math.log(w) / self.delta)
            n0, sum0 = 0, 0.0
            best = -math.inf
            cut = False
            levels = np.flatnonzero(self._counts)[::-1]
            for level in levels.tolist():
                size = 2**level
                for j in range(int(self._counts[level])):
                    n0 += size
                    sum0 += float(self._totals[level, j])
                    n1 = w - n0
                    if n1 < self.min_window_length:
                        break
                    if n0 < self.min_window_length:
                        continue
                    m = 1.0 / (n0 - self.min_window_length + 1) + 1.0 / (
                        n1 - self.min_window_length + 1
                    )
                    eps = math.sqrt(2.0 * m * var * dd) + 2.0 / 3.0 * dd * m
                    gap = abs(sum0 / n0 - (self._total - sum0) / n1) - eps
                    best = max(best, gap)
                    if gap > 0:
                        cut = True
                        break
                if cut:
                    break
            self._score = best if math.isfinite(best) else self._score
            if not cut:
                break
            self._drop_oldest()
            cut_any = True
        return cut_any

    def _update(self, rows: FloatArray) -> None:
        self._drift_flag = 0
        for i, x in enumerate(rows[:, 0].tolist()):
            self._insert(x)
            self._ticks += 1
            if self._ticks % self.clock == 0 and self._check_cut():
                self._mark_detection(self._n_seen + i)
        self._n_seen += rows.shape[0]
