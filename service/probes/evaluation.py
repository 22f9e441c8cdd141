"""What one replay of a suite says about the model: transport-free, from labels and scores."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from service.alerting.readings import Reading
from service.probes.noise_stability import stability_from_labels
from service.probes.regression import RegressionVerdict
from service.probes.suite import ProbeSuite


@dataclass(frozen=True)
class RunResults:
    """Per-run figures the metrics, the run history and the regression test read."""

    accuracy: float
    variant_accuracy: dict[str, float]
    correct: np.ndarray
    """(N,) bool per probe row, for the paired regression test."""
    confidence: dict[str, float]
    """Top-class score: mean and 10th percentile over all rows."""
    margin: dict[str, float]
    """Top minus runner-up score: mean and 10th percentile over all rows."""
    attack_success: float | None = None
    median_queries: float | None = None
    stability_radius: dict[str, float] = field(default_factory=dict)
    flip_rate: float | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "accuracy": self.accuracy,
            "variant_accuracy": self.variant_accuracy,
            "confidence": self.confidence,
            "margin": self.margin,
            "attack_success": self.attack_success,
            "median_queries": self.median_queries,
            "stability_radius": self.stability_radius,
            "flip_rate": self.flip_rate,
        }


def _stats(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"mean": 0.0, "p10": 0.0}
    return {"mean": float(values.mean()), "p10": float(np.percentile(values, 10))}


def evaluate_run(
    suite: ProbeSuite,
    scores: np.ndarray,
    *,
    baseline_predictions: np.ndarray | None = None,
) -> RunResults:
    """Reads accuracy, attack success, stability and score statistics off one replay.

    `scores` are the model's (N, classes) answers in suite row order; a baseline's
    predictions on the same rows give the flip rate.
    """
    if len(scores) != len(suite):
        raise ValueError(f"{len(scores)} answers for a suite of {len(suite)} probes")
    predictions = np.argmax(scores, axis=1)
    correct = predictions == suite.labels
    ordered = np.sort(scores, axis=1)
    top = ordered[:, -1]
    runner_up = ordered[:, -2] if scores.shape[1] > 1 else np.zeros(len(scores))
    variants = suite.variants.astype(str)
    variant_accuracy = {
        v: float(correct[variants == v].mean()) for v in dict.fromkeys(variants.tolist())
    }
    attack_success = median_queries = None
    if suite.kind in ("square", "hopskipjump"):
        clean_rows = np.flatnonzero(variants == "clean")
        adv_rows = np.flatnonzero(variants != "clean")
        clean_ok = np.zeros(int(suite.source_index.max()) + 1, dtype=bool)
        clean_ok[suite.source_index[clean_rows]] = correct[clean_rows]
        attacked = clean_ok[suite.source_index[adv_rows]]
        fooled = attacked & ~correct[adv_rows]
        attack_success = float(fooled.sum() / attacked.sum()) if attacked.any() else 0.0
        spent = suite.queries[adv_rows][fooled]
        spent = spent[spent >= 0]
        median_queries = float(np.median(spent)) if len(spent) else None
    stability: dict[str, float] = {}
    if suite.kind == "noise":
        noise = suite.generator.get("noise", {})
        rows = np.flatnonzero(variants != "clean")
        copies = int(noise.get("copies", 0))
        if copies > 0 and len(rows) % copies == 0:
            result = stability_from_labels(
                predictions[rows],
                copies,
                sigma=float(noise["sigma"]),
                alpha=float(noise.get("alpha", 0.001)),
            )
            stability = {
                "median": float(np.median(result.radius)),
                "mean": float(result.radius.mean()),
            }
    flip_rate = None
    if baseline_predictions is not None and len(baseline_predictions) == len(predictions):
        flip_rate = float((baseline_predictions != predictions).mean())
    return RunResults(
        accuracy=float(correct.mean()) if len(correct) else 0.0,
        variant_accuracy=variant_accuracy,
        correct=correct,
        confidence=_stats(top),
        margin=_stats(top - runner_up),
        attack_success=attack_success,
        median_queries=median_queries,
        stability_radius=stability,
        flip_rate=flip_rate,
    )


def probe_reading(
    model: str,
    version: str,
    suite: str,
    at: float,
    results: RunResults,
    verdict: RegressionVerdict | None,
) -> Reading:
    """The `probe` reading of a scored run: accuracy against the baseline's, the verdict.

    Without a baseline to compare with, the threshold is the run's own accuracy and the
    verdict is no regression.
    """
    return Reading(
        kind="probe",
        model=model,
        version=version,
        signal=suite,
        detector="",
        timestamp=at,
        verdict=bool(verdict and verdict.regression),
        score=results.accuracy,
        threshold=results.accuracy if verdict is None else verdict.baseline_accuracy,
        p_value=None if verdict is None else verdict.p_value,
    )
