"""Starts real third-party peers for tests, on loopback, bounded in time."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode} before port {port} opened"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


@dataclass(frozen=True)
class MLServerPeer:
    """A running MLServer serving a scikit-learn digits classifier as model `digits`."""

    grpc_port: int
    model_name: str
    model_version: str
    log_path: Path


def _write_digits_model(folder: Path) -> None:
    import joblib
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    model = LogisticRegression(max_iter=2000).fit(digits.data, digits.target)
    joblib.dump(model, folder / "model.joblib")


@contextmanager
def running_mlserver(workdir: Path, timeout: float = 90.0) -> Iterator[MLServerPeer]:
    """MLServer 1.7 in a subprocess. `parallel_workers: 0`: its worker pool crashes under uvloop."""
    executable = shutil.which("mlserver", path=str(Path(sys.executable).parent))
    if executable is None:
        raise FileNotFoundError("mlserver is not installed (pip install -e '.[dev]')")
    model_dir = workdir / "digits"
    model_dir.mkdir(parents=True)
    _write_digits_model(model_dir)
    grpc_port, http_port = free_port(), free_port()
    (workdir / "settings.json").write_text(
        json.dumps(
            {
                "parallel_workers": 0,
                "grpc_port": grpc_port,
                "http_port": http_port,
                "host": "127.0.0.1",
                "metrics_endpoint": None,
                "debug": False,
            }
        )
    )
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "digits",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "v1"},
            }
        )
    )
    log_path = workdir / "mlserver.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [executable, "start", str(workdir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MLSERVER_METRICS_ENDPOINT": ""},
        )
        try:
            wait_for_port(grpc_port, timeout, process)
            yield MLServerPeer(grpc_port, "digits", "v1", log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
