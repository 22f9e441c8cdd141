"""Each benchmark's --quick path runs and writes JSON with its results and targets."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

# tests/ is on sys.path (tests/conftest.py), where this folder looks like a namespace package
# called "benchmarks" that would shadow the real one: put the repository root first. (A
# conftest.py here would clash with tests/detectors/conftest.py: neither folder can be a
# package without shadowing the library it tests.)
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
if getattr(sys.modules.get("benchmarks"), "__file__", "") is None:
    del sys.modules["benchmarks"]


def _run_quick(name: str, tmp_path: Path, *extra: str) -> dict[str, Any]:
    module = importlib.import_module(f"benchmarks.{name}")
    out = tmp_path / f"{name}.json"
    assert module.main(["--quick", "--json", str(out), *extra]) == 0
    payload: dict[str, Any] = json.loads(out.read_text())
    assert payload["benchmark"] == name
    assert payload["quick"] is True
    assert isinstance(payload["results"], dict)
    targets = payload["targets"]
    assert targets, "every benchmark lists the targets its issue names"
    for target in targets:
        # "error" only on a comparison that could not run, which is then a miss
        assert set(target) - {"error"} == {"name", "value", "limit", "comparison", "met"}
        assert target["comparison"] in ("<=", ">=", "<", ">")
        assert isinstance(target["met"], bool)
        if "error" in target:
            assert target["met"] is False and target["error"]
    return payload


@pytest.mark.slow
def test_detectors_speed_quick(tmp_path: Path) -> None:
    payload = _run_quick("detectors_speed", tmp_path, "--rounds", "1")
    results = payload["results"]
    assert results["ks"]["max_abs_diff_auto_vs_scipy_default"] <= 1e-6
    assert results["ks"]["max_abs_diff_asymp_vs_scipy_asymp"] <= 1e-6
    assert results["cvm_online"]["ours_update_batched_s"] > 0
    # every pair keeps its speed targets, measured or (alibi-detect missing) missed with why
    speed = [t for t in payload["targets"] if "speedup vs alibi-detect" in t["name"]]
    assert len(speed) == 6
    if results["alibi_skipped"] is not None:
        assert all(t["met"] is False and "alibi-detect" in t["error"] for t in speed)


@pytest.mark.slow
def test_detectors_calibration_quick(tmp_path: Path) -> None:
    payload = _run_quick("detectors_calibration", tmp_path)
    names = [t["name"] for t in payload["targets"]]
    assert any("RffMmdOnline" in n for n in names)
    assert any("CVMOnline" in n for n in names)


@pytest.mark.slow
def test_failing_loudly_quick(tmp_path: Path) -> None:
    payload = _run_quick("failing_loudly", tmp_path, "--rounds", "1")
    results = payload["results"]
    assert len(results["shifts"]) == 21
    assert set(results["methods"]) == {
        "BBSD-KS (softmax)", "MMD (embedding)", "KS (raw pixels)", "chi-squared (labels)",
        "KS (kNN OOD score)", "union: pixels, labels, kNN score",
    }
    # chosen on one split, scored on another; the like-for-like BBSD row is its own target
    assert results["chosen_on"]["mnist_split_seed"] != results["scored_on"]["mnist_split_seed"]
    assert results["chosen_method"] in results["methods"]
    names = [t["name"] for t in payload["targets"]]
    assert sum("like for like: our BBSD-KS" in n for n in names) == 2  # n = 10, 100 quick


def test_ood_quick(tmp_path: Path) -> None:
    payload = _run_quick("ood", tmp_path)
    results = payload["results"]
    assert set(results["table"]) == {
        "Mahalanobis (embedding)", f"kNN k={results['chosen_k']} (embedding)", "energy (logits)",
        "max-softmax (logits)",
    }
    # the settings were chosen on sets that never score them
    assert not set(results["chosen_on"]["ood_sets"]) & set(results["scored_on"]["ood_sets"])
    assert results["chosen_scorer"] in results["table"]


@pytest.mark.slow
def test_performance_quick(tmp_path: Path) -> None:
    payload = _run_quick("performance", tmp_path, "--rounds", "1")
    targets = {t["name"]: t for t in payload["targets"]}
    realized = [t for name, t in targets.items() if name.startswith("realized")]
    assert len(realized) == 7 and all(t["met"] for t in realized)
    results = payload["results"]
    assert results["estimation"]["selection"]["chosen"] in results["estimation"]["candidates"]
    if results["estimation"]["nannyml_absent"]:  # the comparison is a missed target, named
        missed = [t for name, t in targets.items() if "missed: NannyML" in name]
        assert len(missed) == 12 and not any(t["met"] for t in missed)
    assert results["degradation"]["max_false_alarm_rate"] <= 0.15


@pytest.mark.slow
def test_proxy_overhead_quick_runs_the_real_serve(tmp_path: Path) -> None:
    payload = _run_quick("proxy_overhead", tmp_path, "--rounds", "1")
    results = payload["results"]
    for upstream in ("model", "echo"):
        assert {"serve_off", "serve_default", "serve_full", "standin_decodingsink"} <= set(
            results[upstream]["medians"]
        )
        counters = results[upstream]["serve_counters"]
        # the settings did what they say: nothing sampled when off, everything when full
        assert counters["serve_off"]["outrider_tap_samples_total{outcome=sampled}"] == 0
        assert counters["serve_full"]["outrider_tap_samples_total{outcome=skipped}"] == 0
    names = [t["name"] for t in payload["targets"]]
    assert "model: sidecar CPU per request, serve_default (4KB, c=8, us)" in names


@pytest.mark.slow
def test_serve_profile_quick_takes_samples(tmp_path: Path) -> None:
    if not Path(sys.executable).with_name("py-spy").exists():
        pytest.skip("py-spy is not installed (pip install '.[bench]')")
    payload = _run_quick("serve_profile", tmp_path, "--setting", "serve_off", "--rounds", "3")
    assert payload["results"]["serve_off"]["samples"] > 0


@pytest.mark.slow
def test_reference_hygiene_quick(tmp_path: Path) -> None:
    payload = _run_quick("reference_hygiene", tmp_path)
    results = payload["results"]
    assert set(results["table"]) == {"mnist", "digits"}
    assert results["timing"]["100000x384"]["cpu_s"] > 0
    names = [t["name"] for t in payload["targets"]]
    assert any("spectral_signatures recall" in n for n in names)
    assert any("label-error precision" in n for n in names)
