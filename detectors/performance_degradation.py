"""Has the model got worse than in its reference period? A windowed test on per-sample loss."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from detectors.base import FloatArray, check_choice, finite_rows
from detectors.windowed import TwoSampleOutcome, WindowedTwoSampleTest

LOSSES = ("zero_one", "continuous")


class PerformanceDegradationTest(WindowedTwoSampleTest):
    """One-sided test of the last `window_size` per-sample losses against the reference's.

    Feed it one loss per labelled prediction, e.g. from
    `detectors.performance_metrics.per_sample_loss`: the 0/1 error of the predicted class
    (``loss="zero_one"``: is the error rate, 1 - accuracy, higher than in the reference?) or
    any per-sample loss such as log loss, Brier or absolute error (``loss="continuous"``:
    is the mean loss higher?). The reference is the same loss over the reference period's
    labelled rows; its finite size is part of the test:

    - zero_one: the window's error count x is compared with the beta-binomial predictive
      distribution of the errors in `window_size` rows given the reference's k errors in
      n rows (uniform prior on the error rate, so Beta(k + 1, n - k + 1)); the p-value is
      P(X >= x). `score` is the window's error rate, `threshold` the largest error rate
      that would not be signalled, so ``score > threshold`` exactly when it signals.
    - continuous: Welch's one-sided t-test of the window mean against the reference mean
      (Welch-Satterthwaite degrees of freedom); `score` is t and `threshold` the critical
      t at `alpha`.

    The window is tested when full, then every `test_every` rows (default: `window_size`,
    disjoint windows); `drift_detected` is the outcome of the latest test (see
    `detectors.windowed`). With no change, each test signals with probability at most
    about `alpha` (measured by `python -m benchmarks.performance` and stated in
    detectors/README.md; the zero_one test is conservative at small error counts).

    Input: a float, a 1-D array or an (n, 1) matrix of losses; NaN/Inf values (and, with
    ``loss="zero_one"``, values other than 0 and 1) are dropped and counted in `rejected`.

    Memory: O(window_size). Cost: O(window_size) per test.

    Parameters
    ----------
    reference
        Per-sample losses of the reference period (at least 2), or None to call `fit`.
    loss
        "zero_one" (0/1 errors) or "continuous" (any real-valued loss).
    window_size
        Labelled rows per test window.
    test_every
        New rows between tests once the window is full (default: `window_size`).
    alpha
        Significance level of each test.
    seed
        Unused (deterministic); kept for a uniform API.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> det = PerformanceDegradationTest((rng.random(2000) < 0.1).astype(float), window_size=200)
    >>> det.update((rng.random(200) < 0.1).astype(float)).drift_detected
    False
    >>> det.update((rng.random(200) < 0.2).astype(float)).drift_detected
    True
    >>> det.score, det.threshold, round(det.p_value, 6)
    (0.19, 0.13, 7.1e-05)

    References
    ----------
    Welch, B. L. (1947). The generalization of "Student's" problem when several different
    population variances are involved. Biometrika 34. Bayarri, M. J. and Berger, J. O.
    (2000). P values for composite null models. JASA 95 (predictive p-values).
    """

    _SCALAR_INPUT = True
    _FITTED_KEYS = ("_ref_n", "_ref_mean", "_ref_var")

    def __init__(
        self,
        reference: ArrayLike | None = None,
        loss: str = "zero_one",
        window_size: int = 200,
        test_every: int | None = None,
        alpha: float = 0.05,
        seed: int | None = None,
    ) -> None:
        check_choice("loss", loss, LOSSES)
        super().__init__(window_size=window_size, test_every=test_every, alpha=alpha, seed=seed)
        self.loss = loss
        self._ref_n = 0
        self._ref_mean = 0.0
        self._ref_var = 0.0
        self._rate_threshold = math.nan
        if reference is not None:
            self.fit(reference)

    def _params(self) -> dict[str, object]:
        return {**super()._params(), "loss": self.loss}

    def _window_columns(self) -> int:
        return 1  # one loss per row

    def _valid_rows(self, arr: FloatArray) -> NDArray[np.bool_]:
        ok = finite_rows(arr)
        if self.loss == "zero_one":
            ok &= (arr[:, 0] == 0.0) | (arr[:, 0] == 1.0)
        return ok

    def _fit(self, reference: FloatArray) -> None:
        values = reference[:, 0]
        if self.loss == "zero_one" and not np.isin(values, (0.0, 1.0)).all():
            raise ValueError('reference losses must be 0 or 1 with loss="zero_one"')
        if values.size < 2:
            raise ValueError(f"reference needs at least 2 losses, got {values.size}")
        self._ref_n = int(values.size)
        self._ref_mean = float(values.mean())
        self._ref_var = float(values.var(ddof=1))

    def _reset_stream(self) -> None:
        super()._reset_stream()
        self._rate_threshold = self._largest_quiet_rate()

    def _after_load(self) -> None:
        super()._after_load()
        self._rate_threshold = self._largest_quiet_rate()

    def _predictive(self) -> tuple[float, float]:
        errors = round(self._ref_mean * self._ref_n)
        return errors + 1.0, self._ref_n - errors + 1.0

    def _largest_quiet_rate(self) -> float:
        """Largest window error rate the zero_one test does not signal (nan otherwise)."""
        if self.loss != "zero_one":
            return math.nan
        a, b = self._predictive()
        counts = np.arange(self.window_size + 1)
        sf = stats.betabinom.sf(counts - 1, self.window_size, a, b)
        signalled = np.flatnonzero(sf < self.alpha)
        first = int(signalled[0]) if signalled.size else self.window_size + 1
        return (first - 1) / self.window_size

    def _test(self, window: FloatArray, rng: np.random.Generator) -> TwoSampleOutcome:
        values = window[:, 0]
        if self.loss == "zero_one":
            errors = int(round(float(values.sum())))
            a, b = self._predictive()
            p = float(stats.betabinom.sf(errors - 1, self.window_size, a, b))
            rate = errors / self.window_size
            return TwoSampleOutcome(p < self.alpha, rate, p, self._rate_threshold)
        w = values.size
        diff = float(values.mean()) - self._ref_mean
        var_w, var_r = float(values.var(ddof=1)) / w, self._ref_var / self._ref_n
        se2 = var_w + var_r
        if se2 <= 0.0:  # both constant: any increase is certain, anything else is not
            t_stat = math.inf if diff > 0 else (0.0 if diff == 0 else -math.inf)
            p = 0.0 if diff > 0 else 1.0
            crit = 0.0
        else:
            df = se2**2 / (var_w**2 / (w - 1) + var_r**2 / (self._ref_n - 1))
            t_stat = diff / math.sqrt(se2)
            p = float(stats.t.sf(t_stat, df))
            crit = float(stats.t.isf(self.alpha, df))
        score = t_stat if math.isfinite(t_stat) else math.copysign(np.finfo(float).max, t_stat)
        return TwoSampleOutcome(p < self.alpha, score, p, crit)
