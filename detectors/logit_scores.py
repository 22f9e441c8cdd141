"""OOD scores computed from a classifier's logits: energy and maximum softmax probability."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from detectors.base import FloatArray, OODScorer, check_positive_float


def logsumexp_rows(x: FloatArray) -> FloatArray:
    """log(sum(exp(x))) per row, without overflow."""
    top = x.max(axis=1, keepdims=True)
    out: FloatArray = (top + np.log(np.exp(x - top).sum(axis=1, keepdims=True)))[:, 0]
    return out


class _LogitScorer(OODScorer):
    """Scorer of a classifier's logits that learns nothing: the reference only calibrates."""

    _FITTED_KEYS = ()
    _LEARNS = False

    def _fit(self, reference: FloatArray) -> None:
        if reference.shape[1] < 2:
            raise ValueError(f"logits need at least 2 classes, got {reference.shape[1]}")


class EnergyScorer(_LogitScorer):
    """Energy score of the logits, E(x) = -T logsumexp(f(x) / T) (higher = more OOD).

    Better aligned with the input density than the softmax confidence (Liu et al. 2020),
    and free: it needs only the logits the model already returns. Nothing is learnt from
    the reference; all of it calibrates `threshold`, the (1 - `target_fpr`) quantile of
    the reference scores.

    Rows with NaN or Inf score NaN, are never flagged and are counted in `rejected`; a
    wrong number of columns, an empty batch or a non-(n, d) input raises ValueError.

    Memory: O(1). Cost: O(n_classes) per row.

    Parameters
    ----------
    reference
        (n_ref, n_classes) in-distribution logits, or None to call `fit` later.
    temperature
        Temperature T.
    target_fpr
        Fraction of in-distribution rows allowed above `threshold`.
    seed
        Unused (no randomness); kept for a uniform API.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=(500, 3)) + [8.0, 0.0, 0.0]
    >>> scorer = EnergyScorer(ref)
    >>> scorer.is_ood(np.array([[8.0, 0.0, 0.0], [0.1, 0.0, 0.1]])).tolist()
    [False, True]

    References
    ----------
    Liu, W., Wang, X., Owens, J. and Li, Y. (2020). Energy-based out-of-distribution
    detection. NeurIPS.
    """

    def __init__(
        self,
        reference: ArrayLike | None = None,
        temperature: float = 1.0,
        target_fpr: float = 0.05,
        seed: int | None = None,
    ) -> None:
        super().__init__(target_fpr, 0.2, seed)
        self.temperature = check_positive_float("temperature", temperature)
        if reference is not None:
            self.fit(reference)

    def _params(self) -> dict[str, object]:
        return {"temperature": self.temperature, "target_fpr": self.target_fpr, "seed": self.seed}

    def _score_rows(self, rows: FloatArray) -> FloatArray:
        out: FloatArray = -self.temperature * logsumexp_rows(rows / self.temperature)
        return out


class MaxSoftmaxScorer(_LogitScorer):
    """One minus the maximum softmax probability of the logits (higher = more OOD).

    The classic baseline (Hendrycks and Gimpel 2017): an input the model is unsure about
    is more likely out of distribution. Nothing is learnt from the reference; all of it
    calibrates `threshold`, the (1 - `target_fpr`) quantile of the reference scores.

    Rows with NaN or Inf score NaN, are never flagged and are counted in `rejected`; a
    wrong number of columns, an empty batch or a non-(n, d) input raises ValueError.

    Memory: O(1). Cost: O(n_classes) per row.

    Parameters
    ----------
    reference
        (n_ref, n_classes) in-distribution logits, or None to call `fit` later.
    target_fpr
        Fraction of in-distribution rows allowed above `threshold`.
    seed
        Unused (no randomness); kept for a uniform API.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=(500, 3)) + [8.0, 0.0, 0.0]
    >>> scorer = MaxSoftmaxScorer(ref)
    >>> scorer.is_ood(np.array([[8.0, 0.0, 0.0], [0.1, 0.0, 0.1]])).tolist()
    [False, True]

    References
    ----------
    Hendrycks, D. and Gimpel, K. (2017). A baseline for detecting misclassified and
    out-of-distribution examples in neural networks. ICLR.
    """

    def __init__(
        self,
        reference: ArrayLike | None = None,
        target_fpr: float = 0.05,
        seed: int | None = None,
    ) -> None:
        super().__init__(target_fpr, 0.2, seed)
        if reference is not None:
            self.fit(reference)

    def _params(self) -> dict[str, object]:
        return {"target_fpr": self.target_fpr, "seed": self.seed}

    def _score_rows(self, rows: FloatArray) -> FloatArray:
        out: FloatArray = 1.0 - np.exp(rows.max(axis=1) - logsumexp_rows(rows))
        return out
