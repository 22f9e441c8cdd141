"""Demo traffic: in-distribution digits, then a gradual drift, then out-of-distribution inputs.

Every phase draws from the held-out split of the demo dataset, so the model has never seen
these rows, and only the phase's transform changes between phases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from service.modelserver.demo_model import DemoData


@dataclass(frozen=True)
class Phase:
    """A stretch of demo traffic: a name, its share of the run and what it does to inputs."""

    name: str
    share: float
    description: str


PHASES: tuple[Phase, ...] = (
    Phase("in-distribution", 0.35, "held-out digits, as the model was trained on"),
    Phase("gradual drift", 0.35, "the same digits, rotated and noisier as time goes on"),
    Phase("out-of-distribution", 0.30, "inverted images and uniform noise"),
)


class TrafficGenerator:
    """Batches of demo inputs for a phase at a given progress (0..1) through that phase."""

    def __init__(self, data: DemoData, seed: int = 0) -> None:
        self.data = data
        self.pool = data.x_test
        self._rng = np.random.default_rng(seed)

    def _sample(self, rows: int) -> np.ndarray:
        index = self._rng.integers(0, len(self.pool), size=rows)
        return self.pool[index].astype(np.float32)

    def batch(self, phase: str, progress: float, rows: int) -> np.ndarray:
        """`rows` inputs for `phase`; `progress` in [0, 1] sets the drift's strength."""
        if rows < 1:
            raise ValueError(f"rows must be >= 1, got {rows}")
        progress = float(np.clip(progress, 0.0, 1.0))
        x = self._sample(rows)
        top = self.data.pixel_max
        if phase == "in-distribution":
            return x
        if phase == "gradual drift":
            return self._drifted(x, progress)
        if phase == "out-of-distribution":
            half = rows // 2
            inverted = top - x[:half]
            noise = self._rng.uniform(0.0, top, size=(rows - half, x.shape[1])).astype(np.float32)
            return np.concatenate([inverted, noise])
        raise ValueError(f"unknown phase {phase!r}; phases: {[p.name for p in PHASES]}")

    def _drifted(self, x: np.ndarray, progress: float) -> np.ndarray:
        height, width = self.data.image_shape
        angle = 45.0 * progress
        sigma = 0.25 * self.data.pixel_max * progress
        images = x.reshape(-1, height, width)
        rotated = ndimage.rotate(
            images, angle, axes=(1, 2), reshape=False, order=1, mode="constant"
        )
        noisy = rotated + self._rng.normal(0.0, sigma, size=rotated.shape) if sigma > 0 else rotated
        clipped: np.ndarray = np.clip(noisy, 0.0, self.data.pixel_max)
        return clipped.reshape(len(x), -1).astype(np.float32)
