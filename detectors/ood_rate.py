"""Drift as an excess of out-of-distribution rows: a binomial test on a window's OOD rate."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from detectors.base import FloatArray, OODScorer, State
from detectors.windowed import TwoSampleOutcome, WindowedTwoSampleTest

_PREFIX = "scorer."


class OODRateTest(WindowedTwoSampleTest):
    """One-sided binomial test: is the window's OOD rate above the scorer's calibrated FPR?

    Each row is flagged by `scorer.is_ood`; the window keeps the last `window_size` flags.
    When it is full, and then every `test_every` rows, the count k of flagged rows is
    tested against Binomial(window_size, scorer.target_fpr): p = P(K >= k). Drift is
    signalled when p < `alpha`. `score` is the observed OOD rate k / window_size,
    `threshold` the smallest rate that would be signalled, `p_value` the binomial p-value.
    The scorer is fitted by `fit(reference)` (or may be passed already fitted), and its
    state travels inside this detector's `state_dict`. The test trusts the calibration:
    a threshold calibrated on n_cal held-out rows has a true false-positive rate off by
    about sqrt(fpr (1 - fpr) / n_cal) (0.015 at fpr 0.05 and 200 rows), so give the scorer
    a reference of thousands of rows or use a smaller `alpha`.

    Rows with NaN or Inf are dropped and counted in `rejected` (they are never flagged);
    a wrong number of columns, an empty batch or a non-(n, d) input raises ValueError.

    Memory: the scorer's + O(window) flags.

    Parameters
    ----------
    scorer
        An `OODScorer` (fitted, or fitted here by `reference`/`fit`).
    reference
        In-distribution rows to fit the scorer on, or None.
    window_size
        Rows per test window.
    test_every
        New rows between tests once the window is full (default: `window_size`).
    alpha
        Significance level.
    seed
        Unused (deterministic); kept for a uniform API.

    Example
    -------
    >>> import numpy as np
    >>> from detectors.mahalanobis import MahalanobisScorer
    >>> rng = np.random.default_rng(0)
    >>> det = OODRateTest(MahalanobisScorer(seed=0), rng.normal(size=(5000, 3)), window_size=100)
    >>> det.update(rng.normal(size=(100, 3))).drift_detected
    False
    >>> det.update(rng.normal(loc=1.5, size=(100, 3))).drift_detected
    True
    >>> det.score > det.threshold
    True

    References
    ----------
    Clopper, C. J. and Pearson, E. S. (1934). The use of confidence or fiducial limits
    illustrated in the case of the binomial. Biometrika 26(4).
    """

    def __init__(
        self,
        scorer: OODScorer,
        reference: ArrayLike | None = None,
        window_size: int = 100,
        test_every: int | None = None,
        alpha: float = 0.05,
        seed: int | None = None,
    ) -> None:
        if not isinstance(scorer, OODScorer):
            raise ValueError(f"scorer must be an OODScorer, got {type(scorer).__name__}")
        super().__init__(window_size=window_size, test_every=test_every, alpha=alpha, seed=seed)
        self.scorer = scorer
        self._rate_threshold = 1.0
        if reference is not None:
            self.fit(reference)
        elif scorer.threshold is not None:
            self._n_features = scorer.n_features
            self._fitted = True
            self.reset()

    def _params(self) -> dict[str, object]:
        return {**super()._params(), "scorer": repr(self.scorer)}

    def _fit(self, reference: FloatArray) -> None:
        self.scorer.fit(reference)

    def _window_columns(self) -> int:
        return 1  # the window holds one OOD flag per row

    def _reset_stream(self) -> None:
        super()._reset_stream()
        self.scorer.reset()
        self._rate_threshold = self._smallest_signalled_rate()
        self._threshold = self._rate_threshold

    def _smallest_signalled_rate(self) -> float:
        n = self.window_size
        ks = np.arange(n + 1)
        sf = stats.binom.sf(ks - 1, n, self.scorer.target_fpr)
        hits = np.flatnonzero(sf < self.alpha)
        return float(hits[0] / n) if hits.size else float("inf")

    def _after_load(self) -> None:
        if self._window.shape != (self.window_size, 1):
            raise ValueError(f"state window has shape {self._window.shape}")
        self._rate_threshold = self._smallest_signalled_rate()

    def _update(self, rows: FloatArray) -> None:
        flags = self.scorer.is_ood(rows).astype(np.float64).reshape(-1, 1)
        super()._update(flags)

    def _test(self, window: FloatArray, rng: np.random.Generator) -> TwoSampleOutcome:
        k = int(window.sum())
        n = self.window_size
        p = float(stats.binom.sf(k - 1, n, self.scorer.target_fpr))
        return TwoSampleOutcome(p < self.alpha, k / n, p, self._rate_threshold)

    def state_dict(self) -> State:
        """This detector's state plus the scorer's, under keys prefixed "scorer."."""
        state = super().state_dict()
        for key, value in self.scorer.state_dict().items():
            state[_PREFIX + key] = value
        return state

    def load_state_dict(self, state: State) -> OODRateTest:
        """Restores the scorer's state and this detector's; mismatches raise ValueError."""
        if not isinstance(state, dict):
            raise ValueError(f"state must be a dict, got {type(state).__name__}")
        own: dict[str, Any] = {k: v for k, v in state.items() if not k.startswith(_PREFIX)}
        inner = {k[len(_PREFIX) :]: v for k, v in state.items() if k.startswith(_PREFIX)}
        if state.get("class") != type(self).__name__:
            raise ValueError(f"state is for {state.get('class')!r}, not {type(self).__name__!r}")
        self.scorer.load_state_dict(inner)
        super().load_state_dict(own)
        return self
