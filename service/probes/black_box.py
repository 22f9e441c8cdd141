"""The black-box attack contract: attacks ask for scores of a batch, a driver answers.

An attack is written as a generator that yields a batch of samples to score and receives
the scores (batch, classes) back, so the same attack runs against onnxruntime (offline suite
building, benchmarks) and against the live model over gRPC (the live-attack job) without
knowing which. Each yield is one model call for all samples still being attacked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass

import numpy as np

AttackPlan = Generator[np.ndarray, np.ndarray, "AttackResult"]


@dataclass(frozen=True)
class AttackResult:
    """What an attack produced per sample (arrays of length N, in input order)."""

    adversarial: np.ndarray
    """(N, D) samples within the norm bound; the clean sample where nothing better was found."""
    success: np.ndarray
    """(N,) bool: the model's label on `adversarial` differs from the true label, within bound."""
    queries: np.ndarray
    """(N,) int: model queries spent on the sample (to success, or the whole budget)."""
    clean_correct: np.ndarray
    """(N,) bool: the model was right on the clean sample (only those are attacked)."""
    distance: np.ndarray
    """(N,) float: the norm of adversarial - clean, in the attack's norm."""

    @property
    def success_rate(self) -> float:
        """The share of clean-correct samples the attack turned; 0 when none were correct."""
        attacked = int(self.clean_correct.sum())
        return float(self.success[self.clean_correct].sum() / attacked) if attacked else 0.0

    @property
    def median_queries(self) -> float | None:
        """Median queries to success over successful, clean-correct samples; None if none."""
        won = self.success & self.clean_correct
        return float(np.median(self.queries[won])) if won.any() else None

    @property
    def mean_queries(self) -> float:
        """Mean queries per sample over all samples (what a budget costs on average)."""
        return float(self.queries.mean()) if len(self.queries) else 0.0


def run_sync(plan: AttackPlan, scores: Callable[[np.ndarray], np.ndarray]) -> AttackResult:
    """Drives an attack with a synchronous scorer (e.g. `OnnxClassifier.scores`)."""
    try:
        batch = next(plan)
        while True:
            batch = plan.send(np.asarray(scores(batch)))
    except StopIteration as stop:
        result: AttackResult = stop.value
        return result


async def run_async(
    plan: AttackPlan, scores: Callable[[np.ndarray], Awaitable[np.ndarray]]
) -> AttackResult:
    """Drives an attack with an async scorer (e.g. the live model over gRPC)."""
    try:
        batch = next(plan)
        while True:
            batch = plan.send(np.asarray(await scores(batch)))
    except StopIteration as stop:
        result: AttackResult = stop.value
        return result


def margins(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """score of the true class minus the best other score; negative means misclassified."""
    rows = np.arange(len(labels))
    true = scores[rows, labels]
    others = scores.copy()
    others[rows, labels] = -np.inf
    return np.asarray(true - others.max(axis=1), dtype=np.float64)
