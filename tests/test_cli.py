"""The command line, run as a user runs it: a subprocess of the installed entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from service.version import __version__


def _outrider(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_version() -> None:
    result = _outrider("version")
    assert result.returncode == 0
    assert result.stdout == f"outrider {__version__}\n"


def test_config_check_names_every_error_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("admin:\n  port: 70000\ndataplane:\n  listen_port: x\n")
    result = _outrider("config", "check", str(bad))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{bad}: invalid (2 error(s))",
        "  admin.port: Input should be less than or equal to 65535",
        "  dataplane.listen_port: Input should be a valid integer, unable to parse string as an "
        "integer",
    ]


def test_config_check_prints_a_normalised_summary(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("admin:\n  port: 9001\n")
    result = _outrider("config", "check", str(good))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{good}: valid\nstate_dir: outrider-state\nadmin:\n")
    assert "  port: 9001\n" in result.stdout


def test_modelserver_refuses_a_missing_model_file(tmp_path: Path) -> None:
    result = _outrider("modelserver", "--model", str(tmp_path / "absent.onnx"))
    assert result.returncode == 2
    assert result.stderr == f"model file not found: {tmp_path / 'absent.onnx'}\n"


def test_serve_caps_blas_at_one_thread() -> None:
    from threadpoolctl import threadpool_info

    from service.cli import _one_blas_thread

    limiter = _one_blas_thread()
    try:
        blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
        assert blas and all(i["num_threads"] == 1 for i in blas)
    finally:
        limiter.restore_original_limits()


def test_a_closed_pipe_ends_quietly_for_every_command(tmp_path: Path) -> None:
    """`outrider config check x.yaml | head -1`: the reader leaves, outrider stops quietly."""
    import os
    import subprocess
    import sys

    config = tmp_path / "c.yaml"
    config.write_text("state_dir: ./x\n")
    for argv in (["config", "check", str(config)], ["version"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # nobody will read: every write fails with EPIPE
        try:
            done = subprocess.run(
                [sys.executable, "-m", "service.cli", *argv],
                stdout=write_end, stderr=subprocess.PIPE, timeout=60, check=False,
            )
        finally:
            os.close(write_end)
        assert done.stderr.decode() == "", argv
        assert done.returncode == 141, argv
