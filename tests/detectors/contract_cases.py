"""One entry per detector and scorer for the contract test: how to build, feed and break it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import detectors as dt


@dataclass
class Case:
    """How to exercise one estimator in the contract test."""

    name: str
    build: Callable[[int | None], Any]  # seed -> unfitted estimator
    reference: Callable[[np.random.Generator], np.ndarray]
    stream: Callable[[np.random.Generator], np.ndarray]  # rows (or scalars) to feed
    bad_args: list[dict[str, Any]] = field(default_factory=list)
    scalar: bool = False
    scorer: bool = False
    chunk: int = 10
    #: builds an instance from keyword arguments (for the bad-argument check)
    make: Callable[[dict[str, Any]], Any] | None = None


def _gauss(n: int, d: int, shift_after: int | None = None, shift: float = 2.0, cols=None):
    def make(rng: np.random.Generator) -> np.ndarray:
        x = rng.normal(size=(n, d))
        if shift_after is not None:
            x[shift_after:, slice(None) if cols is None else cols] += shift
        return x

    return make


def _scalars(n: int, shift_after: int | None = None, shift: float = 2.0):
    def make(rng: np.random.Generator) -> np.ndarray:
        x = rng.normal(size=n)
        if shift_after is not None:
            x[shift_after:] += shift
        return x

    return make


def _codes(n: int, d: int, shift_after: int | None = None):
    def make(rng: np.random.Generator) -> np.ndarray:
        x = rng.integers(0, 4, size=(n, d)).astype(float)
        if shift_after is not None:
            x[shift_after:, 0] = rng.choice(4, p=[0.7, 0.1, 0.1, 0.1], size=n - shift_after)
        return x

    return make


def _correlated(n: int, shift_after: int | None = None):
    def make(rng: np.random.Generator) -> np.ndarray:
        z = rng.normal(size=(n, 1))
        x = np.hstack([z, z, z]) + 0.3 * rng.normal(size=(n, 3))
        if shift_after is not None:
            x[shift_after:, 1] = -x[shift_after:, 1]
        return x

    return make


def _errors(n: int, shift_after: int | None = None, rate: float = 0.1, worse: float = 0.5):
    def make(rng: np.random.Generator) -> np.ndarray:
        x = (rng.random(n) < rate).astype(float)
        if shift_after is not None:
            x[shift_after:] = (rng.random(n - shift_after) < worse).astype(float)
        return x

    return make


CASES: list[Case] = [
    Case(
        "KSDrift",
        lambda s: dt.KSDrift(window_size=20, test_every=10, seed=s),
        _gauss(200, 3),
        _gauss(120, 3, shift_after=60),
        [{"window_size": 1}, {"alpha": 1.5}, {"correction": "holm"}, {"test_every": 0}],
    ),
    Case(
        "MMDDrift",
        lambda s: dt.MMDDrift(window_size=20, test_every=10, n_permutations=30, seed=s),
        _gauss(100, 3),
        _gauss(120, 3, shift_after=60),
        [{"n_permutations": 0}, {"bandwidth": -1.0}, {"alpha": 0.0}, {"window_size": "x"}],
    ),
    Case(
        "CVMDrift",
        lambda s: dt.CVMDrift(window_size=20, test_every=10, seed=s),
        _gauss(200, 3),
        _gauss(120, 3, shift_after=60),
        [{"window_size": 0}, {"alpha": -0.1}, {"correction": "none"}],
    ),
    Case(
        "RffMmdOnline",
        lambda s: dt.RffMmdOnline(ert=100, window_size=10, n_bootstraps=200, n_features=32, seed=s),
        _gauss(400, 3),
        _gauss(120, 3, shift_after=60),
        [{"ert": 1.0}, {"window_size": 1}, {"n_bootstraps": 5}, {"n_features": 1}],
    ),
    Case(
        "CVMOnline",
        lambda s: dt.CVMOnline(ert=100, window_sizes=(5, 10), n_bootstraps=200, seed=s),
        _gauss(300, 3),
        _gauss(120, 3, shift_after=60),
        [
            {"ert": 0.5},
            {"window_sizes": [1]},
            {"window_sizes": "ab"},
            {"n_bootstraps": 0},
            {"window_size": 10},
        ],
    ),
    Case(
        "ChiSquareDrift",
        lambda s: dt.ChiSquareDrift(n_categories=4, window_size=30, test_every=10, seed=s),
        _codes(300, 2),
        _codes(150, 2, shift_after=60),
        [{"n_categories": 1}, {"correction": "x"}, {"window_size": 1}],
    ),
    Case(
        "BBSDDrift",
        lambda s: dt.BBSDDrift(window_size=20, test_every=10, input="logits", seed=s),
        _gauss(200, 3),
        _gauss(120, 3, shift_after=60, shift=3.0, cols=[0]),
        [{"input": "scores"}, {"alpha": 2.0}],
    ),
    Case(
        "PCAReconstructionDrift",
        lambda s: dt.PCAReconstructionDrift(window_size=20, test_every=10, seed=s),
        _correlated(400),
        _correlated(120, shift_after=60),
        [{"variance": 1.0}, {"n_std": 0.0}, {"window_size": 1}],
    ),
    Case(
        "CUSUM",
        lambda s: dt.CUSUM(seed=s),
        _scalars(200),
        _scalars(120, shift_after=60),
        [{"delta": 0.0}, {"h": -1.0}],
        scalar=True,
    ),
    Case(
        "PageHinkley",
        lambda s: dt.PageHinkley(h=10.0, min_instances=10, seed=s),
        _scalars(200),
        _scalars(120, shift_after=60),
        [{"mode": "sideways"}, {"min_instances": 0}, {"h": 0.0}, {"delta": -1.0}],
        scalar=True,
    ),
    Case(
        "ADWIN",
        lambda s: dt.ADWIN(clock=8, seed=s),
        _scalars(200),
        _scalars(120, shift_after=60),
        [{"delta": 1.0}, {"clock": 0}, {"max_buckets": 1}, {"min_window_length": 0}],
        scalar=True,
    ),
    Case(
        "PerformanceDegradationTest",
        lambda s: dt.PerformanceDegradationTest(window_size=20, test_every=10, seed=s),
        _errors(300),
        _errors(120, shift_after=60),
        [{"loss": "hinge"}, {"window_size": 1}, {"alpha": 0.0}, {"test_every": 0}],
        scalar=True,
    ),
    Case(
        "PerformanceDegradationTest(continuous)",
        lambda s: dt.PerformanceDegradationTest(
            loss="continuous", window_size=20, test_every=10, seed=s
        ),
        _scalars(200),
        _scalars(120, shift_after=60),
        [{"loss": "log"}, {"alpha": 1.0}],
        scalar=True,
    ),
    Case(
        "MahalanobisScorer",
        lambda s: dt.MahalanobisScorer(seed=s),
        _gauss(200, 4),
        _gauss(60, 4, shift_after=30, shift=4.0),
        [{"target_fpr": 0.0}, {"calibration_fraction": 1.0}],
        scorer=True,
    ),
    Case(
        "KnnScorer",
        lambda s: dt.KnnScorer(k=5, seed=s),
        _gauss(200, 4),
        _gauss(60, 4, shift_after=30, shift=4.0),
        [{"k": 0}, {"target_fpr": 1.0}],
        scorer=True,
    ),
    Case(
        "EnergyScorer",
        lambda s: dt.EnergyScorer(temperature=2.0, seed=s),
        _gauss(200, 4),
        _gauss(60, 4, shift_after=30, shift=4.0),
        [{"temperature": 0.0}, {"target_fpr": -0.1}],
        scorer=True,
    ),
    Case(
        "MaxSoftmaxScorer",
        lambda s: dt.MaxSoftmaxScorer(seed=s),
        _gauss(200, 4),
        _gauss(60, 4, shift_after=30, shift=4.0),
        [{"target_fpr": 1.5}],
        scorer=True,
    ),
    Case(
        "OODRateTest",
        lambda s: dt.OODRateTest(
            dt.MahalanobisScorer(seed=0), window_size=20, test_every=10, seed=s
        ),
        _gauss(500, 3),
        _gauss(120, 3, shift_after=60, shift=3.0),
        [{"window_size": 1}, {"alpha": 0.0}, {"scorer": "mahalanobis"}],
        make=lambda kw: dt.OODRateTest(**{"scorer": dt.MahalanobisScorer(seed=0), **kw}),
    ),
]
