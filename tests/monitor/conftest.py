"""Fixtures of the monitor tests: observations encoded with the real codec, references."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.observations import ObservationFactory, observation, store_reference


@pytest.fixture
def make_observation() -> ObservationFactory:
    return observation


@pytest.fixture
def save_reference() -> Callable[..., Path]:
    return store_reference
