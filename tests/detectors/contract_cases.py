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


def _gauss(n: int, d: int, shift_after: int | None = None, shift: float = 2.0):
    def make(rng: np.random.Generator) -> np.ndarray:
        x = rng.normal(size=(n, d))
        if shift_after is not None:
            x[shift_after:] += shift
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
]
