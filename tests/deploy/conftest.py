"""Fixtures for the deployment tests: the external tools they drive."""

from __future__ import annotations

import pytest
from deploy_contract import tool_path


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool from Debian's `prometheus` package."""
    path: str = tool_path("promtool")
    return path


@pytest.fixture(scope="session")
def amtool() -> str:
    """amtool from Debian's `prometheus-alertmanager` package."""
    path: str = tool_path("amtool")
    return path
