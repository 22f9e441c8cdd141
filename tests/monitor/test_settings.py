"""The models:/monitor: settings: valid configs parse, mistakes are named by their path."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from service.monitor.settings import PipelineSettings


def _config(**signal_overrides: Any) -> dict[str, Any]:
    signal: dict[str, Any] = {
        "name": "embedding",
        "source": {"output": "embedding"},
        "reference": {"capture": 500},
        "detectors": [{"type": "ks", "window": 200, "params": {"alpha": 0.01}}],
    }
    signal.update(signal_overrides)
    return {"models": {"demo": {"signals": [signal]}}, "monitor": {"queue_size": 100}}


def _locs(config: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        PipelineSettings.model_validate(config)
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in info.value.errors()]


def test_valid_config_parses_with_defaults() -> None:
    settings = PipelineSettings.model_validate(_config())
    signal = settings.models["demo"].signals[0]
    assert signal.source.tensor == "embedding"
    assert signal.source.side == "output"
    assert signal.detectors[0].label == "ks"
    assert signal.detectors[0].params == {"alpha": 0.01}
    assert settings.monitor.queue_size == 100
    assert settings.monitor.batch_size == 256


def test_unknown_key_is_named_by_path() -> None:
    config = _config()
    config["models"]["demo"]["signals"][0]["detectors"][0]["windw"] = 3
    assert _locs(config) == [
        ("models.demo.signals.0.detectors.0.windw", "Extra inputs are not permitted")
    ]


def test_source_needs_exactly_one_kind() -> None:
    locs = _locs(_config(source={"input": "pixels", "output": "embedding"}))
    assert locs == [
        (
            "models.demo.signals.0.source",
            "Value error, a signal source needs exactly one of input, output or embedder; "
            "got input, output",
        )
    ]


def test_detector_needs_a_window_and_online_needs_samples() -> None:
    locs = _locs(_config(detectors=[{"type": "mmd"}, {"type": "cvm_online", "window_seconds": 5}]))
    assert [loc for loc, _ in locs] == [
        "models.demo.signals.0.detectors.0",
        "models.demo.signals.0.detectors.1",
    ]
    assert "needs window (samples), window_seconds, or both" in locs[0][1]
    assert "cvm_online is an online detector" in locs[1][1]


def test_unknown_detector_type_lists_valid_ones() -> None:
    locs = _locs(_config(detectors=[{"type": "kss", "window": 10}]))
    assert locs[0][0] == "models.demo.signals.0.detectors.0.type"
    assert "'ks'" in locs[0][1] and "'max_softmax'" in locs[0][1]


def test_repeated_detector_names_are_refused() -> None:
    locs = _locs(_config(detectors=[{"type": "ks", "window": 10}, {"type": "ks", "window": 20}]))
    assert locs == [
        (
            "models.demo.signals.0",
            "Value error, detector names must be unique per signal; repeated: ks "
            "(set `name:` on one of them)",
        )
    ]


def test_reference_takes_path_or_capture_and_transform_is_checked() -> None:
    locs = _locs(
        _config(
            reference={"path": "a.npz", "capture": 100},
            transform={"reshape": [-1, -1], "columns": [1, 1]},
        )
    )
    assert sorted(loc for loc, _ in locs) == [
        "models.demo.signals.0.reference",
        "models.demo.signals.0.transform",
    ]


def test_reserved_params_are_refused() -> None:
    locs = _locs(_config(detectors=[{"type": "ks", "window": 10, "params": {"window_size": 5}}]))
    assert locs[0][0] == "models.demo.signals.0.detectors.0"
    assert "params.window_size is set by outrider" in locs[0][1]


def test_the_documented_example_is_valid() -> None:
    import yaml

    import service.monitor.settings as module

    doc = module.__doc__ or ""
    block = doc[doc.index("    models:") :]
    text = "\n".join(line[4:] for line in block.splitlines())
    settings = PipelineSettings.model_validate(yaml.safe_load(text))
    assert [s.name for s in settings.models["demo"].signals] == ["embedding", "confidence"]
    assert settings.models["demo"].signals[0].detectors[2].window_seconds == 60
