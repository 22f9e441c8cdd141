from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.probes.black_box import run_async, run_sync
from service.probes.hopskipjump import HopSkipJump
from service.probes.onnx_model import OnnxClassifier
from service.probes.square_attack import SquareAttack, square_fraction


class CountingScorer:
    """Counts the rows a model scores, to check the attack's own query accounting."""

    def __init__(self, model: OnnxClassifier) -> None:
        self.model = model
        self.rows = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.rows += len(x)
        return self.model.scores(x)


@pytest.fixture(scope="module")
def classifier(demo_model_path: Path) -> OnnxClassifier:
    return OnnxClassifier(demo_model_path)


@pytest.mark.parametrize(("norm", "eps", "min_success"), [("linf", 4.0, 0.95), ("l2", 16.0, 0.8)])
def test_square_attack_succeeds_within_budget_and_bound(
    classifier: OnnxClassifier,
    digits_sample: tuple[np.ndarray, np.ndarray],
    norm: str,
    eps: float,
    min_success: float,
) -> None:
    x, y = digits_sample
    scorer = CountingScorer(classifier)
    attack = SquareAttack(
        eps=eps,
        max_queries=300,
        norm=norm,
        image_shape=(8, 8),
        value_range=(0.0, 16.0),
        seed=0,  # type: ignore[arg-type]
    )
    result = attack.generate(x, y, scorer)
    assert result.success_rate >= min_success
    assert result.queries.max() <= 300
    assert result.queries.sum() == scorer.rows
    diff = result.adversarial.astype(np.float64) - x
    bound = np.abs(diff).max(axis=1) if norm == "linf" else np.linalg.norm(diff, axis=1)
    assert bound.max() <= eps + 1e-5
    assert result.adversarial.min() >= 0.0 and result.adversarial.max() <= 16.0
    # Success is what the model says on the returned examples, nothing else.
    fooled = classifier.predict(result.adversarial) != y
    np.testing.assert_array_equal(result.success, fooled & result.clean_correct)
    again = attack.generate(x, y, classifier.scores)
    np.testing.assert_array_equal(again.adversarial, result.adversarial)


def test_hopskipjump_is_label_only_and_respects_budget_and_bound(
    classifier: OnnxClassifier, digits_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = digits_sample
    scorer = CountingScorer(classifier)

    def labels_only(batch: np.ndarray) -> np.ndarray:
        # One-hot of the top class: the attack must not need more than the label.
        top = np.argmax(scorer(batch), axis=1)
        return np.eye(10)[top]

    attack = HopSkipJump(eps=16.0, max_queries=800, value_range=(0.0, 16.0), seed=0)
    result = attack.generate(x, y, labels_only)
    assert result.success_rate >= 0.85
    assert result.queries.max() <= 800
    assert scorer.rows <= 800 * len(x)
    assert result.distance.max() <= 16.0 + 1e-4
    fooled = classifier.predict(result.adversarial) != y
    assert np.all(fooled[result.success])


async def test_async_driver_matches_sync_driver(
    classifier: OnnxClassifier, digits_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = digits_sample[0][:10], digits_sample[1][:10]
    attack = SquareAttack(eps=3.0, max_queries=50, image_shape=(8, 8), value_range=(0.0, 16.0))

    async def scores(batch: np.ndarray) -> np.ndarray:
        return classifier.scores(batch)

    a = run_sync(attack.plan(x, y), classifier.scores)
    b = await run_async(attack.plan(x, y), scores)
    np.testing.assert_array_equal(a.adversarial, b.adversarial)
    np.testing.assert_array_equal(a.queries, b.queries)


def test_square_schedule_halves_at_rescaled_milestones() -> None:
    assert square_fraction(0.1, 0, 1000) == 0.1
    assert square_fraction(0.1, 2, 1000) == 0.05  # 20 of 10 000
    assert square_fraction(0.1, 999, 1000) == 0.1 / 512


def test_attack_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="eps must be positive, got 0"):
        SquareAttack(eps=0)
    with pytest.raises(ValueError, match=r"norm must be one of \['l2', 'linf'\], got 'l1'"):
        SquareAttack(eps=1.0, norm="l1")  # type: ignore[arg-type]
