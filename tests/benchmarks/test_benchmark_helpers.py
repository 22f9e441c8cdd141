"""Exact checks of the benchmark helpers: AUROC, FPR at 95 % TPR, data sets and shifts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
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

from benchmarks.datasets import (  # noqa: E402
    AFFINE_LEVELS,
    digits_upscaled,
    inverted,
    random_affine,
    sample_image_patches,
    softmax,
)
from benchmarks.failing_loudly import shift_names, shifted_target  # noqa: E402
from benchmarks.ood import auroc, fpr_at_tpr  # noqa: E402


def test_auroc_counts_pairs_and_half_ties() -> None:
    assert auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    # pairs (id, ood): (1,1) tie = 0.5, (1,2) = 1, (3,1) = 0, (3,2) = 0 -> 1.5 / 4
    assert auroc(np.array([1.0, 3.0]), np.array([1.0, 2.0])) == 0.375


def test_fpr_at_95_tpr_uses_the_score_flagging_95_percent_of_ood() -> None:
    ood = np.arange(100, dtype=float)  # 95 % of OOD scores are >= 5
    ident = np.array([4.0, 5.0, 6.0, 10.0])
    assert fpr_at_tpr(ident, ood) == 0.75


def test_failing_loudly_has_21_shifts_and_knockout_removes_class_zero() -> None:
    names = shift_names()
    assert len(names) == 21
    assert names[:3] == [
        "gaussian_noise_small@0.1", "gaussian_noise_small@0.5", "gaussian_noise_small@1.0",
    ]
    y = np.repeat(np.arange(10), 20)
    x = np.repeat(y[:, None].astype(float), 784, axis=1)
    out = shifted_target("knockout@1.0", x, y, 150, np.random.default_rng(0))
    assert out.shape == (150, 784)
    assert not np.any(out[:, 0] == 0.0)
    half = shifted_target("knockout@0.5", x, y, 190, np.random.default_rng(0))
    assert int(np.sum(half[:, 0] == 0.0)) == 10


def test_noise_shift_touches_only_the_fraction_hit() -> None:
    x = np.full((400, 784), 100.0)
    out = shifted_target("gaussian_noise_large@0.5", x, np.zeros(400, int), 400,
                         np.random.default_rng(1))
    changed = np.any(out != 100.0, axis=1)
    assert 150 < int(changed.sum()) < 250
    assert out.min() >= 0.0 and out.max() <= 255.0


def test_affine_identity_ranges_and_ood_images() -> None:
    assert AFFINE_LEVELS["large"] == (90.0, 0.4, 0.4)
    img = np.zeros((1, 784))
    img[0, 14 * 28 + 14] = 255.0
    moved = random_affine(img, "small", np.random.default_rng(0))
    assert moved.shape == (1, 784) and moved.sum() > 0.0
    digits = digits_upscaled(5, seed=0)
    assert digits.shape == (5, 784)
    assert digits.reshape(5, 28, 28)[:, :4, :].sum() == 0.0  # MNIST-like empty border
    patches = sample_image_patches(3, seed=0)
    assert patches.shape == (3, 784) and 0.0 <= patches.min() <= patches.max() <= 255.0
    assert inverted(np.zeros((1, 2))).tolist() == [[255.0, 255.0]]
    assert softmax(np.array([[0.0, 0.0]])).tolist() == [[0.5, 0.5]]


def test_mnist_split_is_shuffled_and_disjoint() -> None:
    from benchmarks.datasets import mnist_split

    s = mnist_split(0)
    assert (len(s.y_train), len(s.y_val), len(s.y_test)) == (2500, 1000, 1500)
    assert len(set(s.y_train[:50].tolist())) > 5  # the file itself is sorted by class
    assert np.bincount(np.concatenate([s.y_train, s.y_val, s.y_test])).tolist() == [500] * 10


def test_profile_buckets_take_the_deepest_frame_that_names_one(tmp_path: Path) -> None:
    from benchmarks.serve_profile import WAITING, attribute, bucket_of, read_raw

    loop = "_run_once (asyncio/base_events.py:1)"
    read = "_read_ready (asyncio/selector_events.py:2)"
    relay = "data_received (service/dataplane/relay.py:3)"
    tap = "feed_client (service/dataplane/tap.py:4)"
    assert bucket_of([loop, read, relay, tap, "decode (hpack/hpack.py:5)"]) == "HPACK decode"
    assert bucket_of([loop, read, relay]) == "relay: read/write callbacks"
    assert bucket_of([loop, read]) == "asyncio transports: socket recv/send"
    worker = ["run (threading.py:1)", "_run (service/monitor/pipeline.py:2)"]
    assert bucket_of([*worker, "update (detectors/mmd.py:3)", "dot (numpy/x.py:4)"]) == (
        "monitor worker: detectors"
    )
    assert bucket_of(["main (x.py:1)"]) == "other"
    raw = tmp_path / "raw.txt"
    raw.write_text(  # py-spy --format raw --threads: "thread (TID): name;frames... count"
        f"thread (11): MainThread;{loop};{read};{relay};{tap} 3\n"
        f"thread (11): MainThread;{loop};select (selectors.py:468) 5\n"
        f"thread (12): outrider-monitor;{';'.join(worker)};update (detectors/ks.py:9) 2\n"
    )
    samples, leaves = read_raw(raw)
    assert samples == {"11": {"tap: streams, observations": 3, WAITING: 5},
                       "12": {"monitor worker: detectors": 2}}
    assert leaves[WAITING] == {"select (selectors.py:468)": 5}
    # each thread's measured CPU goes to its own samples' buckets; waiting samples get none
    assert attribute(samples, {"11": 0.3, "12": 0.5, "13": 0.1}) == {
        "tap: streams, observations": 0.3, "monitor worker: detectors": 0.5,
        "unsampled threads": 0.1,
    }


def test_proxy_summary_ratios_are_per_round_medians() -> None:
    from benchmarks.proxy_overhead import summarise

    def row(p50: float, rps: float, cpu: float) -> dict[str, float]:
        return {"4KB_c1_p50_ms": p50, "4KB_c8_rps": rps, "4KB_c8_cpu_us_per_req": cpu,
                "256KB_c1_p50_ms": p50, "256KB_c8_rps": rps}

    raw = {
        "direct": [row(1.0, 1000, 500), row(2.0, 500, 500)],
        "passthrough": [row(2.0, 500, 800), row(3.0, 250, 800)],
        "serve_off": [row(1.1, 900, 100), row(2.2, 450, 120)],
        "serve_default": [row(1.2, 800, 200), row(2.4, 400, 180)],
    }
    out = summarise(raw)
    r = out["ratios"]["serve_default"]
    assert r["4KB_c1_added_p50_ms"] == pytest.approx(0.3)  # median of 0.2 and 0.4
    assert r["4KB_c8_throughput_vs_direct"] == 0.8
    assert r["4KB_c1_added_p50_vs_passthrough"] == pytest.approx(0.3)  # 0.2 and 0.4
    assert r["4KB_c8_rps_vs_serve_off"] == pytest.approx(800 / 900)
    assert out["medians"]["serve_default"]["4KB_c8_cpu_us_per_req"] == 190
    assert r["4KB_c8_cpu_vs_envoy"] == 190 / 350


def test_serve_settings_differ_only_in_sampling() -> None:
    from benchmarks.sidecar_processes import demo_monitoring, serve_config

    monitoring = demo_monitoring("model")
    off = serve_config("serve_off", 9000, Path("/s"), monitoring)
    default = serve_config("serve_default", 9000, Path("/s"), monitoring)
    full = serve_config("serve_full", 9000, Path("/s"), monitoring)
    assert off["dataplane"]["sampling_rate"] == 0.0
    assert "sampling_rate" not in default["dataplane"]  # the dataplane's own defaults
    assert full["dataplane"]["sampling_rate"] == 1.0
    assert off["models"] == default["models"] == full["models"]
    echo = demo_monitoring("echo")["models"]["demo"]["signals"]
    assert [s["source"] for s in echo] == [{"input": "pixels"}]
