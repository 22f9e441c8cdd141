from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.probes import run_store
from service.probes.run_store import RunRecord, RunStore, RunStoreError, run_store_path


def _run(**overrides: object) -> RunRecord:
    fields: dict[str, object] = {
        "model": "demo",
        "version": "1",
        "suite": "s",
        "suite_digest": "abc",
        "kind": "noise",
        "started_at": 10.0,
        "finished_at": 11.0,
        "outcome": "ok",
        "probes": 4,
        "accuracy": 0.75,
        "predictions": np.array([3, 1, 4, 1]),
    }
    fields.update(overrides)
    return RunRecord(**fields)  # type: ignore[arg-type]


def test_runs_round_trip_with_predictions_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "probes" / "runs.sqlite"
    store = RunStore(path)
    first = store.record_run(_run())
    store.record_run(
        _run(
            version="2",
            outcome="failed",
            predictions=None,
            accuracy=None,
            error="gRPC UNAVAILABLE: down",
        )
    )
    store.close()
    store = RunStore(path)
    ok = store.last_ok_run("demo", "s", "1", "abc")
    assert ok is not None and ok.id == first
    np.testing.assert_array_equal(ok.predictions, [3, 1, 4, 1])
    assert store.last_ok_run("demo", "s", "2", "abc") is None
    assert store.last_ok_run("demo", "s", "1", "other-digest") is None
    assert [r.outcome for r in store.runs()] == ["failed", "ok"]
    assert store.runs(limit=1)[0].error == "gRPC UNAVAILABLE: down"
    store.close()


def test_versions_and_known_good(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    assert store.note_version("demo", "1", 5.0) is True
    assert store.note_version("demo", "1", 9.0) is False
    assert store.version_state("demo", "1") == (5.0, None)
    store.mark_regressed("demo", "1", 7.0)
    store.mark_regressed("demo", "1", 8.0)
    assert store.version_state("demo", "1") == (5.0, 7.0)
    assert store.known_good("demo") is None
    store.set_known_good("demo", "1", 6.0)
    store.set_known_good("demo", "2", 7.0)
    assert store.known_good("demo") == "2"
    store.record_run(_run(started_at=4.0))
    store.record_run(_run(started_at=6.0))
    assert store.ok_runs_since("demo", "1", 5.0) == 1
    store.close()


def test_a_damaged_history_is_a_clear_error_naming_the_file_and_is_left_as_it_is(
    tmp_path: Path,
) -> None:
    path = tmp_path / "probes" / "runs.sqlite"
    path.parent.mkdir()
    path.write_bytes(b"not a database " * 100)
    with pytest.raises(RunStoreError) as raised:
        RunStore(path)
    assert str(raised.value) == (
        f"probe run history {path} is unusable (file is not a database); it is kept as it is: "
        "move it away to start with an empty one"
    )
    assert path.read_bytes() == b"not a database " * 100


def test_a_folder_that_cannot_hold_the_history_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "probes").write_text("a file where the folder should be")
    path = tmp_path / "probes" / "runs.sqlite"
    with pytest.raises(RunStoreError, match=f"^probe run history {path} is unusable \\("):
        RunStore(path)


def _kept(store: RunStore) -> list[tuple[str, str, str, str, str, float]]:
    return sorted(
        (r.model, r.suite, r.version, r.suite_digest, r.outcome, r.started_at)
        for r in store.runs(limit=1000)
    )


def test_pruning_keeps_recent_runs_and_the_known_good_baseline_only(tmp_path: Path) -> None:
    store = RunStore(run_store_path(tmp_path))
    store.note_version("demo", "1", 1.0)
    store.note_version("demo", "2", 50.0)
    store.mark_regressed("demo", "2", 60.0)
    store.set_known_good("demo", "1", 2.0)
    old = {"started_at": 10.0, "finished_at": 11.0}
    store.record_run(_run(**old, predictions=np.array([0, 0, 0, 0])))
    baseline = store.record_run(_run(**old))  # the latest ok run of the known-good version
    store.record_run(_run(**old, outcome="failed", predictions=None, error="down"))
    store.record_run(_run(**old, suite_digest="edited"))  # the suite as it was once: kept
    store.record_run(_run(**old, suite="t"))  # another suite: its own baseline
    store.record_run(_run(**old, version="2"))  # not known-good: no baseline to keep
    store.record_run(_run(model="other", **old))  # a model with no known-good version
    store.record_run(_run(version="2", started_at=100.0, finished_at=101.0))  # recent

    assert store.prune_runs(started_before=100.0) == 4

    assert _kept(store) == [
        ("demo", "s", "1", "abc", "ok", 10.0),
        ("demo", "s", "1", "edited", "ok", 10.0),
        ("demo", "s", "2", "abc", "ok", 100.0),
        ("demo", "t", "1", "abc", "ok", 10.0),
    ]
    found = store.last_ok_run("demo", "s", "1", "abc")
    assert found is not None and found.id == baseline
    np.testing.assert_array_equal(found.predictions, [3, 1, 4, 1])
    # Promotion state is untouched.
    assert store.known_good("demo") == "1"
    assert store.version_state("demo", "1") == (1.0, None)
    assert store.version_state("demo", "2") == (50.0, 60.0)
    # Nothing older is left but the baselines: a second pass deletes nothing.
    assert store.prune_runs(started_before=100.0) == 0
    store.close()


def test_pruning_a_backlog_goes_in_batches_and_keeps_the_baseline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_store, "PRUNE_BATCH", 3)
    store = RunStore(tmp_path / "runs.sqlite")
    store.set_known_good("demo", "1", 2.0)
    ids = [store.record_run(_run(started_at=float(n))) for n in range(10)]

    assert store.prune_runs(started_before=1000.0) == 9

    assert [r.id for r in store.runs()] == [ids[-1]]
    store.close()
