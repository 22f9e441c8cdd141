"""References: stored with metadata, built from npy/npz/csv (and through an embedder), checked."""

from __future__ import annotations

import argparse
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from structlog.testing import capture_logs

from service.monitor import reference
from service.monitor.pipeline import MonitorPipeline
from service.monitor.reference import (
    Reference,
    ReferenceCapture,
    ReferenceError,
    ReferenceMismatch,
    ReferenceStore,
    build_reference,
    read_reference,
    set_aside_unreadable_captures,
)
from service.monitor.reference_cli import add_reference_subcommands
from service.monitor.settings import MonitorSettings, PipelineSettings


def _config(tmp_path: Path, source: dict[str, Any], **signal: Any) -> PipelineSettings:
    return PipelineSettings.model_validate(
        {
            "models": {
                "m/x": {
                    "signals": [
                        {
                            "name": "s",
                            "source": source,
                            "detectors": [{"type": "ks", "window": 10}],
                            **signal,
                        }
                    ]
                }
            }
        }
    )


def test_store_round_trip_keeps_metadata(tmp_path: Path) -> None:
    data = np.arange(12, dtype=np.float64).reshape(4, 3)
    ref = Reference("m/x", "2", "s", data, "2026-01-01T00:00:00+00:00", "ab" * 32)
    store = ReferenceStore(tmp_path)
    path = store.save(ref)
    assert path == tmp_path / "references" / "m%2Fx" / "s.npz"
    loaded = store.load("m/x", "s")
    assert loaded is not None
    np.testing.assert_array_equal(loaded.data, data)
    assert loaded.metadata() == {
        "format": 1,
        "model": "m/x",
        "version": "2",
        "signal": "s",
        "dims": 3,
        "count": 4,
        "created": "2026-01-01T00:00:00+00:00",
        "source_sha256": "ab" * 32,
    }
    assert store.load("m/x", "other") is None
    path.write_bytes(b"garbage")
    with pytest.raises(ReferenceError, match="unreadable"):
        read_reference(path)


def test_build_from_npy_npz_csv_applies_the_transform(tmp_path: Path) -> None:
    config = _config(tmp_path, {"output": "logits"}, transform={"columns": [2, 0]})
    raw = np.arange(3000 * 3, dtype=np.float32).reshape(3000, 3)
    np.save(tmp_path / "a.npy", raw)
    np.savez(tmp_path / "b.npz", logits=raw, other=raw[:1])
    (tmp_path / "c.csv").write_text("a,b,c\n1,2,3\n4,5,6\n")
    ref, path = build_reference(
        config, "m/x/s", tmp_path / "a.npy", state_dir=tmp_path, progress=False
    )
    np.testing.assert_array_equal(ref.data, raw[:, [2, 0]])
    assert ref.source_sha256 == hashlib.sha256((tmp_path / "a.npy").read_bytes()).hexdigest()
    assert read_reference(path).count == 3000
    ref_npz, _ = build_reference(
        config, "m/x/s", tmp_path / "b.npz", state_dir=tmp_path, progress=False
    )
    assert ref_npz.count == 3000
    ref_csv, _ = build_reference(
        config, "m/x/s", tmp_path / "c.csv", state_dir=tmp_path, progress=False
    )
    np.testing.assert_array_equal(ref_csv.data, [[3.0, 1.0], [6.0, 4.0]])


def test_build_errors_name_the_problem(tmp_path: Path) -> None:
    config = _config(tmp_path, {"output": "logits"})
    with pytest.raises(ReferenceError, match="model 'nope' is not configured"):
        build_reference(config, "nope/s", tmp_path / "a.npy", state_dir=tmp_path)
    with pytest.raises(ReferenceError, match="has no signal 'q' \\(signals: s\\)"):
        build_reference(config, "m/x/q", tmp_path / "a.npy", state_dir=tmp_path)
    bad = np.ones((3, 2))
    bad[1, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ReferenceError, match="rows 0..2: .*NaN.*non_finite"):
        build_reference(config, "m/x/s", tmp_path / "nan.npy", state_dir=tmp_path, progress=False)
    (tmp_path / "x.txt").write_text("1")
    with pytest.raises(ReferenceError, match="unsupported file type"):
        build_reference(config, "m/x/s", tmp_path / "x.txt", state_dir=tmp_path)


