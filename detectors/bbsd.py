"""Black-box shift detection: KS tests on a classifier's class probabilities."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from detectors.base import FloatArray, as_matrix, check_choice
from detectors.ks import KSDrift

INPUTS = ("probabilities", "logits")


def softmax(logits: FloatArray) -> FloatArray:
    """Row-wise softmax; rows holding NaN or Inf come out as NaN (and are later rejected)."""
    with np.errstate(invalid="ignore", over="ignore"):
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        out: FloatArray = e / e.sum(axis=1, keepdims=True)
    out[~np.isfinite(logits).all(axis=1)] = np.nan
    return out


class BBSDDrift(KSDrift):
    """Black-box shift detection (BBSD): per-class KS tests on softmax outputs.

    A label or covariate shift that matters to the model shows up in its outputs, so
    testing the (low-dimensional) class probabilities is a cheap, strong detector (Lipton
    et al. 2018; best overall in Rabanser et al. 2019). This is `KSDrift` over the
    probability vectors, combined across classes by Bonferroni (default) or
    Benjamini-Hochberg; with ``input="logits"`` rows are passed through a softmax first
    (reference too). `score`, `p_value`, `threshold` and drift timing are as in `KSDrift`.

    Rows with NaN or Inf are dropped and counted in `rejected`; a wrong number of columns,
    an empty batch or an input that is not (n, d) or a single row raises ValueError.

    Memory: O(reference + window) over n_classes columns. Cost per test as `KSDrift`.

    Parameters
    ----------
    reference
        (n_ref, n_classes) probabilities or logits, or None to call `fit` later.
    window_size, test_every, alpha, correction, seed, method
        As in `KSDrift` (`method`: "auto", "exact" or "asymp", scipy.stats.ks_2samp's).
    input
        "probabilities" (rows are softmax outputs) or "logits".

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = BBSDDrift(rng.normal(size=(500, 3)), window_size=100, input="logits")
    >>> det.update(rng.normal(size=(100, 3))).drift_detected
    False
    >>> det.update(rng.normal(size=(100, 3)) + [2.0, 0.0, 0.0]).drift_detected
    True

    References
    ----------
    Lipton, Z. C., Wang, Y.-X. and Smola, A. (2018). Detecting and correcting for label
    shift with black box predictors. ICML.
    Rabanser, S., Günnemann, S. and Lipton, Z. C. (2019). Failing loudly: an empirical
    study of methods for detecting dataset shift. NeurIPS.
    """

    def __init__(
        self,
        reference: ArrayLike | None = None,
        window_size: int = 100,
        test_every: int | None = None,
        alpha: float = 0.05,
        correction: str = "bonferroni",
        input: str = "probabilities",  # noqa: A002 - the documented argument name
        seed: int | None = None,
        method: Literal["auto", "exact", "asymp"] = "auto",
    ) -> None:
        check_choice("input", input, INPUTS)
        self.input = input
        super().__init__(
            reference=None,
            window_size=window_size,
            test_every=test_every,
            alpha=alpha,
            correction=correction,
            seed=seed,
            method=method,
        )
        if reference is not None:
            self.fit(reference)

    def _params(self) -> dict[str, object]:
        return {**super()._params(), "input": self.input}

    def _to_probabilities(self, arr: FloatArray) -> FloatArray:
        return softmax(arr) if self.input == "logits" else arr

    def fit(self, reference: ArrayLike) -> BBSDDrift:
        """Fits on reference probabilities (or logits, turned into probabilities)."""
        return super().fit(self._to_probabilities(as_matrix(reference, None, "reference")))

    def update(self, batch: ArrayLike) -> BBSDDrift:
        """Feeds probability (or logit) rows; rows with NaN/Inf are dropped and counted."""
        self._require_fitted()
        return super().update(self._to_probabilities(as_matrix(batch, self._n_features)))
