"""Incident endpoints through a real aiohttp server on 127.0.0.1 and real SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from service.admin.incident_routes import add_incident_routes
from service.store.incidents import IncidentStore

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    store = IncidentStore(tmp_path / "incidents.sqlite", clock=lambda: 500.0)
    for version in ("1", "2", "3"):
        store.open_incident(
            alert="Drift", severity="critical", labels={"model": "resnet", "version": version},
            model="resnet", version=version, started_at=100.0 + int(version),
            evidence={"score": 0.5},
        )
    store.resolve_incident(2, 300.0)
    store.record_action(1, "webhook", "notify", "ok", {"status": 200})
    (tmp_path / "incident-1.png").write_bytes(PNG)
    store.set_plot_path(1, tmp_path / "incident-1.png")
    store.set_plot_path(3, tmp_path / "deleted.png")
    app = web.Application()
    add_incident_routes(app, store)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as test_client:
        yield test_client
    store.close()


async def test_list_newest_first_with_filters(client: TestClient) -> None:  # type: ignore[type-arg]
    response = await client.get("/incidents")
    assert response.status == 200
    body = await response.json()
    assert [(i["id"], i["status"]) for i in body["incidents"]] == [
        (3, "open"), (2, "resolved"), (1, "open")
    ]
    first = body["incidents"][2]
    assert first["actions"] == [{"id": 1, "incident_id": 1, "at": 500.0, "hook": "webhook",
                                 "action": "notify", "outcome": "ok",
                                 "detail": {"status": 200}}]
    response = await client.get("/incidents", params={"status": "open", "limit": "1"})
    assert [i["id"] for i in (await response.json())["incidents"]] == [3]
    response = await client.get("/incidents", params={"status": "resolved"})
    assert [i["id"] for i in (await response.json())["incidents"]] == [2]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"status": "closed"}, "status must be one of ['open', 'resolved'], got 'closed'"),
        ({"limit": "0"}, "limit must be an integer from 1 to 1000, got '0'"),
        ({"limit": "1001"}, "limit must be an integer from 1 to 1000, got '1001'"),
        ({"limit": "ten"}, "limit must be an integer from 1 to 1000, got 'ten'"),
        ({"limit": "-1"}, "limit must be an integer from 1 to 1000, got '-1'"),
    ],
)
async def test_bad_list_queries_are_400(
    client: TestClient, query: dict[str, str], message: str  # type: ignore[type-arg]
) -> None:
    response = await client.get("/incidents", params=query)
    assert response.status == 400
    assert await response.json() == {"error": message}


async def test_one_incident(client: TestClient) -> None:  # type: ignore[type-arg]
    response = await client.get("/incidents/2")
    assert response.status == 200
    body = await response.json()
    assert (body["id"], body["status"], body["started_at"], body["ended_at"]) == (
        2, "resolved", 102.0, 300.0
    )
    assert body["labels"] == {"model": "resnet", "version": "2"}
    assert body["evidence"] == {"score": 0.5}


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/incidents/99", 404, "no incident with id 99"),
        ("/incidents/abc", 400, "incident id must be a positive integer, got 'abc'"),
        ("/incidents/-1", 400, "incident id must be a positive integer, got '-1'"),
        ("/incidents/99/plot", 404, "no incident with id 99"),
        ("/incidents/x/plot", 400, "incident id must be a positive integer, got 'x'"),
        ("/incidents/2/plot", 404, "incident 2 has no plot"),
        ("/incidents/3/plot", 404, "the plot of incident 3 is missing on disk"),
    ],
)
async def test_errors_are_json(
    client: TestClient, path: str, status: int, message: str  # type: ignore[type-arg]
) -> None:
    response = await client.get(path)
    assert response.status == status
    assert response.content_type == "application/json"
    assert await response.json() == {"error": message}


async def test_plot_is_served_as_png(client: TestClient) -> None:  # type: ignore[type-arg]
    response = await client.get("/incidents/1/plot")
    assert response.status == 200
    assert response.content_type == "image/png"
    assert await response.read() == PNG
