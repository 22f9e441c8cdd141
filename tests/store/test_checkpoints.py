"""Checkpoints: exact round trips, and kill-safety (corrupt files set aside, atomic replace)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from service.alerting.engine import AlertEngine
from service.alerting.settings import AlertRuleSettings
from service.store import checkpoints
from service.store.checkpoints import CheckpointError, CheckpointStore
from tests.support.readings import drift_reading

STATE: dict[str, Any] = {
    "mmd": {
        "window": np.random.default_rng(7).normal(size=(4, 3)).astype(np.float32),
        "count": 12,
        "seen": np.array([True, False, True]),
        "ids": np.array(["a", "bé"]),
        "threshold": 0.125,
        "name": "resnet",
        "drift": False,
        "np_scalar": np.int64(-3),
        "empty": {},
    },
    "allow_pickle": 1,
    "format_version": 3,
}


def test_round_trip_is_exact(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    assert store.save("monitor", STATE) == tmp_path / "monitor.npz"
    loaded = store.load("monitor")
    assert loaded is not None
    assert sorted(loaded) == ["allow_pickle", "format_version", "mmd"]
    mmd = loaded["mmd"]
    assert mmd["window"].dtype == np.float32
    np.testing.assert_array_equal(mmd["window"], STATE["mmd"]["window"])
    np.testing.assert_array_equal(mmd["seen"], [True, False, True])
    assert mmd["ids"].tolist() == ["a", "bé"]
    assert (mmd["count"], mmd["threshold"], mmd["name"], mmd["drift"], mmd["np_scalar"]) == (
        12,
        0.125,
        "resnet",
        False,
        -3,
    )
    assert type(mmd["count"]) is int and type(mmd["drift"]) is bool
    assert mmd["empty"] == {}
    assert (loaded["allow_pickle"], loaded["format_version"]) == (1, 3)
    assert store.load("absent") is None


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"a/b": 1}, "without '/'"),
        ({"__x": 1}, "does not start with '__'"),
        ({"": 1}, "non-empty"),
        ({"a": [1, 2]}, "has type list"),
        ({"a": None}, "has type NoneType"),
        ({"a": {"b": np.array([object()])}}, "'a/b' is an object array"),
    ],
)
def test_states_the_format_cannot_hold_are_refused(
    tmp_path: Path, state: dict[str, Any], message: str
) -> None:
    store = CheckpointStore(tmp_path)
    with pytest.raises(CheckpointError, match=message):
        store.save("monitor", state)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "x" * 129])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(CheckpointError, match="checkpoint name"):
        CheckpointStore(tmp_path).save(name, {"a": 1})


def _corrupt_truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_garbage(path: Path) -> None:
    path.write_bytes(b"\x00not a zip file at all" * 10)


def _corrupt_flipped_member(path: Path) -> None:
    data = bytearray(path.read_bytes())
    offset = bytes(data).find(STATE["mmd"]["window"].tobytes())
    assert offset > 0
    data[offset + 5] ^= 0x01  # one bit of one float: the file still parses, the CRC does not
    path.write_bytes(bytes(data))


def _incompatible_version(path: Path) -> None:
    np.savez(path, __format_version__=np.asarray(99), **{"state/a": np.asarray(1)})


def _pickled_member(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive, archive.open("state/a.npy", "w") as member:
        np.lib.format.write_array(member, np.array([{"evil": 1}], dtype=object))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_corrupt_truncated, "BadZipFile"),
        (_corrupt_garbage, "BadZipFile"),
        (_corrupt_flipped_member, "fails its CRC check"),
        (_incompatible_version, "format_version 99, expected 1"),
        (_pickled_member, "Object arrays cannot be loaded when allow_pickle=False"),
    ],
)
def test_unreadable_checkpoint_is_set_aside_not_a_crash_loop(
    tmp_path: Path, damage: Any, reason: str
) -> None:
    store = CheckpointStore(tmp_path)
    path = store.save("monitor", STATE)
    damage(path)
    damaged = path.read_bytes()
    with capture_logs() as logs:
        assert store.load("monitor") is None
    [aside] = tmp_path.glob("monitor.corrupt-*")
    assert aside.read_bytes() == damaged
    assert not path.exists()
    assert [e["event"] for e in logs] == ["checkpoint_set_aside"]
    assert reason in logs[0]["reason"]
    assert logs[0]["moved_to"] == str(aside)
    # The next start finds no checkpoint, starts fresh and can save again.
    assert store.load("monitor") is None
    store.save("monitor", {"a": 1})
    assert store.load("monitor") == {"a": 1}


def test_set_aside_twice_in_one_second_keeps_both(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    for _ in range(2):
        path = store.save("monitor", {"a": 1})
        _corrupt_garbage(path)
        assert store.load("monitor") is None
    assert len(list(tmp_path.glob("monitor.corrupt-*"))) == 2


def test_failed_write_leaves_the_previous_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CheckpointStore(tmp_path)
    store.save("monitor", {"generation": 1, "window": np.arange(1000.0)})

    def disk_gone(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(checkpoints.os, "fsync", disk_gone)
    with pytest.raises(OSError, match="Input/output error"):
        store.save("monitor", {"generation": 2, "window": np.zeros(1000)})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["monitor.npz"]
    loaded = store.load("monitor")
    assert loaded is not None
    assert loaded["generation"] == 1
    np.testing.assert_array_equal(loaded["window"], np.arange(1000.0))


def test_kill_mid_write_leaves_a_temp_file_that_the_next_start_removes(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save("monitor", {"generation": 1})
    # What a kill -9 between write and rename leaves behind: a partial temp file.
    partial = tmp_path / "monitor.npz.tmp-abc123"
    partial.write_bytes(b"PK\x03\x04 partial")
    restarted = CheckpointStore(tmp_path)
    assert not partial.exists()
    assert restarted.load("monitor") == {"generation": 1}


def test_alert_engine_state_survives_a_checkpoint(tmp_path: Path) -> None:
    rule = AlertRuleSettings.model_validate(
        {"name": "Drift", "condition": "drift_detected", "for": "10s"}
    )
    reading = drift_reading(
        model="resnet",
        version="1",
        signal="embedding",
        detector="mmd",
        timestamp=0.0,
        drift_detected=True,
        score=0.5,
        threshold=0.2,
        p_value=None,
        ood_ratio=None,
        window_fill=1.0,
    )
    first = AlertEngine([rule], registry=None, on_transition=lambda t: None)
    first.observe(reading)
    first.evaluate(now=0.0)
    first.evaluate(now=10.0)
    store = CheckpointStore(tmp_path)
    store.save("alerts", first.state_dict())
    loaded = store.load("alerts")
    assert loaded is not None
    second = AlertEngine([rule], registry=None, on_transition=lambda t: None)
    second.load_state_dict(loaded)
    assert second.instances() == first.instances()
    assert [(i.alert, i.state, i.fired_at, i.value) for i in second.instances()] == [
        ("Drift", "firing", 10.0, 0.5)
    ]


def test_directory_fsync_failure_is_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CheckpointStore(tmp_path)
    real_fsync = os.fsync
    calls: list[int] = []

    def fsync_file_only(fd: int) -> None:
        calls.append(fd)
        if len(calls) > 1:
            raise OSError(22, "Invalid argument")  # some filesystems refuse a folder fsync
        real_fsync(fd)

    monkeypatch.setattr(checkpoints.os, "fsync", fsync_file_only)
    store.save("monitor", {"a": 2})
    assert len(calls) == 2
    assert store.load("monitor") == {"a": 2}


def test_a_real_detector_resumes_exactly_from_a_checkpoint(tmp_path: Path) -> None:
    from detectors.rff_mmd_online import RffMmdOnline

    rng = np.random.default_rng(11)
    reference = rng.normal(size=(300, 4))
    stream = rng.normal(loc=0.3, size=(200, 4))
    settings = {"window_size": 20, "n_bootstraps": 100, "n_features": 32, "seed": 5}
    detector = RffMmdOnline(reference, **settings)
    detector.update(stream[:100])
    store = CheckpointStore(tmp_path)
    store.save("monitor", {"streams": {"0": {"model": "resnet", "state": detector.state_dict()}}})
    loaded = store.load("monitor")
    assert loaded is not None
    resumed = RffMmdOnline(reference, **settings).load_state_dict(loaded["streams"]["0"]["state"])
    detector.update(stream[100:])
    resumed.update(stream[100:])
    assert (resumed.score, resumed.drift_detected, resumed.threshold) == (
        detector.score,
        detector.drift_detected,
        detector.threshold,
    )


def test_a_corrupt_checkpoint_that_cannot_be_renamed_is_logged_and_start_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CheckpointStore(tmp_path)
    path = store.save("monitor", STATE)
    _corrupt_garbage(path)

    # What a read-only folder does to the rename (chmod does not stop root, so fake it).
    def read_only(source: object, destination: object) -> None:
        raise PermissionError(13, "Permission denied", str(source))

    monkeypatch.setattr(checkpoints.os, "replace", read_only)
    with capture_logs() as logs:
        assert store.load("monitor") is None
    assert [e["event"] for e in logs] == ["checkpoint_set_aside_failed"]
    assert logs[0]["path"] == str(path)
    assert "BadZipFile" in logs[0]["reason"]
    assert logs[0]["error"].startswith("PermissionError: [Errno 13] Permission denied")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["monitor.npz"]
    assert store.set_aside("monitor", reason="does not fit") is None


def test_a_leftover_temp_file_that_cannot_be_removed_does_not_stop_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    partial = tmp_path / "monitor.npz.tmp-abc123"
    partial.write_bytes(b"PK\x03\x04 partial")

    def read_only(self: Path, missing_ok: bool = False) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", read_only)
    with capture_logs() as logs:
        store = CheckpointStore(tmp_path)
    assert [(e["event"], e["path"]) for e in logs] == [("checkpoint_leftover_kept", str(partial))]
    assert store.load("monitor") is None
