from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from service.probes.cli import add_probes_subcommands
from service.probes.sample_files import SampleFileError, load_samples
from service.probes.suite import load_suite


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="outrider")
    add_probes_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


def test_build_from_csv_with_label_column(
    demo_model_path: Path,
    digits_sample: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    x, y = digits_sample
    csv = tmp_path / "d.csv"
    header = ",".join([f"p{i}" for i in range(64)] + ["label"])
    rows = [",".join(f"{v:g}" for v in [*r, lab]) for r, lab in zip(x[:8], y[:8], strict=True)]
    csv.write_text(header + "\n" + "\n".join(rows) + "\n")
    out = tmp_path / "s.npz"
    status = _main(
        [
            "probes",
            "build",
            "--model",
            str(demo_model_path),
            "--data",
            str(csv),
            "--suite",
            "digits-c",
            "--kind",
            "corruptions",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert status == 0
    suite = load_suite(out)
    assert suite.name == "digits-c" and len(suite) == 8 * 46
    np.testing.assert_array_equal(suite.labels[:8], y[:8])
    assert capsys.readouterr().out.startswith(f"wrote {out}: 368 probes, kind corruptions")


def test_build_refuses_a_data_file_of_the_wrong_width(
    demo_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.npy"
    np.save(data, np.zeros((4, 63), dtype=np.float32))
    status = _main(
        [
            "probes",
            "build",
            "--model",
            str(demo_model_path),
            "--data",
            str(data),
            "--suite",
            "x",
            "--out",
            str(tmp_path / "x.npz"),
            "--no-progress",
        ]
    )
    assert status == 2
    assert capsys.readouterr().err == (
        "error: data has 63 features, model input 'pixels' takes 64\n"
    )


def test_runs_lists_the_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["probes", "runs", "--state-dir", str(tmp_path)]) == 1
    from service.probes.run_store import RunRecord, RunStore

    store = RunStore(tmp_path / "probes" / "runs.sqlite")
    store.record_run(RunRecord("demo", "1", "s", "d", "noise", 1.0, 2.0, "ok", 10, accuracy=0.5))
    store.close()
    capsys.readouterr()
    assert _main(["probes", "runs", "--state-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["1", "demo", "1", "s", "ok", "10", "0.5000"]


def test_sample_files(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.ones((3, 4)), y=np.array([0.0, 1.0, 2.0]))
    x, y = load_samples(tmp_path / "a.npz")
    assert x.shape == (3, 4) and y is not None and y.dtype == np.int64
    np.savez(tmp_path / "b.npz", foo=np.ones((3, 4)))
    with pytest.raises(SampleFileError, match=r"no samples array; expected one of"):
        load_samples(tmp_path / "b.npz")
    (tmp_path / "c.txt").write_text("1,2\n")
    with pytest.raises(SampleFileError, match=r"unsupported data file type '.txt'"):
        load_samples(tmp_path / "c.txt")
    (tmp_path / "d.csv").write_text("1,2\n3,4\n")
    x, y = load_samples(tmp_path / "d.csv")
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]] and y is None
