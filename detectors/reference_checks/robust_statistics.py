"""Location and scale estimates that contaminated rows cannot move much: MAD z-scores, MCD.

A reference check must judge rows by a yardstick the suspicious rows did not help build,
or a large enough contamination hides itself. The median and the median absolute deviation
resist up to half the rows being bad; the Minimum Covariance Determinant estimator
(Rousseeuw 1984) does the same for a mean and a covariance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from detectors.base import FloatArray
from detectors.reference_checks.neighbours import fit_projection

#: MAD of a standard normal sample: scales the MAD to a standard deviation.
MAD_TO_SD = 1.0 / stats.norm.ppf(0.75)


def robust_z(values: FloatArray) -> FloatArray:
    """(value - median) / (MAD scaled to a standard deviation); 0 scale -> mean abs deviation.

    With a MAD of 0 (over half the values equal) the mean absolute deviation from the median
    is used instead, and with that 0 too every z is 0: no value stands out.
    """
    centre = float(np.median(values))
    deviation = np.abs(values - centre)
    scale = float(np.median(deviation)) * MAD_TO_SD
    if scale <= 0.0:
        scale = float(deviation.mean()) * math.sqrt(math.pi / 2.0)
    if scale <= 0.0:
        return np.zeros_like(values)
    out: FloatArray = (values - centre) / scale
    return out


@dataclass(frozen=True)
class McdFit:
    """A robust mean and covariance, and which of the fitted rows supported them."""

    location: FloatArray
    covariance: FloatArray
    support: NDArray[np.bool_]

    def squared_distances(self, x: FloatArray) -> FloatArray:
        """Squared Mahalanobis distances of `x` from `location` under `covariance`."""
        precision = np.linalg.pinv(self.covariance, hermitian=True)
        xc = x - self.location
        out: FloatArray = np.einsum("ij,jk,ik->i", xc, precision, xc)
        return np.maximum(out, 0.0)


def fast_mcd(
    x: FloatArray,
    support_fraction: float = 0.75,
    n_starts: int = 30,
    n_best: int = 5,
    max_steps: int = 50,
    seed: int = 0,
) -> McdFit:
    """Minimum Covariance Determinant by FastMCD (Rousseeuw and Van Driessen 1999).

    Looks for the h = `support_fraction` x n rows whose covariance has the smallest
    determinant: `n_starts` random (d + 1)-row starts, two concentration steps each (keep
    the h rows closest under the current estimate; the determinant never grows), then the
    `n_best` of them iterated to convergence. The raw estimate is scaled to be consistent
    at the normal (Croux and Haesbroeck's factor for the h of n rows) and then reweighted:
    the rows within the 0.975 chi-squared quantile give the final mean and covariance,
    scaled by the factor for that cut. Cost O(n_starts n d^2): callers keep n and d modest
    (the outlier check fits on at most a few thousand rows in a 20-dimensional projection).
    """
    n, d = x.shape
    if n < d + 2:
        raise ValueError(f"MCD needs more rows ({n}) than dimensions + 1 ({d + 1})")
    h = max(d + 1, min(n, int(math.ceil(support_fraction * n))))
    rng = np.random.default_rng([seed, 3])
    ridge = 1e-9 * float(np.trace(np.cov(x, rowvar=False)) / d + 1e-300)

    def estimate(rows: NDArray[np.int64]) -> tuple[FloatArray, FloatArray]:
        part = x[rows]
        mean = part.mean(axis=0)
        cov = np.atleast_2d(np.cov(part, rowvar=False, bias=True)) + ridge * np.eye(d)
        return mean, cov

    def c_step(rows: NDArray[np.int64]) -> tuple[NDArray[np.int64], float]:
        """The h rows closest under the estimate from `rows`, and that estimate's log det."""
        mean, cov = estimate(rows)
        sign, logdet = np.linalg.slogdet(cov)
        precision = np.linalg.inv(cov)
        xc = x - mean
        d2 = np.einsum("ij,jk,ik->i", xc, precision, xc)
        return np.argsort(d2, kind="stable")[:h], float(logdet if sign > 0 else np.inf)

    candidates: list[tuple[float, NDArray[np.int64]]] = []
    for _ in range(n_starts):
        rows = rng.choice(n, size=d + 1, replace=False)
        rows, logdet = c_step(rows)
        rows, logdet = c_step(rows)
        candidates.append((logdet, rows))
    candidates.sort(key=lambda c: c[0])
    best_logdet, best_rows = np.inf, candidates[0][1]
    for _, start in candidates[:n_best]:
        rows = start
        for _ in range(max_steps):
            new_rows, logdet = c_step(rows)  # logdet of `rows`
            if np.array_equal(np.sort(new_rows), np.sort(rows)):
                break
            rows = new_rows
        if logdet < best_logdet:
            best_logdet, best_rows = logdet, rows
    mean, cov = estimate(best_rows)
    raw = McdFit(mean, cov * _consistency(h / n, d), np.zeros(n, dtype=bool))
    # Reweighting step: keep the rows the raw estimate does not call outlying.
    cut = 0.975
    keep = raw.squared_distances(x) <= stats.chi2.ppf(cut, d)
    if keep.sum() <= d + 1:
        return McdFit(raw.location, raw.covariance, keep)
    part = x[keep]
    cov = np.atleast_2d(np.cov(part, rowvar=False, bias=True)) + ridge * np.eye(d)
    return McdFit(part.mean(axis=0), cov * _consistency(cut, d), keep)


def _consistency(fraction: float, d: int) -> float:
    """Croux and Haesbroeck (1999): the factor that makes the covariance of the `fraction`
    of normal rows closest to the centre an unbiased estimate of the full covariance."""
    inside = float(stats.chi2.cdf(stats.chi2.ppf(fraction, d), d + 2))
    return fraction / inside if inside > 0 else 1.0


#: Rows per dimension a robust covariance is estimated from, at least.
ROWS_PER_DIMENSION = 5


def robust_whitened(
    rows: FloatArray,
    n_components: int,
    rng: np.random.Generator,
    seed: int = 0,
    max_fit_rows: int = 2000,
) -> FloatArray:
    """Rows in their leading principal components, centred and whitened by an MCD fit.

    At most `n_components` components, and at most one per `ROWS_PER_DIMENSION` rows (a
    covariance needs rows to spare). After this, the majority of the rows vary alike in
    every direction, so a minority that differs stands out along its own direction. The
    MCD is fitted on at most `max_fit_rows` rows (a sample keeps the same proportions).
    """
    k = max(1, min(n_components, rows.shape[1], len(rows) // ROWS_PER_DIMENSION))
    coords = fit_projection(rows, k, rng).coordinates(rows)
    sample = (
        coords
        if len(coords) <= max_fit_rows
        else coords[rng.choice(len(coords), max_fit_rows, replace=False)]
    )
    fit = fast_mcd(sample, n_starts=10, n_best=3, seed=seed)
    eigenvalues, eigenvectors = np.linalg.eigh(fit.covariance)
    floor = 1e-12 * float(eigenvalues.max(initial=0.0)) + 1e-300
    scale = np.sqrt(np.maximum(eigenvalues, floor))
    out: FloatArray = (coords - fit.location) @ eigenvectors / scale
    return out
