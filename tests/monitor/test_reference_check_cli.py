"""`outrider reference check`: inputs, exit status, the pinned --json schema and the plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detectors.reference_checks import CHECKS
from service.cli import main
from service.monitor.reference import Reference, ReferenceStore
from service.monitor.settings import MonitorSettings, PipelineSettings

# The --json contract (docs/reference-checks.md): changing any of these is a new schema version.
TOP_KEYS = {
    "schema",
    "schema_version",
    "source",
    "rows",
    "dims",
    "flagged",
    "flagged_checks",
    "elapsed_s",
    "time_budget_s",
    "settings",
    "checks",
}
SOURCE_KEYS = {"path", "model", "signal", "version", "created", "source_sha256"}
CHECK_KEYS = {
    "check",
    "status",
    "subject",
    "n_rows",
    "flagged_rows",
    "flagged_share",
    "summary",
    "message",
    "elapsed_s",
    "rows",
}
ROW_KEYS = {"index", "reason", "score", "related"}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def _vectors(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(3, size=400)
    return np.eye(6)[y] * 6.0 + rng.normal(size=(400, 6)), y


def test_json_schema_is_pinned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _vectors()
    x[9] = x[4]
    np.save(tmp_path / "ref.npy", x)
    np.save(tmp_path / "labels.npy", y)
    status, out, _ = _run(
        [
            "reference",
            "check",
            str(tmp_path / "ref.npy"),
            "--labels",
            str(tmp_path / "labels.npy"),
            "--json",
        ],
        capsys,
    )
    document: dict[str, Any] = json.loads(out)
    assert set(document) == TOP_KEYS
    assert document["schema"] == "outrider.reference-check"
    assert document["schema_version"] == 1
    assert set(document["source"]) == SOURCE_KEYS
    assert document["source"]["path"] == str(tmp_path / "ref.npy")
    assert (document["rows"], document["dims"]) == (400, 6)
    assert [c["check"] for c in document["checks"]] == list(CHECKS)
    for check in document["checks"]:
        assert set(check) == CHECK_KEYS
        assert check["status"] in ("ok", "flagged", "skipped")
        for row in check["rows"]:
            assert set(row) == ROW_KEYS
    duplicates = document["checks"][list(CHECKS).index("duplicates")]
    assert duplicates["rows"] == [
        {"index": 9, "reason": "exact_duplicate", "score": 1.0, "related": 4}
    ]
    assert isinstance(document["settings"]["near_ratio"], float)
    assert status == (1 if document["flagged"] else 0)


def test_exit_status_says_whether_anything_is_above_the_warn_thresholds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, _ = _vectors(1)
    np.savetxt(tmp_path / "ref.csv", x, delimiter=",", header="a,b,c,d,e,f", comments="")
    probes = x[:5] + 0.0
    np.save(tmp_path / "probes.npy", np.random.default_rng(2).normal(size=(20, 6)))
    status, out, _ = _run(["reference", "check", str(tmp_path / "ref.csv")], capsys)
    assert status == 0, out
    assert "nothing above the warn thresholds" in out
    np.save(tmp_path / "leaky.npy", probes)
    status, out, _ = _run(
        [
            "reference",
            "check",
            str(tmp_path / "ref.csv"),
            "--probe-suite",
            str(tmp_path / "leaky.npy"),
        ],
        capsys,
    )
    assert status == 1
    assert "flagged by probe_leakage" in out
    assert "5 exact and 0 near copies of probe-suite rows" in out


def test_bad_inputs_exit_2_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = _vectors(3)
    np.save(tmp_path / "ref.npy", x)
    np.save(tmp_path / "labels.npy", y[:10])
    cases = [
        (["reference", "check"], "give a reference PATH"),
        (["reference", "check", str(tmp_path / "missing.npy")], "missing.npy"),
        (
            [
                "reference",
                "check",
                str(tmp_path / "ref.npy"),
                "--labels",
                str(tmp_path / "labels.npy"),
            ],
            "labels must be one class per reference row (400)",
        ),
        (
            ["reference", "check", str(tmp_path / "ref.npy"), "--priors", "a,b"],
            "--priors must be comma-separated",
        ),
        (
            ["reference", "check", str(tmp_path / "ref.npy"), "--from", "raw.npy"],
            "--from needs --config and --signal",
        ),
    ]
    for argv, message in cases:
        status, _, err = _run(argv, capsys)
        assert status == 2, argv
        assert message in err, (argv, err)


def _config(tmp_path: Path) -> Any:
    settings = PipelineSettings.model_validate(
        {
            "models": {
                "m": {
                    "signals": [
                        {
                            "name": "s",
                            "source": {"input": "x"},
                            "transform": {"columns": [0, 1, 2, 3, 4, 5]},
                            "detectors": [{"type": "ks", "window": 10}],
                        }
                    ]
                }
            }
        }
    )

    class Root:
        models = settings.models
        monitor = MonitorSettings()
        state_dir = tmp_path / "state"

    return Root()


def test_stored_reference_and_raw_rows_through_the_signal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import service.cli as cli

    root = _config(tmp_path)
    monkeypatch.setattr(cli, "_load_or_exit", lambda path: root)
    x, _ = _vectors(4)
    stored = Reference("m", "7", "s", x, "2026-01-01T00:00:00+00:00", "ab" * 32)
    ReferenceStore(root.state_dir).save(stored)
    status, out, _ = _run(
        ["reference", "check", "--config", "c.yaml", "--signal", "m/s", "--json"], capsys
    )
    document = json.loads(out)
    assert status == 0
    assert document["source"] == {
        "path": None,
        "model": "m",
        "signal": "s",
        "version": "7",
        "created": "2026-01-01T00:00:00+00:00",
        "source_sha256": "ab" * 32,
    }
    # raw rows with two extra columns the signal drops; the probe suite goes through it too
    raw = np.concatenate([x, np.ones((400, 2))], axis=1)
    np.save(tmp_path / "raw.npy", raw)
    suite = raw[[3, 8]]
    np.savez(tmp_path / "suite.npz", inputs=suite, metadata=np.array("{}"))
    status, out, _ = _run(
        [
            "reference",
            "check",
            "--config",
            "c.yaml",
            "--signal",
            "m/s",
            "--from",
            str(tmp_path / "raw.npy"),
            "--probe-suite",
            str(tmp_path / "suite.npz"),
            "--json",
        ],
        capsys,
    )
    document = json.loads(out)
    assert status == 1 and document["dims"] == 6
    leakage = document["checks"][list(CHECKS).index("probe_leakage")]
    assert [r["index"] for r in leakage["rows"]] == [3, 8]
    assert leakage["summary"]["suites"] == {"suite": {"offset": 0, "rows": 2, "reference_rows": 2}}


def test_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, _ = _vectors(5)
    x[1] = x[0]
    np.save(tmp_path / "ref.npy", x)
    status, out, _ = _run(
        ["reference", "check", str(tmp_path / "ref.npy"), "--plot", str(tmp_path / "p.png")],
        capsys,
    )
    assert f"plot written to {tmp_path / 'p.png'}" in out
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert status == 0


def test_a_reference_built_from_a_file_with_5_percent_poisons_reports_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ReLU embeddings in which 5 % of one class fire a unit the clean rows never do (what a
    backdoored model's penultimate layer shows for its trigger) are built into a reference
    and checked by the signal's name."""
    import service.cli as cli

    root = _config(tmp_path)
    monkeypatch.setattr(cli, "_load_or_exit", lambda path: root)
    rng = np.random.default_rng(6)
    y = np.repeat(np.arange(3), 400)
    embeddings = np.maximum(rng.normal(size=(1200, 6)) + np.eye(6)[y] * 4.0, 0.0)
    embeddings[:, 5] = 0.0
    poisoned = np.sort(rng.choice(np.flatnonzero(y == 1), 20, replace=False))
    embeddings[poisoned, 5] = 5.0 + rng.normal(size=20)
    np.save(tmp_path / "embeddings.npy", embeddings)
    np.save(tmp_path / "labels.npy", y)
    assert (
        main(
            [
                "reference",
                "build",
                "--config",
                "c.yaml",
                "--signal",
                "m/s",
                "--from",
                str(tmp_path / "embeddings.npy"),
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    status, out, _ = _run(
        [
            "reference",
            "check",
            "--config",
            "c.yaml",
            "--signal",
            "m/s",
            "--labels",
            str(tmp_path / "labels.npy"),
            "--json",
        ],
        capsys,
    )
    document = json.loads(out)
    assert status == 1
    by_name = {c["check"]: c for c in document["checks"]}
    for check in ("spectral_signatures", "activation_clustering"):
        assert by_name[check]["status"] == "flagged", by_name[check]["message"]
        assert by_name[check]["summary"]["flagged_classes"] == [1]
        assert [r["index"] for r in by_name[check]["rows"]] == poisoned.tolist()
