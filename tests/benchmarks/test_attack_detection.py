"""The attack-detection benchmark's clients and traces, exactly; its --quick run (slow)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

# tests/ is on sys.path (tests/conftest.py), where this folder looks like a namespace package
# called "benchmarks" that would shadow the real one: put the repository root first.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
if getattr(sys.modules.get("benchmarks"), "__file__", "") is None:
    del sys.modules["benchmarks"]

from benchmarks.attack_traces import (  # noqa: E402
    BenignSettings,
    ClientSpec,
    NesAttack,
    attack_program,
    augment,
    benign_program,
    record_trace,
    synthetic_extraction_program,
    uniform_extraction_program,
)

W = np.random.default_rng(0).normal(size=(16, 3))


def _scores(rows: np.ndarray) -> np.ndarray:
    z = np.asarray(rows, dtype=np.float64) @ W
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _drive(program, scores=_scores):  # type: ignore[no-untyped-def]
    sent = []
    try:
        rows = next(program)
        while True:
            sent.append(np.asarray(rows))
            rows = program.send(scores(rows))
    except StopIteration as stop:
        return sent, stop.value


def test_augment_shifts_by_one_pixel_or_adds_noise_within_the_range() -> None:
    img = np.zeros((4, 4))
    img[1, 1] = 10.0
    seen = set()
    for seed in range(30):
        out = augment(img.ravel(), (4, 4), (0.0, 10.0), 0.03, np.random.default_rng(seed))
        assert out.shape == (16,) and out.min() >= 0.0 and out.max() <= 10.0
        moved = out.reshape(4, 4).argmax()
        seen.add("shift" if moved != 5 else "noise")
    assert seen == {"shift", "noise"}


def test_benign_clients_retry_exactly_and_send_variants_of_recent_rows() -> None:
    pool = np.random.default_rng(1).uniform(size=(50, 16))
    settings = BenignSettings(queries=300, retry_share=0.1, augment_share=0.1, max_variants=3)
    sent, notes = _drive(benign_program(pool, (4, 4), (0.0, 1.0), settings, seed=3))
    assert sum(len(r) for r in sent) == notes["queries"] >= 300
    retries = sum(len(b) for a, b in zip(sent, sent[1:], strict=False) if np.array_equal(a, b))
    assert retries == notes["retries"] > 0
    assert notes["variants"] > 0
    assert all(len(r) <= 3 for r in sent)
    again, _ = _drive(benign_program(pool, (4, 4), (0.0, 1.0), settings, seed=3))
    assert all(np.array_equal(a, b) for a, b in zip(sent, again, strict=True))


def test_record_trace_interleaves_clients_and_keeps_their_notes() -> None:
    clients = [
        ClientSpec(
            f"u{i}",
            "extraction",
            "extraction_uniform",
            lambda i=i: uniform_extraction_program(16, (0.0, 1.0), 30, 10, i),
        )
        for i in range(3)
    ]
    trace = record_trace(clients, _scores, seed=0)
    order = [r.client for r in trace.requests]
    assert sorted(order) == ["u0"] * 3 + ["u1"] * 3 + ["u2"] * 3
    assert order != sorted(order)
    assert trace.notes == {f"u{i}": {"queries": 30} for i in range(3)}
    assert all(r.rows.dtype == np.float32 for r in trace.requests)
    assert [r.client for r in record_trace(clients, _scores, seed=0).requests] == order


def test_nes_attack_queries_in_rounds_and_stays_in_its_ball() -> None:
    rng = np.random.default_rng(2)
    x = rng.uniform(0.3, 0.7, size=(1, 16))
    y = np.argmax(_scores(x), axis=1)
    attack = NesAttack(eps=0.3, max_queries=600, samples=10, sigma=0.01, step=0.05, seed=0)
    sent, result = _drive(attack.plan(x, y))
    # one check of the current point, then 10 antithetic probes, per iteration
    assert [len(r) for r in sent[:4]] == [1, 10, 1, 10]
    assert int(result.queries[0]) == sum(len(r) for r in sent)
    assert bool(result.success[0]) and np.argmax(_scores(result.adversarial), axis=1)[0] != y[0]
    assert float(np.abs(result.adversarial - x).max()) <= 0.3 + 1e-6


def test_attack_program_notes_where_each_image_started_and_ended() -> None:
    rng = np.random.default_rng(4)
    x = rng.uniform(0.3, 0.7, size=(2, 16))
    y = np.argmax(_scores(x), axis=1)

    def plan(xi, yi, seed):  # type: ignore[no-untyped-def]
        return NesAttack(
            eps=0.3, max_queries=100, samples=10, sigma=0.01, step=0.05, seed=seed
        ).plan(xi, yi)

    sent, notes = _drive(attack_program(plan, x, y, seed=1))
    images = notes["images"]
    assert images[0]["start"] == 0
    assert images[1]["start"] == images[0]["queries"]
    assert notes["queries"] == sum(len(r) for r in sent) == sum(i["queries"] for i in images)


def test_synthetic_extraction_doubles_its_set_around_the_seeds() -> None:
    seeds = np.random.default_rng(5).uniform(size=(4, 16))
    sent, notes = _drive(synthetic_extraction_program(seeds, (0.0, 1.0), 28, 4, 0.1, seed=0))
    rows = np.concatenate(sent)
    assert notes["queries"] == len(rows) == 28  # 4 seeds, 4 children, 8, then 12 of 16
    assert np.array_equal(rows[:4], seeds)
    # each child is its parent moved by 0.1 on every value not clipped at the range
    step = np.abs(rows[4:8] - seeds)
    assert np.all(np.isclose(step, 0.1) | (rows[4:8] == 0.0) | (rows[4:8] == 1.0))


@pytest.mark.slow
def test_attack_detection_quick(tmp_path: Path) -> None:
    from benchmarks import attack_detection

    out = tmp_path / "attack_detection.json"
    assert attack_detection.main(["--quick", "--json", str(out), "--rounds", "1"]) == 0
    payload = json.loads(out.read_text())
    assert payload["benchmark"] == "attack_detection" and payload["quick"] is True
    models = payload["results"]["models"]
    assert set(models) == {"digits", "mnist"}
    for result in models.values():
        assert set(result["test"]["families"]) == {
            "square_linf",
            "square_l2",
            "hopskipjump",
            "nes",
            "extraction_uniform",
            "extraction_synthetic",
        }
    names = [t["name"] for t in payload["targets"]]
    assert sum("median queries to detection" in n for n in names) == 8
    assert payload["results"]["memory"]["flood_clients_remembered"] <= 10_000
