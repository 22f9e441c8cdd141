"""One checkpoint of every registered part: the layout of earlier releases still restores,
and a part that refuses its state costs that state, never the start."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from service.app import OutriderApp
from service.config import OutriderSettings
from service.store.checkpointer import Checkpointer
from service.store.checkpoints import CheckpointStore
from tests.support.observations import store_reference
from tests.support.peers import free_port

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint-0.1-monitor.npz"


def fixture_settings(state_dir: Path) -> OutriderSettings:
    """The configuration the fixture was written with (its label limit under its new key)."""
    return OutriderSettings.model_validate({
        "state_dir": str(state_dir),
        "dataplane": {"upstream": {"port": free_port()}},
        "models": {"demo": {"signals": [{"name": "x", "source": {"input": "x"},
                                          "detectors": [{"type": "ks", "window": 10}]}]}},
        "monitor": {"max_samples_per_second": None, "fetch_model_metadata": False},
        "labels": {"max_versions_per_model": 2},
        "alerts": [{"name": "Drift", "condition": "drift_detected", "for": "1h"},
                   {"name": "Robustness", "condition": "probe_regression"}],
    })


@pytest.fixture
def app(tmp_path: Path) -> Iterator[OutriderApp]:
    state = tmp_path / "state"
    store_reference(state, "demo", "x", np.random.default_rng(0).normal(size=(50, 2)))
    (state / "checkpoints").mkdir(parents=True)
    shutil.copy(FIXTURE, state / "checkpoints" / "monitor.npz")
    built = OutriderApp(fixture_settings(state))
    yield built
    built.incidents.close()


def restored_view(app: OutriderApp) -> dict[str, Any]:
    return {
        "instances": [(i.alert, i.state, dict(i.labels)) for i in app.alerts.instances()],
        "versions": sorted({key.version for key in app.pipeline.readings()}),
        "history": {
            (key.version, key.signal): len(app.readings.series(key))
            for key in app.readings.history.keys()  # noqa: SIM118 - a method, not a dict
        },
        "admitted": [app.labels.version("demo", v) for v in ("1", "2", "9")],
    }


def test_a_checkpoint_of_the_release_before_restores_every_part(app: OutriderApp) -> None:
    with capture_logs() as logs:
        app.checkpoints.restore()
    [restored] = [e for e in logs if e["event"] == "checkpoint_restored"]
    assert (restored["skipped"], restored["fresh"]) == ([], ["labels"])
    view = restored_view(app)
    drift = {"alertname": "Drift", "severity": "warning", "model": "demo", "signal": "x",
             "detector": "ks"}
    assert view["instances"] == [
        ("Drift", "pending", {**drift, "version": "1"}),
        ("Drift", "pending", {**drift, "version": "2"}),
        ("Drift", "pending", {**drift, "version": "other"}),
        ("Robustness", "firing", {"alertname": "Robustness", "severity": "warning",
                                  "model": "demo", "version": "1", "suite": "fgsm"}),
    ]
    # The restored detectors publish at once; the version labels come from the old layout.
    assert view["versions"] == ["1", "2", "other"]
    assert view["admitted"] == ["1", "2", "other"]
    # One reading of each stream in the history (the fixture's readings are from 2027, so
    # what the restored detectors publish today is older and not plotted).
    assert view["history"] == {("1", "x"): 1, ("2", "x"): 1, ("other", "x"): 1, ("1", "fgsm"): 1}
    assert not list((app.state_dir.checkpoints).glob("*.corrupt-*"))


def test_the_new_layout_round_trips(app: OutriderApp, tmp_path: Path) -> None:
    app.checkpoints.restore()
    before = restored_view(app)
    assert app.checkpoints.save()
    assert app.checkpoints.parts == ["labels", "history", "pipeline", "alerts"]
    again = OutriderApp(app.settings)
    try:
        again.checkpoints.restore()
        after = restored_view(again)
    finally:
        again.incidents.close()
    assert after["instances"] == before["instances"]
    assert after["versions"] == before["versions"]
    assert after["admitted"] == before["admitted"]


class Part:
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.loaded: list[Mapping[str, Any]] = []

    def state_dict(self) -> dict[str, Any]:
        return {"format_version": 1, "value": 7}

    def load_state_dict(self, state: Mapping[str, Any]) -> list[str]:
        if self.refuse:
            raise ValueError("not mine")
        self.loaded.append(state)
        return ["one entry skipped"]


def test_a_refused_part_sets_the_file_aside_and_later_parts_start_fresh(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    writer = Checkpointer(store)
    for name in ("a", "b", "c"):
        writer.register(name, Part())
    assert writer.save()
    reader = Checkpointer(store)
    first, refusing, last = Part(), Part(refuse=True), Part()
    for name, part in (("a", first), ("b", refusing), ("c", last)):
        reader.register(name, part)
    with capture_logs() as logs:
        reader.restore()
    assert [e["event"] for e in logs if e["event"].startswith("checkpoint")] == [
        "checkpoint_incompatible", "checkpoint_set_aside"
    ]
    assert (len(first.loaded), len(last.loaded)) == (1, 0)
    assert [p.name.split(".corrupt-")[0] for p in tmp_path.glob("*.corrupt-*")] == ["monitor"]
    with pytest.raises(ValueError, match="already registered"):
        reader.register("a", Part())


def test_a_part_new_since_the_file_was_written_starts_fresh(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    writer = Checkpointer(store)
    writer.register("a", Part())
    writer.save()
    reader = Checkpointer(store)
    old, new = Part(), Part()
    reader.register("a", old)
    reader.register("guard", new)
    with capture_logs() as logs:
        reader.restore()
    [restored] = [e for e in logs if e["event"] == "checkpoint_restored"]
    assert (restored["skipped"], restored["fresh"]) == (["one entry skipped"], ["guard"])
    assert (len(old.loaded), len(new.loaded)) == (1, 0)
