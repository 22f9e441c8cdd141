from __future__ import annotations

import numpy as np
import pytest

from service.probes.corruptions import (
    IMAGE_CORRUPTIONS,
    SEVERITIES,
    TABULAR_CORRUPTIONS,
    corrupt_images,
    corrupt_table,
    jpeg_quantisation_table,
)

RANGE = (0.0, 16.0)


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


@pytest.mark.parametrize("corruption", sorted(IMAGE_CORRUPTIONS))
def test_image_corruption_is_seeded_bounded_and_monotone_in_severity(
    corruption: str, digits_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    x = digits_sample[0]
    distances = []
    for severity in SEVERITIES:
        a = corrupt_images(x, corruption, severity, image_shape=(8, 8), value_range=RANGE, seed=3)
        b = corrupt_images(x, corruption, severity, image_shape=(8, 8), value_range=RANGE, seed=3)
        np.testing.assert_array_equal(a, b)
        assert a.dtype == x.dtype and a.shape == x.shape
        assert a.min() >= 0.0 and a.max() <= 16.0
        distances.append(_distance(a, x))
    assert distances[0] > 0.0
    assert all(lo < hi for lo, hi in zip(distances, distances[1:], strict=False)), distances


@pytest.mark.parametrize("corruption", ["gaussian_noise", "shot_noise", "impulse_noise", "rotate"])
def test_random_image_corruptions_depend_on_the_seed(
    corruption: str, digits_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    x = digits_sample[0]
    a = corrupt_images(x, corruption, 3, image_shape=(8, 8), value_range=RANGE, seed=1)
    b = corrupt_images(x, corruption, 3, image_shape=(8, 8), value_range=RANGE, seed=2)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("corruption", TABULAR_CORRUPTIONS)
def test_tabular_corruption_is_seeded_and_monotone_in_severity(corruption: str) -> None:
    x = np.random.default_rng(0).normal(5.0, 2.0, size=(200, 12)).astype(np.float32)
    distances = []
    for severity in SEVERITIES:
        a = corrupt_table(x, corruption, severity, seed=4)
        np.testing.assert_array_equal(a, corrupt_table(x, corruption, severity, seed=4))
        assert a.dtype == np.float32
        distances.append(_distance(a, x))
    assert all(lo < hi for lo, hi in zip(distances, distances[1:], strict=False)), distances


def test_swapped_columns_exchanges_whole_columns() -> None:
    x = np.arange(24, dtype=np.float64).reshape(4, 6)
    out = corrupt_table(x, "swapped_columns", 1, seed=0)
    moved = [j for j in range(6) if not np.array_equal(out[:, j], x[:, j])]
    assert len(moved) == 2
    a, b = moved
    np.testing.assert_array_equal(out[:, a], x[:, b])
    np.testing.assert_array_equal(out[:, b], x[:, a])


def test_jpeg_table_at_quality_50_is_the_standard_table() -> None:
    table = jpeg_quantisation_table(50)
    assert table[0, 0] == 16.0 and table[7, 7] == 99.0
    assert jpeg_quantisation_table(10)[0, 0] == 80.0


def test_bad_arguments_are_named() -> None:
    x = np.zeros((2, 64), dtype=np.float32)
    with pytest.raises(ValueError, match=r"severity must be one of \(1, 2, 3, 4, 5\), got 6"):
        corrupt_images(x, "jpeg", 6, image_shape=(8, 8), value_range=RANGE, seed=0)
    with pytest.raises(ValueError, match=r"image_shape \(7, 7\) does not hold 64 features"):
        corrupt_images(x, "jpeg", 1, image_shape=(7, 7), value_range=RANGE, seed=0)
    with pytest.raises(ValueError, match="corruption must be one of"):
        corrupt_images(x, "fog", 1, image_shape=(8, 8), value_range=RANGE, seed=0)
