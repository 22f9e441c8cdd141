"""Multivariate drift from the PCA reconstruction error of a window (as in NannyML)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from detectors.base import FloatArray, check_open_unit, check_positive_float
from detectors.windowed import TwoSampleOutcome, WindowedTwoSampleTest


class PCAReconstructionDrift(WindowedTwoSampleTest):
    """Drift in the joint structure of the features, seen as a change in PCA reconstruction error.

    At fit time the reference is standardised per column and a PCA keeps the fewest
    components explaining `variance` of the variance. A row's error is the Euclidean
    distance between its standardised value and its reconstruction from those components.
    The reference is cut into consecutive chunks of `window_size` rows; the bounds are the
    mean of the chunks' mean errors plus and minus `n_std` standard deviations. When the
    window is full, and then every `test_every` rows, its mean error is compared with the
    bounds: outside means drift. This catches changes in correlations that per-column
    tests miss. `score` is the window's mean error, `threshold` the upper bound
    (`lower_threshold` the lower one), `p_value` is None.

    Rows with NaN or Inf are dropped and counted in `rejected`; a wrong number of columns,
    an empty batch or an input that is not (n, d) or a single row raises ValueError.

    Memory: O(d * n_components + window) -- scaler, components and the window; the
    reference is not kept. Cost per test: O(window_size * d * n_components).

    Parameters
    ----------
    reference
        (n_ref, d) reference rows (at least 2 * window_size), or None to call `fit` later.
    window_size
        Rows per window (and per reference chunk).
    test_every
        New rows between tests once the window is full (default: `window_size`).
    variance
        Fraction of the variance the kept components explain (NannyML's default 0.65).
    n_std
        Width of the bounds in standard deviations of the reference chunks' errors.
    seed
        Unused (deterministic); kept for a uniform API.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> cov = [[1.0, 0.9], [0.9, 1.0]]
    >>> det = PCAReconstructionDrift(rng.multivariate_normal([0, 0], cov, 2000), window_size=100)
    >>> det.update(rng.multivariate_normal([0, 0], cov, 100)).drift_detected
    False
    >>> det.update(rng.multivariate_normal([0, 0], [[1.0, -0.9], [-0.9, 1.0]], 100)).drift_detected
    True

    References
    ----------
    NannyML documentation, "Data Reconstruction with PCA" (multivariate drift detection).
    Jolliffe, I. T. (2002). Principal Component Analysis. Springer.
    """

    _FITTED_KEYS = ("_mean", "_scale", "_components", "_lower", "_upper")

    def __init__(
        self,
        reference: ArrayLike | None = None,
        window_size: int = 100,
        test_every: int | None = None,
        variance: float = 0.65,
        n_std: float = 3.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(window_size=window_size, test_every=test_every, alpha=0.05, seed=seed)
        self.variance = check_open_unit("variance", variance)
        self.n_std = check_positive_float("n_std", n_std)
        self._mean = np.zeros(0)
        self._scale = np.zeros(0)
        self._components = np.zeros((0, 0))
        self._lower = 0.0
        self._upper = 0.0
        if reference is not None:
            self.fit(reference)

    def _params(self) -> dict[str, object]:
        return {
            "window_size": self.window_size,
            "test_every": self.test_every,
            "variance": self.variance,
            "n_std": self.n_std,
            "seed": self.seed,
        }

    @property
    def n_components(self) -> int:
        """Principal components kept."""
        return int(self._components.shape[0])

    @property
    def lower_threshold(self) -> float:
        """Lower bound of the window's mean reconstruction error."""
        return self._lower

    def reconstruction_errors(self, rows: FloatArray) -> FloatArray:
        """Per-row reconstruction error in standardised units."""
        z = (rows - self._mean) / self._scale
        back = (z @ self._components.T) @ self._components
        err: FloatArray = np.sqrt(((z - back) ** 2).sum(axis=1))
        return err

    def _fit(self, reference: FloatArray) -> None:
        n = reference.shape[0]
        if n < 2 * self.window_size:
            raise ValueError(
                f"reference needs at least 2 * window_size = {2 * self.window_size} rows, got {n}"
            )
        self._mean = reference.mean(axis=0)
        scale = reference.std(axis=0)
        self._scale = np.where(scale > 0, scale, 1.0)
        z = (reference - self._mean) / self._scale
        _, s, vt = np.linalg.svd(z, full_matrices=False)
        explained = np.cumsum(s**2) / max(float((s**2).sum()), 1e-300)
        k = int(np.searchsorted(explained, self.variance - 1e-12) + 1)
        self._components = vt[: min(k, vt.shape[0])]
        errors = self.reconstruction_errors(reference)
        n_chunks = n // self.window_size
        chunk_means = errors[: n_chunks * self.window_size].reshape(n_chunks, -1).mean(axis=1)
        centre, spread = float(chunk_means.mean()), float(chunk_means.std())
        self._lower = centre - self.n_std * spread
        self._upper = centre + self.n_std * spread

    def _reset_stream(self) -> None:
        super()._reset_stream()
        self._threshold = self._upper

    def _after_load(self) -> None:
        super()._after_load()
        if self._components.ndim != 2 or self._components.shape[1] != self._n_features:
            raise ValueError("state components do not match the number of features")

    def _test(self, window: FloatArray, rng: np.random.Generator) -> TwoSampleOutcome:
        err = float(self.reconstruction_errors(window).mean())
        drifted = err > self._upper or err < self._lower
        return TwoSampleOutcome(drifted, err, float("nan"), self._upper)