def test_embedder_signal_embeds_raw_inputs(tmp_path: Path) -> None:
    w = np.array([[2.0], [1.0]], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["e"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [None, 1])],
        initializer=[numpy_helper.from_array(w, name="w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "e.onnx")
    config = _config(tmp_path, {"embedder": {"path": str(tmp_path / "e.onnx"), "input": "x"}})
    np.save(tmp_path / "raw.npy", np.array([[1, 1], [0, 3]], dtype=np.float32))
    ref, _ = build_reference(
        config, "m/x/s", tmp_path / "raw.npy", state_dir=tmp_path, progress=False
    )
    np.testing.assert_array_equal(ref.data, [[3.0], [3.0]])


def test_capture_keeps_first_rows_and_rejects_other_dims() -> None:
    capture = ReferenceCapture("m", "s", 5)
    capture.add(np.ones((3, 2)), "1")
    capture.add(np.zeros((4, 2)), "2")
    assert capture.done and capture.count == 5
    np.testing.assert_array_equal(capture.rows(), [[1, 1]] * 3 + [[0, 0]] * 2)
    assert capture.reference().version == "1"
    other = ReferenceCapture("m", "s", 5)
    other.add(np.ones((1, 2)), "1")
    with pytest.raises(Exception, match="rows have 3 dims, the capture has 2"):
        other.add(np.ones((1, 3)), "1")


def test_reference_cli_builds_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, {"output": "logits"})

    class Root:
        models = config.models
        monitor = MonitorSettings()
        state_dir = tmp_path / "state"

    parser = argparse.ArgumentParser(prog="outrider")
    add_reference_subcommands(parser.add_subparsers(dest="command"), lambda _: Root())
    np.save(tmp_path / "rows.npy", np.eye(3))
    args = parser.parse_args(
        [
            "reference",
            "build",
            "--config",
            "c.yaml",
            "--signal",
            "m/x/s",
            "--from",
            str(tmp_path / "rows.npy"),
            "--no-progress",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "reference m/x/s: 3 rows x 3 dims ->" in out
    assert (tmp_path / "state" / "references" / "m%2Fx" / "s.npz").exists()
    args = parser.parse_args(
        [
            "reference",
            "build",
            "--config",
            "c.yaml",
            "--signal",
            "m/x/zz",
            "--from",
            str(tmp_path / "rows.npy"),
            "--no-progress",
        ]
    )
    assert args.func(args) == 2
    assert "has no signal 'zz'" in capsys.readouterr().err


def test_mismatch_names_both_signals(tmp_path: Path) -> None:
    from service.monitor.reference import check_reference

    config = _config(tmp_path, {"output": "logits"})
    ref = Reference("m/x", "1", "other", np.zeros((3, 2)), "", "")
    with pytest.raises(ReferenceMismatch, match="reference was built for m/x/other"):
        check_reference(ref, "m/x", config.models["m/x"].signals[0], None)


def _stored(tmp_path: Path) -> Path:
    # Rows enough that numpy parses a member's header before the zip checks its CRC.
    ref = Reference("m/x", "1", "s", np.arange(600.0).reshape(200, 3), "", "0" * 64)
    return ReferenceStore(tmp_path).save(ref)


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:300])


def _npy_header_cut(path: Path) -> None:
    data = path.read_bytes()
    end = data.index(b"}", data.index(b"{'descr'"))
    path.write_bytes(data[:end] + b" " + data[end + 1 :])


def _member_not_deflate(path: Path) -> None:
    ref = read_reference(path)
    np.savez_compressed(path, data=ref.data, meta=np.array(json.dumps(ref.metadata())))
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo("data.npy")
    start = member.header_offset + 30 + len(member.filename) + len(member.extra)
    for i in range(start + 40, start + 60):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def _no_meta(path: Path) -> None:
    with path.open("wb") as fh:
        np.savez(fh, data=np.zeros((3, 3)))


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_truncated, "not an .npz archive: truncated, or not a reference"),
        (lambda p: p.write_bytes(b""), "not an .npz archive: truncated, or not a reference"),
        (_npy_header_cut, "tokenize.TokenError: "),
        (_member_not_deflate, "zlib.error: Error -3 while decompressing data"),
        (_no_meta, "KeyError: 'meta is not a file in the archive'"),
    ],
)
def test_unreadable_reference_errors_name_the_file_and_the_problem(
    tmp_path: Path, damage: Any, problem: str
) -> None:
    path = _stored(tmp_path)
    damage(path)
    with pytest.raises(ReferenceError) as raised:
        ReferenceStore(tmp_path).load("m/x", "s")
    assert str(raised.value).startswith(f"reference {path}: unreadable (")
    assert problem in str(raised.value)


