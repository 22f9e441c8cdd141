"""The committed stubs in service/oip/ are exactly what scripts/generate_stubs.sh makes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATED = [
    "open_inference_pb2.py",
    "open_inference_pb2.pyi",
    "grpc_inference_service_pb2.py",
    "grpc_inference_service_pb2.pyi",
    "grpc_inference_service_pb2_grpc.py",
    "grpc_inference_service_pb2_grpc.pyi",
]


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    if shutil.which("protoc-gen-mypy", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("mypy-protobuf is not installed (pip install -e '.[dev]')")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(
        ["bash", str(ROOT / "scripts/generate_stubs.sh"), str(tmp_path)],
        check=True,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(GENERATED)
    for name in GENERATED:
        fresh = (tmp_path / name).read_text()
        committed = (ROOT / "service/oip" / name).read_text()
        assert fresh == committed, f"service/oip/{name} is stale: run scripts/generate_stubs.sh"
