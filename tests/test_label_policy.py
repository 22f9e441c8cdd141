"""One label policy: every family folds the same versions into `other`, and the settings of
earlier releases still start with a warning that names the new key."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service.cli import main
from service.config import OutriderSettings
from service.dataplane.dispatch import ObservationDispatcher
from service.dataplane.metrics import DataplaneMetrics
from service.label_bounds import OTHER, LabelPolicy, LabelSettings
from service.monitor.pipeline import MonitorPipeline
from service.monitor.settings import PipelineSettings
from service.probes.evaluation import RunResults
from service.probes.metrics import ProbeMetrics
from tests.support.observations import observation, store_reference

VERSIONS = ["1", "2", "3"]  # one more than the limit below
LIMIT = 2

Drive = Callable[[LabelPolicy, CollectorRegistry, Path, list[str]], None]


def requests(policy: LabelPolicy, registry: CollectorRegistry, _: Path, versions: list[str]
             ) -> None:
    dispatcher = ObservationDispatcher(DataplaneMetrics(registry, labels=policy), sink=None)
    for version in versions:
        dispatcher.observed(dataclasses.replace(observation(), model_version=version), True)


def drift(policy: LabelPolicy, registry: CollectorRegistry, state_dir: Path, versions: list[str]
          ) -> None:
    store_reference(state_dir, "demo", "x", np.random.default_rng(0).normal(size=(50, 2)))
    settings = PipelineSettings.model_validate({"models": {"demo": {"signals": [{
        "name": "x", "source": {"input": "x"}, "detectors": [{"type": "ks", "window": 5}],
    }]}}})
    pipeline = MonitorPipeline(settings, registry=registry, state_dir=state_dir, labels=policy)
    for version in versions:  # a full window each, so each stream has a score
        pipeline.offer(observation(inputs={"x": np.zeros((5, 2), np.float32)}, version=version))
    pipeline.drain()


def probes(policy: LabelPolicy, registry: CollectorRegistry, _: Path, versions: list[str]
           ) -> None:
    metrics = ProbeMetrics(registry, labels=policy)
    results = RunResults(0.9, {"clean": 0.9}, np.ones(3, bool), {"mean": 0.8}, {"mean": 0.5})
    for version in versions:
        metrics.record_results("demo", version, "suite", results)


# One line per family: the family, and how to make its room see model versions.
FAMILIES: list[tuple[str, Drive]] = [
    ("outrider_requests", requests),
    ("outrider_drift_score", drift),
    ("outrider_probe_accuracy_ratio", probes),
]


def versions_in(registry: CollectorRegistry, family: str) -> set[str]:
    return {
        sample.labels["version"]
        for metric in registry.collect()
        if metric.name == family
        for sample in metric.samples
    }


@pytest.mark.parametrize("order", ["rooms see versions in the same order", "probes first"])
def test_every_family_folds_the_same_versions_into_other(tmp_path: Path, order: str) -> None:
    policy = LabelPolicy(LabelSettings(max_versions_per_model=LIMIT), known_models=["demo"])
    registry = CollectorRegistry()
    families = FAMILIES if order.startswith("rooms") else FAMILIES[::-1]
    for index, (_, drive) in enumerate(families):
        # Later rooms meet the versions in another order: admission is first come, anywhere.
        drive(policy, registry, tmp_path / str(index), VERSIONS if index == 0 else VERSIONS[::-1])
    expected = {*VERSIONS[:LIMIT], OTHER}
    assert {family: versions_in(registry, family) for family, _ in FAMILIES} == {
        family: expected for family, _ in FAMILIES
    }


def test_unconfigured_models_are_bounded_and_fold_their_versions_too() -> None:
    policy = LabelPolicy(LabelSettings(max_models=1, max_versions_per_model=1),
                         known_models=["demo"])
    assert [policy.model(m) for m in ("demo", "a", "b", "a")] == ["demo", "a", OTHER, "a"]
    assert policy.version("b", "7") == OTHER
    assert [policy.version("demo", v) for v in ("1", "2")] == ["1", OTHER]
    restored = LabelPolicy(LabelSettings(max_versions_per_model=1))
    restored.load_state_dict(policy.state_dict())
    assert [restored.version("demo", v) for v in ("2", "1")] == [OTHER, "1"]
    with pytest.raises(ValueError, match="label state"):
        restored.load_state_dict({"format_version": 1, "versions": "[1]"})


@pytest.mark.parametrize(
    ("config", "labels", "notes"),
    [
        ({"dataplane": {"max_model_labels": 7}}, (5, 7),
         ["dataplane.max_model_labels is deprecated: use labels.max_models"]),
        ({"monitor": {"version_label_limit": 3}, "probes": {"max_versions_per_model": 8}}, (3, 20),
         ["monitor.version_label_limit is deprecated: use labels.max_versions_per_model",
          "probes.max_versions_per_model is deprecated: use labels.max_versions_per_model"]),
        ({"probes": {"max_versions_per_model": 8}, "labels": {"max_versions_per_model": 4}},
         (4, 20), ["probes.max_versions_per_model is deprecated and ignored: "
                   "labels.max_versions_per_model is set"]),
        ({}, (5, 20), []),
    ],
)
def test_old_label_keys_still_start_with_a_note_naming_the_new_key(
    config: dict[str, object], labels: tuple[int, int], notes: list[str]
) -> None:
    settings = OutriderSettings.model_validate(config)
    assert (settings.labels.max_versions_per_model, settings.labels.max_models) == labels
    assert list(settings.deprecations) == notes


def test_config_check_and_the_environment_name_the_new_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.yaml"
    path.write_text("monitor: {version_label_limit: 3}\n")
    assert main(["config", "check", "--quiet", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: valid\n"
    assert err == (
        f"{path}: warning: monitor.version_label_limit is deprecated: "
        "use labels.max_versions_per_model\n"
    )
    monkeypatch.setenv("OUTRIDER_DATAPLANE__MAX_MODEL_LABELS", "9")
    assert OutriderSettings().labels.max_models == 9
