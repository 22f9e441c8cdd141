"""examples/text.yaml end to end: tritonclient sends BYTES through `outrider serve` to MLServer.

MLServer serves the example's text model; outrider watches the texts with the example's
sentence embedder and MMD detector, against a reference built by `outrider reference build`
from a CSV text column. Traffic is pyjokes' programmer jokes (the reference's topic), then
its Chuck Norris jokes: the topic shift must fire the example's alert and open an incident.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.e2e.outrider_process import OutriderProcess, wait_for
from tests.support.peers import free_port

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REFERENCE_JOKES = 130  # of pyjokes' 180 English programmer jokes; the other 50 are traffic


def _text_model() -> tuple[Path, Path]:
    sys.path.insert(0, str(EXAMPLES.parent))
    from examples.text_model import TextModelMissing, packaged_text_model

    try:
        return packaged_text_model()
    except TextModelMissing as missing:
        pytest.skip(str(missing))


@pytest.fixture
def mlserver(tmp_path: Path) -> Iterator[int]:
    """The example's MLServer folder with free ports; yields the gRPC port once ready."""
    import tritonclient.grpc as triton

    folder = tmp_path / "mlserver"
    shutil.copytree(EXAMPLES / "text" / "mlserver", folder)
    settings = json.loads((folder / "settings.json").read_text())
    grpc_port = free_port()
    settings.update(grpc_port=grpc_port, http_port=free_port(), metrics_port=free_port(),
                    metrics_dir=str(tmp_path / "metrics"))  # fmt: skip
    (folder / "settings.json").write_text(json.dumps(settings))
    log = (tmp_path / "mlserver.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlserver"), "start", str(folder)],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        client = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        deadline = time.monotonic() + 90
        while True:
            try:
                if client.is_model_ready("headlines"):
                    break
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            assert process.poll() is None, (tmp_path / "mlserver.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "MLServer did not become ready"
            time.sleep(0.3)
        client.close()
        yield grpc_port
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _config(tmp_path: Path, grpc_port: int, model: Path, tokenizer: Path) -> dict[str, Any]:
    """examples/text.yaml as it is, but for its paths and ports."""
    config = yaml.safe_load((EXAMPLES / "text.yaml").read_text())
    config["state_dir"] = str(tmp_path / "state")
    config["dataplane"]["upstream"]["port"] = grpc_port
    embedder = config["models"]["headlines"]["signals"][0]["source"]["embedder"]
    embedder.update(path=str(model), tokenizer=str(tokenizer))
    config["alert_evaluation_seconds"] = 0.25
    # This shared machine can be slow: let the worker catch up instead of shedding.
    config["monitor"] = {"max_lag_seconds": 120.0}
    return dict(config)


def _send(target: str, texts: list[str]) -> list[float]:
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(target)
    scores = []
    try:
        for i, text in enumerate(texts):
            tensor = triton.InferInput("text", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=object))
            result = client.infer("headlines", [tensor], request_id=f"joke-{i}")
            scores.append(float(result.as_numpy("programming_score")[0, 0]))
            time.sleep(0.02)  # ~40 texts/s: several worker cycles, as live traffic is
    finally:
        client.close()
    return scores


def test_a_topic_shift_in_text_fires_the_example_alert(mlserver: int, tmp_path: Path) -> None:
    pyjokes = pytest.importorskip("pyjokes.jokes_en")
    model, tokenizer = _text_model()
    # pyjokes lists its jokes by style (riddles late): a seeded shuffle splits one topic.
    order = np.random.default_rng(0).permutation(len(pyjokes.jokes_en["neutral"]))
    neutral = [pyjokes.jokes_en["neutral"][i] for i in order]
    chuck = pyjokes.jokes_en["chuck"]
    reference = tmp_path / "reference.csv"
    with reference.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text"])
        writer.writerows(enumerate(neutral[:REFERENCE_JOKES]))

    outrider = OutriderProcess(_config(tmp_path, mlserver, model, tokenizer), tmp_path)
    built = subprocess.run(
        [sys.executable, "-m", "service.cli", "reference", "build", "--config",
         str(outrider.config_path), "--signal", "headlines/text", "--from", str(reference),
         "--column", "text", "--no-progress"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert built.stdout.startswith(f"reference headlines/text: {REFERENCE_JOKES} rows x 384 dims")

    outrider.start()
    try:
        # The reference's topic: served through outrider, watched, no drift.
        in_topic = neutral[REFERENCE_JOKES:]
        assert len(_send(outrider.target, in_topic)) == len(in_topic)
        fed = {"model": "headlines", "signal": "text"}
        wait_for(lambda: outrider.metric("outrider_monitor_samples_total", **fed) == len(in_topic),
                 90, "programmer jokes reaching the detector")  # fmt: skip
        labels = {"model": "headlines", "version": "1", "signal": "text", "detector": "mmd"}
        assert outrider.metric("outrider_drift_detected", **labels) == 0.0
        assert outrider.metric("outrider_reference_samples", model="headlines", version="1",
                               signal="text") == REFERENCE_JOKES  # fmt: skip

        # Another topic: the example's alert fires and an incident opens.
        _send(outrider.target, chuck)
        wait_for(lambda: outrider.metric("outrider_drift_detected", **labels) == 1.0,
                 90, "drift on Chuck Norris jokes")  # fmt: skip
        wait_for(lambda: outrider.metric("outrider_alert_state", alert="TextTopicShift") == 2.0,
                 60, "TextTopicShift firing")  # fmt: skip
        incidents = outrider.get_json("/incidents")
        assert [i["alert"] for i in incidents["incidents"]] == ["TextTopicShift"]
        assert outrider.metric(
            "outrider_signal_errors_total", model="headlines", signal="text"
        ) in (None, 0.0)
    finally:
        assert outrider.stop() == 0
