"""Page-Hinkley change detector for a scalar stream."""

from __future__ import annotations

from numpy.typing import ArrayLike

from detectors.base import (
    DriftDetector,
    FloatArray,
    check_choice,
    check_positive_float,
    check_positive_int,
    reference_scale,
)

MODES = ("both", "up", "down")


class PageHinkley(DriftDetector):
    """Page-Hinkley test: a change of the stream's mean away from its own running mean.

    Values are standardised by the reference standard deviation (so `delta` and `h` are in
    those units). With x_bar the running mean of the stream since the last restart, the
    test accumulates m_t = sum(z_i - x_bar_i - delta) and signals an increase when
    m_t - min(m) > `h`; a decrease symmetrically (`mode` chooses which). After
    `min_instances` values a signal restarts the test. Unlike CUSUM it needs no known
    in-control mean, only a scale.

    `drift_detected` is True when any value of the latest update signalled; `score` is the
    larger test statistic at the last value, `threshold` is `h`, `p_value` is None.

    Input: a float, a 1-D array or an (n, 1) matrix; NaN/Inf values are dropped and counted
    in `rejected`. A 2-D input with more than one column, an empty input or an input with
    more dimensions raises ValueError.

    Memory: O(1).

    Parameters
    ----------
    reference
        Reference values (at least 2) giving the scale, or None to call `fit` later.
    delta
        Magnitude of changes to ignore, in reference standard deviations.
    h
        Detection threshold, in reference standard deviations.
    min_instances
        Values after a (re)start before a signal is allowed.
    mode
        "both", "up" (increases only) or "down" (decreases only).
    seed
        Unused (deterministic); kept for a uniform API.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = PageHinkley(rng.normal(size=500))
    >>> det.update(rng.normal(size=300)).drift_detected
    False
    >>> det.update(rng.normal(loc=1.0, size=100)).detection_index
    327

    References
    ----------
    Page, E. S. (1954). Continuous inspection schemes. Biometrika 41.
    Hinkley, D. V. (1971). Inference about the change-point from cumulative sum tests.
    Biometrika 58(3), 509-523.
    """

    _SCALAR_INPUT = True
    _FITTED_KEYS = ("_sigma",)
    _STREAM_KEYS = ("_count", "_mean", "_up", "_up_min", "_down", "_down_min")

    def __init__(
        self,
        reference: ArrayLike | None = None,
        delta: float = 0.05,
        h: float = 25.0,
        min_instances: int = 30,
        mode: str = "both",
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.delta = check_positive_float("delta", delta, allow_zero=True)
        self.h = check_positive_float("h", h)
        self.min_instances = check_positive_int("min_instances", min_instances)
        check_choice("mode", mode, MODES)
        self.mode = mode
        self._sigma = 1.0
        self._restart()
        if reference is not None:
            self.fit(reference)

    def _params(self) -> dict[str, object]:
        return {
            "delta": self.delta,
            "h": self.h,
            "min_instances": self.min_instances,
            "mode": self.mode,
            "seed": self.seed,
        }

    def _restart(self) -> None:
        self._count = 0
        self._mean = 0.0
        self._up = 0.0
        self._up_min = 0.0
        self._down = 0.0
        self._down_min = 0.0

    def _fit(self, reference: FloatArray) -> None:
        self._sigma = reference_scale(reference)

    def _reset_stream(self) -> None:
        self._restart()
        self._threshold = self.h

    def _update(self, rows: FloatArray) -> None:
        self._drift_flag = 0
        values = (rows[:, 0] / self._sigma).tolist()
        score = 0.0
        for i, z in enumerate(values):
            self._count += 1
            self._mean += (z - self._mean) / self._count
            self._up += z - self._mean - self.delta
            self._up_min = min(self._up_min, self._up)
            self._down += self._mean - z - self.delta
            self._down_min = min(self._down_min, self._down)
            up = self._up - self._up_min if self.mode != "down" else 0.0
            down = self._down - self._down_min if self.mode != "up" else 0.0
            score = max(up, down)
            if self._count >= self.min_instances and score > self.h:
                self._mark_detection(self._n_seen + i)
                self._restart()
        self._n_seen += len(values)
        self._score = score
