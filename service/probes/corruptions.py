"""Common corruptions at five severities: images after Hendrycks & Dietterich, and tabular data.

Every transform is a pure function of (samples, severity, generator): the same seed and
severity give the same output, and a higher severity moves samples further from the clean
ones. Images travel flattened, as models take them, and are reshaped with `image_shape`;
values are mapped to [0, 1] with `value_range` and back, so severities mean the same on
digits (0..16) as on 8-bit images.

References: D. Hendrycks and T. Dietterich, "Benchmarking Neural Network Robustness to
Common Corruptions and Perturbations", ICLR 2019. Parameters are theirs where they carry
over, rescaled where their 224-pixel settings would erase an 8x8 image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

SEVERITIES = (1, 2, 3, 4, 5)

ImageTransform = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
"""(images N,H,W,C in [0,1], severity, rng) -> corrupted images in [0,1]."""


def _gaussian_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    sigma = (0.08, 0.12, 0.18, 0.26, 0.38)[s - 1]
    return x + rng.normal(0.0, sigma, size=x.shape)


def _shot_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    photons = (60.0, 25.0, 12.0, 5.0, 3.0)[s - 1]
    return np.asarray(rng.poisson(np.clip(x, 0.0, 1.0) * photons) / photons)


def _impulse_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    amount = (0.03, 0.06, 0.09, 0.17, 0.27)[s - 1]
    hit = rng.random(x.shape) < amount
    salt = rng.random(x.shape) < 0.5
    return np.where(hit, salt.astype(x.dtype), x)


def _gaussian_blur(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    sigma = (0.4, 0.6, 0.8, 1.0, 1.4)[s - 1]
    return np.asarray(ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="nearest"))


def _brightness(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    return x + (0.1, 0.2, 0.3, 0.4, 0.5)[s - 1]


def _contrast(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.4, 0.3, 0.2, 0.1, 0.05)[s - 1]
    means = x.mean(axis=(1, 2, 3), keepdims=True)
    return np.asarray((x - means) * c + means)


def _block_index(size: int, blocks: int) -> np.ndarray:
    return np.minimum(np.arange(size) * blocks // size, blocks - 1)


def _pixelate(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    fraction = (0.75, 0.5, 0.375, 0.25, 0.125)[s - 1]
    _, h, w, _ = x.shape
    bh, bw = max(1, round(h * fraction)), max(1, round(w * fraction))
    rows, cols = _block_index(h, bh), _block_index(w, bw)
    block_id = rows[:, None] * bw + cols[None, :]
    counts = np.bincount(block_id.ravel(), minlength=bh * bw).astype(np.float64)
    out = np.empty_like(x)
    for n in range(x.shape[0]):
        for c in range(x.shape[3]):
            sums = np.bincount(block_id.ravel(), weights=x[n, :, :, c].ravel(), minlength=bh * bw)
            out[n, :, :, c] = (sums / counts)[block_id]
    return out


# The JPEG standard's luminance quantisation table (ITU-T T.81, Annex K).
_JPEG_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
)


def jpeg_quantisation_table(quality: int) -> np.ndarray:
    """The IJG scaling of the luminance table for a quality of 1..100."""
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
    return np.clip(np.floor((_JPEG_LUMA * scale + 50.0) / 100.0), 1.0, 255.0)


def _jpeg(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    quality = (25, 18, 12, 8, 5)[s - 1]
    table = jpeg_quantisation_table(quality)
    n, h, w, c = x.shape
    ph, pw = -h % 8, -w % 8
    padded = np.pad(x * 255.0 - 128.0, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    hb, wb = padded.shape[1] // 8, padded.shape[2] // 8
    # (n, hb, 8, wb, 8, c) -> blocks (n, hb, wb, c, 8, 8)
    blocks = padded.reshape(n, hb, 8, wb, 8, c).transpose(0, 1, 3, 5, 2, 4)
    coeffs = sfft.dctn(blocks, type=2, norm="ortho", axes=(-2, -1))
    coeffs = np.round(coeffs / table) * table
    restored = sfft.idctn(coeffs, type=2, norm="ortho", axes=(-2, -1))
    out = restored.transpose(0, 1, 4, 2, 5, 3).reshape(n, hb * 8, wb * 8, c)
    return np.asarray((out[:, :h, :w, :] + 128.0) / 255.0)


def _rotate(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    degrees = (6.0, 12.0, 18.0, 24.0, 30.0)[s - 1]
    signs = rng.choice(np.array([-1.0, 1.0]), size=x.shape[0])
    out = np.empty_like(x)
    for n in range(x.shape[0]):
        out[n] = ndimage.rotate(
            x[n], signs[n] * degrees, axes=(0, 1), reshape=False, order=1, mode="constant", cval=0.0
        )
    return out


IMAGE_CORRUPTIONS: dict[str, ImageTransform] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "gaussian_blur": _gaussian_blur,
    "brightness": _brightness,
    "contrast": _contrast,
    "pixelate": _pixelate,
    "jpeg": _jpeg,
    "rotate": _rotate,
}


def _check_severity(severity: int) -> None:
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")


def corrupt_images(
    x: np.ndarray,
    corruption: str,
    severity: int,
    *,
    image_shape: tuple[int, ...],
    value_range: tuple[float, float],
    seed: int,
) -> np.ndarray:
    """Returns flattened images (N, D) corrupted by `corruption` at `severity` (1..5).

    `image_shape` is (H, W) or (H, W, C) with H*W*C == D; outputs are clipped to
    `value_range` and keep the dtype of `x`.
    """
    if corruption not in IMAGE_CORRUPTIONS:
        raise ValueError(
            f"corruption must be one of {sorted(IMAGE_CORRUPTIONS)}, got {corruption!r}"
        )
    _check_severity(severity)
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    shape = tuple(image_shape) if len(image_shape) == 3 else (*image_shape, 1)
    if len(shape) != 3 or int(np.prod(shape)) != x.shape[1]:
        raise ValueError(f"image_shape {tuple(image_shape)} does not hold {x.shape[1]} features")
    images = (x.reshape(len(x), *shape).astype(np.float64) - lo) / (hi - lo)
    # Severity is left out of the seed: common random numbers across severities make the
    # noise of severity s a scaled or nested version of severity s-1's, so harm grows with it.
    rng = np.random.default_rng([seed, sorted(IMAGE_CORRUPTIONS).index(corruption)])
    out = np.clip(IMAGE_CORRUPTIONS[corruption](images, severity, rng), 0.0, 1.0)
    return (out * (hi - lo) + lo).reshape(x.shape).astype(x.dtype)


TabularCorruption = Literal["feature_noise", "scaling", "missing_values", "swapped_columns"]
TABULAR_CORRUPTIONS: tuple[TabularCorruption, ...] = (
    "feature_noise",
    "scaling",
    "missing_values",
    "swapped_columns",
)


def corrupt_table(
    x: np.ndarray,
    corruption: str,
    severity: int,
    *,
    seed: int,
    feature_std: np.ndarray | None = None,
    fill_value: float = 0.0,
) -> np.ndarray:
    """Returns rows (N, D) corrupted the way tabular pipelines break, at `severity` (1..5).

    - feature_noise: Gaussian noise of 0.1..2 standard deviations per feature;
    - scaling: a growing share of columns multiplied by 1.25..3 (a unit change upstream);
    - missing_values: 5..50 % of cells replaced by `fill_value` (what an imputer writes);
    - swapped_columns: 1..5 random pairs of columns exchanged (a schema change).
    `feature_std` defaults to the standard deviation of `x` itself.
    """
    if corruption not in TABULAR_CORRUPTIONS:
        raise ValueError(
            f"corruption must be one of {list(TABULAR_CORRUPTIONS)}, got {corruption!r}"
        )
    _check_severity(severity)
    if x.ndim != 2:
        raise ValueError(f"tabular samples must be 2-D (rows, features), got shape {x.shape}")
    n, d = x.shape
    rng = np.random.default_rng([seed, list(TABULAR_CORRUPTIONS).index(corruption)])
    data = x.astype(np.float64)
    if corruption == "feature_noise":
        std = np.std(data, axis=0) if feature_std is None else np.asarray(feature_std, np.float64)
        units = (0.1, 0.25, 0.5, 1.0, 2.0)[severity - 1]
        out = data + rng.normal(size=data.shape) * std * units
    elif corruption == "scaling":
        factor = (1.25, 1.5, 2.0, 2.5, 3.0)[severity - 1]
        share = (0.2, 0.35, 0.5, 0.75, 1.0)[severity - 1]
        # Columns for a lower severity stay scaled at a higher one (nested choice).
        order = rng.permutation(d)
        cols = order[: max(1, round(share * d))]
        out = data.copy()
        out[:, cols] *= factor
    elif corruption == "missing_values":
        share = (0.05, 0.1, 0.2, 0.35, 0.5)[severity - 1]
        out = np.where(rng.random(data.shape) < share, fill_value, data)
    else:
        pairs = min((1, 2, 3, 4, 5)[severity - 1], d // 2)
        order = rng.permutation(d)
        out = data.copy()
        for k in range(pairs):
            a, b = order[2 * k], order[2 * k + 1]
            out[:, [a, b]] = out[:, [b, a]]
    return out.astype(x.dtype)
