"""Two-sided CUSUM change detector for a scalar stream (e.g. a loss or a confidence)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from detectors.base import DriftDetector, FloatArray, check_positive_float, reference_scale


class CUSUM(DriftDetector):
    """Page's two-sided cumulative sum test for a shift of the mean away from the reference.

    Values are standardised by the reference mean and standard deviation, z = (x - mu) /
    sigma. Two sums track upward and downward drift, S+ = max(0, S+ + z - k) and
    S- = max(0, S- - z - k) with k = `delta` / 2; drift is signalled when either exceeds `h`,
    and both sums restart from 0 (so the next detection needs new evidence). With the
    defaults (`delta`=1, `h`=5) the in-control average run length is about 930 values
    (two-sided) and a one-sigma shift is found after about 10.

    `drift_detected` is True when any value of the latest update signalled; `score` is
    max(S+, S-) at the last value (before a restart), `threshold` is `h`, `p_value` is None.

    Input: a float, a 1-D array or an (n, 1) matrix; NaN/Inf values are dropped and counted
    in `rejected`. A 2-D input with more than one column, an empty input or an input with
    more dimensions raises ValueError.

    Memory: O(1) (two sums, the reference mean and standard deviation).

    Parameters
    ----------
    reference
        Reference values (at least 2), or None to call `fit` later.
    delta
        Shift to detect, in reference standard deviations.
    h
        Decision threshold on the sums, in reference standard deviations.
    seed
        Unused (deterministic); kept for a uniform API.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = CUSUM(rng.normal(size=500))
    >>> det.update(rng.normal(size=200)).drift_detected
    False
    >>> det.update(rng.normal(loc=1.0, size=50)).detection_index
    212

    References
    ----------
    Page, E. S. (1954). Continuous inspection schemes. Biometrika 41(1/2), 100-115.
    Montgomery, D. C. (2009). Introduction to Statistical Quality Control, ch. 9.
    """

    _SCALAR_INPUT = True
    _FITTED_KEYS = ("_mu", "_sigma")
    _STREAM_KEYS = ("_pos", "_neg")

    def __init__(
        self,
        reference: ArrayLike | None = None,
        delta: float = 1.0,
        h: float = 5.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.delta = check_positive_float("delta", delta)
        self.h = check_positive_float("h", h)
        self._mu = 0.0
        self._sigma = 1.0
        self._pos = 0.0
        self._neg = 0.0
        if reference is not None:
            self.fit(reference)

    def _params(self) -> dict[str, object]:
        return {"delta": self.delta, "h": self.h, "seed": self.seed}

    def _fit(self, reference: FloatArray) -> None:
        self._sigma = reference_scale(reference)
        self._mu = float(reference[:, 0].mean())

    def _reset_stream(self) -> None:
        self._pos = 0.0
        self._neg = 0.0
        self._threshold = self.h

    def _update(self, rows: FloatArray) -> None:
        self._drift_flag = 0
        k = self.delta / 2.0
        pos, neg = self._pos, self._neg
        z_all = ((rows[:, 0] - self._mu) / self._sigma).tolist()
        score = 0.0
        for i, z in enumerate(z_all):
            pos = max(0.0, pos + z - k)
            neg = max(0.0, neg - z - k)
            score = max(pos, neg)
            if score > self.h:
                self._mark_detection(self._n_seen + i)
                pos = neg = 0.0
        self._pos, self._neg = pos, neg
        self._n_seen += len(z_all)
        self._score = score if math.isfinite(score) else float(np.finfo(float).max)
