"""Noise stability: how far Gaussian noise can go before the model's answer changes.

Randomised smoothing's certificate, used as a stability score: with n noisy copies of a
sample at noise level sigma, k of which get the top class, p_A is the one-sided
Clopper-Pearson lower bound of k/n at level alpha, and the radius is sigma * Phi^-1(p_A)
(zero when p_A <= 1/2: the sample abstains). The top class is chosen from the same copies
that estimate p_A (Cohen et al. use a separate selection sample), so this is a stability
score rather than a certificate.

Reference: J. Cohen, E. Rosenfeld, J. Z. Kolter, "Certified Adversarial Robustness via
Randomized Smoothing", ICML 2019.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def clopper_pearson_lower(successes: np.ndarray, trials: int, alpha: float) -> np.ndarray:
    """The one-sided (1 - alpha) Clopper-Pearson lower bound of a binomial proportion."""
    if trials < 1:
        raise ValueError(f"trials must be positive, got {trials}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    k = np.asarray(successes, dtype=np.float64)
    bound = stats.beta.ppf(alpha, np.maximum(k, 1e-300), trials - k + 1)
    return np.where(k > 0, bound, 0.0).astype(np.float64)


def stability_radius(
    top_counts: np.ndarray, trials: int, sigma: float, alpha: float = 0.001
) -> np.ndarray:
    """sigma * Phi^-1(p_A) per sample from top-class counts; 0 where p_A <= 1/2."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    p_a = clopper_pearson_lower(top_counts, trials, alpha)
    radius = sigma * stats.norm.ppf(np.clip(p_a, 0.5, 1.0))
    return np.where(p_a > 0.5, radius, 0.0)


@dataclass(frozen=True)
class StabilityResult:
    """Per-sample top class of the smoothed model, its count, p_A and radius."""

    top_class: np.ndarray
    top_count: np.ndarray
    p_lower: np.ndarray
    radius: np.ndarray


def noisy_copies(
    x: np.ndarray, *, sigma: float, n: int, seed: int, value_range: tuple[float, float] | None
) -> np.ndarray:
    """(N * n, D) Gaussian-noise copies of each sample, sample-major (copies of x[0] first).

    Noise is not clipped to `value_range` by default in the certificate; clipping is
    applied when a range is given because the live model only ever sees valid inputs.
    """
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    rng = np.random.default_rng(seed)
    copies = np.repeat(x.astype(np.float64), n, axis=0)
    copies += rng.normal(0.0, sigma, size=copies.shape)
    if value_range is not None:
        copies = np.clip(copies, *value_range)
    return copies.astype(x.dtype)


def stability_from_labels(
    labels: np.ndarray, n: int, *, sigma: float, alpha: float = 0.001
) -> StabilityResult:
    """Stability per sample from the predicted labels of its n noisy copies (sample-major)."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size % n:
        raise ValueError(f"{labels.size} labels do not split into copies of {n}")
    per_sample = labels.reshape(-1, n)
    classes = int(per_sample.max()) + 1 if per_sample.size else 1
    counts = np.zeros((len(per_sample), classes), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(len(per_sample)), n), per_sample.ravel()), 1)
    top = counts.argmax(axis=1)
    top_count = counts[np.arange(len(counts)), top]
    p_lower = clopper_pearson_lower(top_count, n, alpha)
    return StabilityResult(top, top_count, p_lower, stability_radius(top_count, n, sigma, alpha))
