"""Fixtures for the probe tests: the demo model (cached across runs) and its test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.modelserver.demo_model import DemoData, build_demo_model, load_demo_data


@pytest.fixture(scope="session")
def demo_model_path(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Training takes tens of seconds on the shared machine; the pytest cache keeps the file
    # between runs and build_demo_model reuses it when its settings match.
    cache = getattr(pytestconfig, "cache", None)
    folder = (
        Path(cache.mkdir("outrider-probes-demo-model"))
        if cache is not None
        else tmp_path_factory.mktemp("models")
    )
    return build_demo_model(folder, "digits", seed=0)


@pytest.fixture(scope="session")
def demo_data() -> DemoData:
    return load_demo_data("digits", seed=0)


@pytest.fixture(scope="session")
def digits_sample(demo_data: DemoData) -> tuple[np.ndarray, np.ndarray]:
    return demo_data.x_test[:60], demo_data.y_test[:60]