def test_an_unreadable_captured_reference_is_set_aside_and_captured_again(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, {"input": "x"}, reference={"capture": 10})
    path = _stored(tmp_path)
    # A readable capture is kept.
    assert set_aside_unreadable_captures(config, tmp_path) == []
    assert path.exists()
    _truncated(path)
    damaged = path.read_bytes()
    with capture_logs() as logs:
        [aside] = set_aside_unreadable_captures(config, tmp_path)
    assert aside.parent == path.parent
    assert aside.name.startswith("s.corrupt-")
    assert aside.read_bytes() == damaged
    assert not path.exists()
    assert [(e["event"], e["log_level"], e["path"]) for e in logs] == [
        ("reference_set_aside", "warning", str(path))
    ]
    assert logs[0]["reason"] == (
        f"reference {path}: unreadable (not an .npz archive: truncated, or not a reference); "
        "capturing it again"
    )
    pipeline = MonitorPipeline(config, registry=None, state_dir=tmp_path)
    assert pipeline.capture_progress() == {("m/x", "s"): (0, 10)}


def test_an_unreadable_built_reference_stays_a_start_up_error(tmp_path: Path) -> None:
    built = tmp_path / "built.npz"
    config = _config(tmp_path, {"input": "x"}, reference={"path": str(built)})
    built.write_bytes(_stored(tmp_path).read_bytes()[:300])
    assert set_aside_unreadable_captures(config, tmp_path) == []
    with pytest.raises(ReferenceError, match=f"^reference {built}: unreadable \\(not an .npz"):
        MonitorPipeline(config, registry=None, state_dir=tmp_path)
    assert built.exists()


def test_a_captured_reference_that_cannot_be_moved_aside_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, {"input": "x"}, reference={"capture": 10})
    path = _stored(tmp_path)
    _truncated(path)

    def read_only(source: object, destination: object) -> None:
        raise PermissionError(13, "Permission denied", str(source))

    monkeypatch.setattr(reference.os, "replace", read_only)
    with pytest.raises(ReferenceError) as raised:
        set_aside_unreadable_captures(config, tmp_path)
    assert str(raised.value) == (
        f"reference {path}: unreadable (not an .npz archive: truncated, or not a reference); "
        f"capturing it again; moving it aside failed too ([Errno 13] Permission denied: "
        f"'{path}')"
    )


@pytest.mark.parametrize("name", ["rows.npy", "rows.npz"])
def test_a_damaged_source_file_is_named_in_the_error(tmp_path: Path, name: str) -> None:
    source = tmp_path / name
    if name.endswith(".npy"):
        np.save(source, np.ones((10, 3)))
    else:
        np.savez_compressed(source, data=np.ones((10, 3)))
    source.write_bytes(source.read_bytes()[:60])  # truncated mid-file
    config = _config(tmp_path, {"output": "logits"})
    with pytest.raises(reference.ReferenceError, match=f"{name}: unreadable"):
        build_reference(config, "m/x/s", source, state_dir=tmp_path, progress=False)
