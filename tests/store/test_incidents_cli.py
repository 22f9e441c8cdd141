"""`outrider incidents list|show` text: exact tables and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.store.incidents import Incident, IncidentStore
from service.store.incidents_cli import format_incident, format_incident_list

START = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


@pytest.fixture
def incidents(tmp_path: Path) -> list[Incident]:
    with IncidentStore(tmp_path / "incidents.sqlite", clock=lambda: START + 30) as store:
        first = store.open_incident(
            alert="EmbeddingDrift", severity="critical",
            labels={"model": "resnet", "version": "3", "signal": "embedding"},
            model="resnet", version="3", started_at=START,
            evidence={"score": 0.4567, "read_at": START - 2, "drift_detected": True,
                      "top_mean_shifts": [{"dimension": 3, "shift": 0.91234},
                                          {"dimension": 7, "shift": 0.4}],
                      "example_request_ids": ["r1", "r2"], "p_value": None},
            annotations={"summary": "resnet 3 drifted"},
        )
        store.record_action(first, "argo", "abort", "ok", {"rollout": "web"})
        store.resolve_incident(first, START + 3725)
        store.set_plot_path(first, "/state/plots/incident-1.png")
        store.open_incident(
            alert="ManyOod", severity="warning", labels={"model": "bert"}, model="bert",
            version="1", started_at=START + 60, evidence={},
        )
        return store.list_incidents()


def cells(line: str) -> list[str]:
    return line.replace("│", " ").replace("┃", " ").split()


def test_list_table(incidents: list[Incident]) -> None:
    lines = format_incident_list(incidents, as_json=False).splitlines()
    assert lines[0] == "2 incident(s)"
    assert cells(lines[2]) == ["ID", "STATUS", "SEVERITY", "ALERT", "MODEL", "VERSION",
                              "STARTED", "DURATION", "ACTIONS"]
    rows = [cells(line) for line in lines[4:6]]
    assert rows == [
        ["2", "open", "warning", "ManyOod", "bert", "1", "2023-11-14", "22:14:20", "UTC",
         "ongoing", "0"],
        ["1", "resolved", "critical", "EmbeddingDrift", "resnet", "3", "2023-11-14",
         "22:13:20", "UTC", "1h02m05s", "1"],
    ]
    assert format_incident_list([], as_json=False) == "no incidents\n"


def test_list_json(incidents: list[Incident]) -> None:
    body = json.loads(format_incident_list(incidents, as_json=True))
    assert [(i["id"], i["status"], i["alert"]) for i in body] == [
        (2, "open", "ManyOod"), (1, "resolved", "EmbeddingDrift")
    ]
    assert body[1]["actions"][0]["detail"] == {"rollout": "web"}
    assert format_incident_list([], as_json=True) == "[]\n"


def test_show_table(incidents: list[Incident]) -> None:
    text = format_incident(incidents[1], as_json=False)
    lines = [" ".join(cells(line)) for line in text.splitlines()]
    for expected in [
        "incident 1: EmbeddingDrift",
        "status resolved",
        "model resnet (version 3)",
        "started 2023-11-14 22:13:20 UTC",
        "ended 2023-11-14 23:15:25 UTC",
        "duration 1h02m05s",
        "labels model=resnet, signal=embedding, version=3",
        "summary resnet 3 drifted",
        "plot /state/plots/incident-1.png",
        "score 0.4567",
        "read_at 2023-11-14 22:13:18 UTC",
        "drift_detected true",
        "top_mean_shifts dim 3: 0.9123, dim 7: 0.4",
        "example_request_ids r1, r2",
        "p_value null",
        '2023-11-14 22:13:50 UTC argo abort ok {"rollout": "web"}',
    ]:
        assert expected in lines, expected
    assert "no actions recorded" in format_incident(incidents[0], as_json=False)


def test_show_json(incidents: list[Incident]) -> None:
    body = json.loads(format_incident(incidents[1], as_json=True))
    assert body == incidents[1].to_json()
    assert (body["ended_at"], body["plot_path"]) == (START + 3725, "/state/plots/incident-1.png")


@pytest.mark.parametrize("command", [["list"], ["show", "1"]])
def test_a_corrupt_database_is_one_clear_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    from service.cli import main

    (tmp_path / "incidents.sqlite").write_bytes(b"not a database at all" * 200)
    status = main(["incidents", *command, "--state-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 1
    assert str(tmp_path / "incidents.sqlite") in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_incidents_of_earlier_releases_show_their_top_dimensions(tmp_path: Path) -> None:
    with IncidentStore(tmp_path / "incidents.sqlite", clock=lambda: START) as store:
        store.open_incident(
            alert="Drift", severity="warning", labels={"model": "m"}, model="m", version="1",
            started_at=START,
            evidence={"top_dimensions": [{"dimension": 2, "statistic": 1.5}]},
        )
        [incident] = store.list_incidents()
    assert "│ top_dimensions │ dim 2: 1.5 │" in format_incident(incident, as_json=False)
