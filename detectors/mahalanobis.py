"""Mahalanobis-distance OOD scorer with a Ledoit-Wolf shrunk covariance."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from detectors.base import FloatArray, OODScorer


def ledoit_wolf(x: FloatArray) -> tuple[FloatArray, float]:
    """Ledoit-Wolf shrunk covariance of rows `x` and the shrinkage weight.

    Sigma = (1 - rho) S + rho * (tr(S) / d) I with S the (1/n) sample covariance and rho
    estimated as in Ledoit and Wolf (2004), Lemma 3.2-3.4:
    rho = min(b2, d2) / d2 with d2 = ||S - m I||^2 / d and
    b2 = (sum_k ||x_k||^4 - n ||S||^2) / (n^2 d) (Frobenius norms, centred rows).
    """
    n, d = x.shape
    xc = x - x.mean(axis=0)
    s = xc.T @ xc / n
    m = float(np.trace(s)) / d
    d2 = float(((s - m * np.eye(d)) ** 2).sum()) / d
    row_sq = (xc * xc).sum(axis=1)
    b2_bar = (float((row_sq**2).sum()) - n * float((s * s).sum())) / (n * n * d)
    rho = 0.0 if d2 <= 0 else min(max(b2_bar, 0.0), d2) / d2
    return (1.0 - rho) * s + rho * m * np.eye(d), rho


class MahalanobisScorer(OODScorer):
    """Squared Mahalanobis distance to the reference mean (higher = more out of distribution).

    The covariance is the Ledoit-Wolf shrinkage estimate, well conditioned even with
    fewer rows than dimensions (embeddings). Fit on a class-agnostic reference this is the
    single-Gaussian version of Lee et al. (2018); on penultimate-layer embeddings it is a
    strong far-OOD baseline. `threshold` is the (1 - `target_fpr`) quantile of the scores
    of the held-out `calibration_fraction` of the reference.

    Rows with NaN or Inf score NaN, are never flagged and are counted in `rejected`; a
    wrong number of columns, an empty batch or a non-(n, d) input raises ValueError.

    Memory: O(d^2) (mean and precision matrix); the reference is not kept.
    Cost: O(n_ref d^2 + d^3) to fit, O(d^2) per scored row.

    Parameters
    ----------
    reference
        (n_ref, d) in-distribution rows, or None to call `fit` later.
    target_fpr
        Fraction of in-distribution rows allowed above `threshold`.
    calibration_fraction
        Share of the reference held out to calibrate `threshold`.
    seed
        Seeds the split of the reference.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> scorer = MahalanobisScorer(rng.normal(size=(1000, 5)), seed=0)
    >>> scorer.is_ood(np.array([[0.0] * 5, [6.0] * 5])).tolist()
    [False, True]

    References
    ----------
    Ledoit, O. and Wolf, M. (2004). A well-conditioned estimator for large-dimensional
    covariance matrices. J. Multivariate Analysis 88(2), 365-411.
    Lee, K., Lee, K., Lee, H. and Shin, J. (2018). A simple unified framework for detecting
    out-of-distribution samples and adversarial attacks. NeurIPS.
    """

    _FITTED_KEYS = ("_mean", "_precision", "_shrinkage")

    def __init__(
        self,
        reference: ArrayLike | None = None,
        target_fpr: float = 0.05,
        calibration_fraction: float = 0.2,
        seed: int | None = None,
    ) -> None:
        super().__init__(target_fpr, calibration_fraction, seed)
        self._mean = np.zeros(0)
        self._precision: FloatArray = np.zeros((0, 0))
        self._shrinkage = 0.0
        if reference is not None:
            self.fit(reference)

    @property
    def shrinkage(self) -> float:
        """Ledoit-Wolf shrinkage weight used (0: sample covariance, 1: scaled identity)."""
        return self._shrinkage

    def _fit(self, reference: FloatArray) -> None:
        self._mean = reference.mean(axis=0)
        cov, self._shrinkage = ledoit_wolf(reference)
        self._precision = np.asarray(np.linalg.pinv(cov, hermitian=True), dtype=np.float64)

    def _after_load(self) -> None:
        d = self._n_features
        if self._mean.shape != (d,) or self._precision.shape != (d, d):
            raise ValueError("state mean/precision do not match the number of features")

    def _score_rows(self, rows: FloatArray) -> FloatArray:
        diff = rows - self._mean
        out: FloatArray = np.einsum("ij,jk,ik->i", diff, self._precision, diff)
        return out
