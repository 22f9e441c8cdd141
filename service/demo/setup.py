"""Prepares a demo run: the model, reference files built from the training split, a config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import yaml

from service.config import load_settings
from service.modelserver.demo_model import DemoData, build_demo_model, load_demo_data
from service.monitor.reference import build_reference

MODEL_NAME = "demo"
# Detector windows, in samples (rows). A request carries DEMO_BATCH_ROWS rows.
WINDOW = 200


@dataclass(frozen=True)
class DemoSetup:
    """Everything a demo run needs on disk, and the ports it will use."""

    state_dir: Path
    model_path: Path
    config_path: Path
    data: DemoData
    model_port: int
    relay_port: int
    admin_port: int


def demo_config(
    state_dir: Path, model_port: int, relay_port: int, admin_port: int
) -> dict[str, Any]:
    """The demo's outrider config: what a user would write for this model."""
    references = state_dir / "references" / MODEL_NAME
    return {
        "state_dir": str(state_dir),
        "logging": {"level": "warning", "format": "json"},
        "admin": {"host": "127.0.0.1", "port": admin_port},
        "dataplane": {
            "listen_host": "127.0.0.1",
            "listen_port": relay_port,
            "upstream": {"host": "127.0.0.1", "port": model_port},
            "sampling_rate": 1.0,
            "max_samples_per_second": 1000.0,
        },
        "checkpoints": {"interval_seconds": 10.0},
        "models": {
            MODEL_NAME: {
                "signals": [
                    {
                        "name": "embedding",
                        "source": {"output": "embedding"},
                        "reference": {"path": str(references / "embedding.npz")},
                        "detectors": [
                            {"type": "mmd", "window": WINDOW, "params": {"alpha": 0.01}},
                            {"type": "knn", "window": WINDOW, "params": {"k": 10, "alpha": 0.001}},
                        ],
                    },
                    {
                        "name": "probabilities",
                        "source": {"output": "probabilities"},
                        "reference": {"path": str(references / "probabilities.npz")},
                        "detectors": [
                            {"type": "bbsd", "window": WINDOW, "params": {"alpha": 0.01}}
                        ],
                    },
                ]
            }
        },
        "alerts": [
            {
                "name": "ModelEmbeddingDrift",
                "severity": "critical",
                "condition": "drift_detected",
                "selector": {"signal": "embedding", "detector": "mmd"},
                "for": "6s",
                "keep_firing_for": "20s",
                "annotations": {
                    "summary": "{model} v{version}: {signal} drifted ({detector})",
                    "runbook_url": "docs/runbooks/OutriderDriftDetected.md",
                },
            },
            {
                "name": "ModelPredictionShift",
                "severity": "warning",
                "condition": "drift_detected",
                "selector": {"signal": "probabilities", "detector": "bbsd"},
                "for": "6s",
                "keep_firing_for": "20s",
                "annotations": {"summary": "{model} v{version}: predicted class mix shifted"},
            },
            {
                "name": "ModelOODRatioHigh",
                "severity": "critical",
                "condition": {"ood_ratio_above": 0.5},
                "selector": {"signal": "embedding", "detector": "knn"},
                "for": "4s",
                "keep_firing_for": "20s",
                "annotations": {"summary": "{model}: over half the inputs are out of distribution"},
            },
        ],
        "hooks": {
            "hooks": [
                {
                    # dry_run: records what it would do on the incident, runs nothing.
                    "name": "rollback-deployment",
                    "type": "exec",
                    "argv": ["kubectl", "rollout", "undo", "deployment/demo-model"],
                    "match": {"severities": ["critical"]},
                    "dry_run": True,
                }
            ]
        },
    }


def _model_outputs(model_path: Path, pixels: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"pixels": pixels}), strict=True))


def prepare_demo(
    state_dir: Path, *, dataset: str, model_port: int, relay_port: int, admin_port: int
) -> DemoSetup:
    """Builds the model (cached), the references and the config; validates the config."""
    state_dir = state_dir.resolve()
    model_path = build_demo_model(state_dir / "models", dataset)
    data = load_demo_data(dataset)
    raw = _model_outputs(model_path, data.x_reference)
    source = state_dir / "reference-source.npz"
    np.savez(source, embedding=raw["embedding"], probabilities=raw["probabilities"])
    config_path = state_dir / "demo-config.yaml"
    config_path.write_text(
        yaml.safe_dump(demo_config(state_dir, model_port, relay_port, admin_port), sort_keys=False)
    )
    settings = load_settings(config_path)
    for signal in ("embedding", "probabilities"):
        build_reference(
            settings,
            f"{MODEL_NAME}/{signal}",
            source,
            state_dir=state_dir,
            version="1",
            progress=False,
        )
    return DemoSetup(state_dir, model_path, config_path, data, model_port, relay_port, admin_port)
