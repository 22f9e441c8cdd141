"""k-th nearest-neighbour distance OOD scorer on L2-normalised embeddings."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from detectors.base import FloatArray, OODScorer, check_positive_int

#: Query rows compared with the reference at once (bounds the distance block's memory).
_CHUNK_ROWS = 256


def l2_normalise(rows: FloatArray) -> FloatArray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero)."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    out: FloatArray = rows / np.where(norms > 0, norms, 1.0)
    return out


class KnnScorer(OODScorer):
    """Distance to the k-th nearest reference embedding after L2 normalisation.

    Non-parametric (no Gaussian assumption) and strong on penultimate-layer embeddings
    (Sun et al. 2022). Distances are Euclidean between unit vectors, computed by brute
    force as sqrt(2 - 2 cos) with one matrix product per chunk of 256 query rows and a
    partial sort. `threshold` is the (1 - `target_fpr`) quantile of the scores of the
    held-out `calibration_fraction` of the reference.

    Rows with NaN or Inf score NaN, are never flagged and are counted in `rejected`; a
    wrong number of columns, an empty batch or a non-(n, d) input raises ValueError.

    Memory: O(n_ref d) (the normalised reference, float32) + O(256 n_ref) while scoring.
    Cost: O(n_ref d) per scored row.

    Parameters
    ----------
    reference
        (n_ref, d) in-distribution embeddings, or None to call `fit` later.
    k
        Which neighbour's distance is the score (the fitted part must hold >= k rows).
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
    >>> centre = np.r_[4.0, np.zeros(7)]
    >>> scorer = KnnScorer(rng.normal(size=(1000, 8)) + centre, k=10, seed=0)
    >>> scorer.is_ood(np.array([centre, -centre])).tolist()
    [False, True]

    References
    ----------
    Sun, Y., Ming, Y., Zhu, X. and Li, Y. (2022). Out-of-distribution detection with deep
    nearest neighbors. ICML.
    """

    _FITTED_KEYS = ("_reference",)

    def __init__(
        self,
        reference: ArrayLike | None = None,
        k: int = 50,
        target_fpr: float = 0.05,
        calibration_fraction: float = 0.2,
        seed: int | None = None,
    ) -> None:
        super().__init__(target_fpr, calibration_fraction, seed)
        self.k = check_positive_int("k", k)
        self._reference = np.zeros((0, 0), dtype=np.float32)
        if reference is not None:
            self.fit(reference)

    def _params(self) -> dict[str, object]:
        return {**super()._params(), "k": self.k}

    def _fit(self, reference: FloatArray) -> None:
        if reference.shape[0] < self.k:
            raise ValueError(
                f"k={self.k} needs at least {self.k} reference rows after the calibration "
                f"split, got {reference.shape[0]}"
            )
        self._reference = l2_normalise(reference).astype(np.float32)

    def _after_load(self) -> None:
        if self._reference.ndim != 2 or self._reference.shape[1] != self._n_features:
            raise ValueError("state reference does not match the number of features")

    def _score_rows(self, rows: FloatArray) -> FloatArray:
        queries = l2_normalise(rows).astype(np.float32)
        out = np.empty(rows.shape[0])
        kth = self.k - 1
        for start in range(0, rows.shape[0], _CHUNK_ROWS):
            sims = queries[start : start + _CHUNK_ROWS] @ self._reference.T
            # k-th largest cosine similarity = k-th smallest distance
            kth_sim = -np.partition(-sims, kth, axis=1)[:, kth]
            out[start : start + _CHUNK_ROWS] = np.sqrt(
                np.maximum(2.0 - 2.0 * kth_sim.astype(np.float64), 0.0)
            )
        return out
