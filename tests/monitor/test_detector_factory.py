"""Every configured detector type builds from settings, runs, and survives a state round trip."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.monitor.detector_factory import build_detector
from service.monitor.detector_registry import DETECTORS
from service.monitor.settings import DetectorSettings

# Small settings per type so each test stays fast (bootstraps calibrate online detectors).
_PARAMS: dict[str, dict[str, Any]] = {
    "rff_mmd_online": {"n_bootstraps": 100, "ert": 50.0},
    "cvm_online": {"n_bootstraps": 100, "ert": 50.0},
    "mmd": {"n_permutations": 20},
}


def _rows(kind: str, rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    x = rng.normal(size=(n, 3)) + shift
    if kind == "chi_square":  # categories 0..9 per column
        return np.asarray(np.clip(np.floor(x * 2 + 5), 0, 9))
    if kind in ("max_softmax", "bbsd"):
        e = np.exp(x)
        return np.asarray(e / e.sum(axis=1, keepdims=True))
    return np.asarray(x)


@pytest.mark.parametrize("kind", sorted(DETECTORS))
def test_each_type_builds_updates_and_round_trips(kind: str) -> None:
    settings = DetectorSettings.model_validate(
        {"type": kind, "window": 20, "params": _PARAMS.get(kind, {})}
    )
    rng = np.random.default_rng(0)
    reference = _rows(kind, rng, 200)
    a = build_detector(settings, reference)
    b = build_detector(settings, reference)
    a.update(_rows(kind, rng, 30), now=1.0)
    b.load_state_dict(a.state_dict())
    assert b.snapshot(1.0) == a.snapshot(1.0)
    later = _rows(kind, rng, 25, shift=1.0)
    a.update(later, now=2.0)
    b.update(later, now=2.0)
    assert b.snapshot(2.0) == a.snapshot(2.0)
    snap = a.snapshot(2.0)
    assert 0.0 <= snap.window_fill <= 1.0
    if DETECTORS[kind].role != "online":
        assert snap.window_fill == 1.0
