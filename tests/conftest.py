"""Fixtures shared by every test folder: the demo model and a running model server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from service.modelserver.demo_model import build_demo_model
from service.modelserver.server import ModelServer, start_model_server
from tests.support.peers import MLServerPeer, running_mlserver


@pytest.fixture(scope="session")
def demo_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits demo model, trained once per test session (a few seconds)."""
    return build_demo_model(tmp_path_factory.mktemp("models"), "digits", seed=0)


@pytest.fixture
async def model_server(demo_model_path: Path) -> AsyncIterator[ModelServer]:
    """The bundled OIP model server on the demo model, on a free loopback port."""
    server = await start_model_server(demo_model_path, name="demo", version="1", port=0)
    yield server
    await server.stop(grace=None)


@pytest.fixture(scope="session")
def mlserver_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServerPeer]:
    """A real MLServer (scikit-learn digits, model `digits` version `v1`) for the session."""
    with running_mlserver(tmp_path_factory.mktemp("mlserver")) as peer:
        yield peer
