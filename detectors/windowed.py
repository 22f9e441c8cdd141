"""Shell for two-sample tests of the reference against the last `window_size` rows.

Rows go into a ring buffer. The first test runs when the buffer is full, then every
`test_every` new rows. `drift_detected` is the outcome of the tests run by the latest
`update` (True if any of them rejected) and keeps its value until the next test runs;
`score`, `threshold` and `p_value` are those of the most recent test (None before the
first). `threshold` is on the scale of `score`: the critical value of the statistic at
`alpha`, so ``score > threshold`` when the test signals drift; `alpha` stays the level
`p_value` is compared with.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import NamedTuple

import numpy as np

from detectors.base import (
    DriftDetector,
    FloatArray,
    check_open_unit,
    check_positive_int,
)


class TwoSampleOutcome(NamedTuple):
    """The result of one two-sample test on a full window."""

    detected: bool
    score: float
    p_value: float
    threshold: float


#: Former name, kept for benchmarks/alibi_adapters.py.
TestOutcome = TwoSampleOutcome
TestOutcome.__test__ = False  # type: ignore[attr-defined]  # not a pytest test class


class WindowedTwoSampleTest(DriftDetector):
    """Ring buffer of the last `window_size` rows, tested against the reference."""

    _WINDOW_KEYS = ("_window", "_pos", "_count", "_since_test", "_n_tests")

    def __init__(
        self,
        window_size: int,
        test_every: int | None,
        alpha: float,
        seed: int | None,
    ) -> None:
        super().__init__(seed=seed)
        self.window_size = check_positive_int("window_size", window_size, minimum=2)
        self.test_every = (
            self.window_size if test_every is None else check_positive_int("test_every", test_every)
        )
        self.alpha = check_open_unit("alpha", alpha)
        self._window = np.zeros((0, 0))
        self._pos = 0
        self._count = 0
        self._since_test = 0
        self._n_tests = 0

    def _params(self) -> dict[str, object]:
        return {
            "window_size": self.window_size,
            "test_every": self.test_every,
            "alpha": self.alpha,
            "seed": self.seed,
        }

    def _state_keys(self) -> tuple[str, ...]:
        return (*super()._state_keys(), *self._WINDOW_KEYS)

    @property
    def n_tests(self) -> int:
        """Tests run since fitting or the last reset."""
        return self._n_tests

    def _window_columns(self) -> int:
        """Columns of what the window holds: the input rows' unless a test windows less."""
        return self._n_features

    def _reset_stream(self) -> None:
        self._window = np.zeros((self.window_size, self._window_columns()))
        self._pos = 0
        self._count = 0
        self._since_test = 0
        self._n_tests = 0

    def _after_load(self) -> None:
        expected = (self.window_size, self._window_columns())
        if self._window.shape != expected:
            raise ValueError(f"state window has shape {self._window.shape}, expected {expected}")

    def _update(self, rows: FloatArray) -> None:
        tested = False
        start = 0
        n = rows.shape[0]
        while start < n:
            if self._count < self.window_size:
                need = self.window_size - self._count
            else:
                need = self.test_every - self._since_test
            take = min(need, n - start)
            self._push(rows[start : start + take])
            start += take
            self._n_seen += take
            if self._count < self.window_size:
                self._count += take
                if self._count < self.window_size:
                    continue
            else:
                self._since_test += take
                if self._since_test < self.test_every:
                    continue
            self._since_test = 0
            rng = np.random.default_rng([self._entropy, 1, self._n_tests])
            outcome = self._test(self._window, rng)
            self._n_tests += 1
            if not tested:
                self._drift_flag = 0
                tested = True
            self._score = outcome.score
            self._p_value = outcome.p_value
            self._threshold = outcome.threshold
            if outcome.detected:
                self._mark_detection(self._n_seen - 1)

    def _push(self, rows: FloatArray) -> None:
        k = rows.shape[0]
        if k >= self.window_size:
            self._window[:] = rows[k - self.window_size :]
            self._pos = 0
            return
        idx = (self._pos + np.arange(k)) % self.window_size
        self._window[idx] = rows
        self._pos = int((self._pos + k) % self.window_size)

    @abstractmethod
    def _test(self, window: FloatArray, rng: np.random.Generator) -> TwoSampleOutcome:
        """Tests a full window (row order is arbitrary) against the reference."""
