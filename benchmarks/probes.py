"""Robustness probes: our Square Attack next to ART's, probe replay speed, and p99 impact.

Run `python -m benchmarks.probes [--quick] [--json PATH]`.

1. Square Attack (L-inf and L2), ours vs ART's `SquareAttack` on a
   `BlackBoxClassifierNeuralNetwork` wrapping the same onnxruntime session on the digits demo
   model: same samples, eps, query budget (ART's max_iter = budget - 2: its clean check and
   initialisation come on top of the iterations, as ours do) and p_init. Success rate
   (share of clean-correct samples turned, checked by re-scoring the returned examples and
   the norm bound), model rows evaluated per sample and wall time, in alternating rounds.
2. Replay of 1000 probes end to end through gRPC (ProbeReplayer: paced client with the probe
   header -> bundled model server in its own process), at the default pacing and unpaced.
3. Production p99: a separate process sends a steady single-row load to the model server;
   2-second phases without and with a concurrent probe run (default ProbeSettings)
   alternate for many rounds; the load's p99 is compared pooled per condition (the target)
   and as the median of per-round ratios.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (
    Target,
    alternating_rounds,
    describe_error,
    median,
    not_measured,
    parse_args,
    percentile,
    report,
)

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- attack duel
def _success(
    model: Any, x: np.ndarray, y: np.ndarray, adv: np.ndarray, norm: str, eps: float
) -> float:
    clean_ok = model.predict(x) == y
    diff = adv.astype(np.float64) - x
    size = np.abs(diff).max(axis=1) if norm == "linf" else np.linalg.norm(diff, axis=1)
    within = size <= eps * (1 + 1e-5) + 1e-6
    fooled = (model.predict(adv) != y) & within & clean_ok
    return float(fooled.sum() / max(clean_ok.sum(), 1))


def attack_duel(
    model_path: Path, x: np.ndarray, y: np.ndarray, rounds: int, budget: int
) -> dict[str, Any]:
    import warnings

    warnings.filterwarnings("ignore")
    from art.attacks.evasion import SquareAttack as ArtSquareAttack
    from art.estimators.classification import BlackBoxClassifierNeuralNetwork

    from service.probes.onnx_model import OnnxClassifier
    from service.probes.square_attack import SquareAttack

    model = OnnxClassifier(model_path)
    rows = {"n": 0}

    def predict(batch: np.ndarray) -> np.ndarray:
        flat = batch.reshape(len(batch), -1)
        rows["n"] += len(flat)
        return model.scores(flat)

    art_model = BlackBoxClassifierNeuralNetwork(
        predict, input_shape=(1, 8, 8), nb_classes=10, channels_first=True, clip_values=(0.0, 16.0)
    )
    settings = {"linf": 2.0, "l2": 8.0}
    out: dict[str, Any] = {}
    for norm, eps in settings.items():
        # Each contender counts its own rounds, so round r uses seed r on both sides.
        seeds = {"ours": itertools.count(), "art": itertools.count()}

        def ours(
            norm: str = norm, eps: float = eps, seeds: dict[str, Any] = seeds
        ) -> dict[str, float]:
            rows["n"] = 0
            attack = SquareAttack(
                eps=eps,
                max_queries=budget,
                norm=norm,  # type: ignore[arg-type]
                p_init=0.1,
                image_shape=(8, 8),
                value_range=(0.0, 16.0),
                seed=next(seeds["ours"]),
            )
            t0 = time.perf_counter()
            result = attack.generate(x, y, predict)
            wall = time.perf_counter() - t0
            return {
                "success": _success(model, x, y, result.adversarial, norm, eps),
                "rows_per_sample": rows["n"] / len(x),
                "wall_s": wall,
            }

        def art(
            norm: str = norm, eps: float = eps, seeds: dict[str, Any] = seeds
        ) -> dict[str, float]:
            rows["n"] = 0
            np.random.seed(next(seeds["art"]))  # ART draws from numpy's global generator
            attack = ArtSquareAttack(
                art_model,
                norm=np.inf if norm == "linf" else 2,
                eps=eps,
                max_iter=budget - 2,
                p_init=0.1,
                nb_restarts=1,
                batch_size=len(x),
                verbose=False,
            )
            t0 = time.perf_counter()
            adv = attack.generate(x.reshape(-1, 1, 8, 8).astype(np.float32), y=y)
            wall = time.perf_counter() - t0
            return {
                "success": _success(model, x, y, adv.reshape(len(x), -1), norm, eps),
                "rows_per_sample": rows["n"] / len(x),
                "wall_s": wall,
            }

        runs = alternating_rounds({"ours": ours, "art": art}, rounds)
        summary: dict[str, Any] = {"eps": eps, "budget": budget, "samples": len(x)}
        for name, values in runs.items():
            summary[name] = {k: median([v[k] for v in values]) for k in values[0]}
        summary["wall_ratio_ours_over_art"] = median(
            [o["wall_s"] / a["wall_s"] for o, a in zip(runs["ours"], runs["art"], strict=True)]
        )
        out[norm] = summary
        print(
            f"square {norm} eps={eps} budget={budget} n={len(x)}: "
            f"ours success {summary['ours']['success']:.3f} rows/sample "
            f"{summary['ours']['rows_per_sample']:.1f} wall {summary['ours']['wall_s']:.3f}s | "
            f"ART success {summary['art']['success']:.3f} rows/sample "
            f"{summary['art']['rows_per_sample']:.1f} wall {summary['art']['wall_s']:.3f}s | "
            f"wall ratio {summary['wall_ratio_ours_over_art']:.3f}"
        )
    return out


# --------------------------------------------------------------------------- processes
def _serve(port_file: Path, model_path: Path) -> None:
    from service.modelserver.server import start_model_server

    async def main() -> None:
        server = await start_model_server(model_path, name="demo", version="1", port=0)
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(server.port))
        tmp.replace(port_file)
        await server.wait()

    asyncio.run(main())


def _load(target: str, rate: float, duration: float, out: Path) -> None:
    """A steady production-like client: one-row requests at `rate`/s, latencies to `out`."""
    from service.oip.client import InferenceClient

    async def main() -> None:
        x = np.random.default_rng(0).uniform(0, 16, size=(1, 64)).astype(np.float32)
        samples: list[tuple[float, float]] = []
        async with InferenceClient(target) as client:
            end = time.time() + duration
            next_at = time.perf_counter()
            while time.time() < end:
                next_at += 1.0 / rate
                t_wall = time.time()
                t0 = time.perf_counter()
                await client.infer("demo", {"pixels": x}, outputs=("probabilities",))
                samples.append((t_wall, time.perf_counter() - t0))
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
        out.write_text(json.dumps(samples))

    asyncio.run(main())


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.probes", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _start_server(workdir: Path, model_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port_file = workdir / "server.port"
    proc = _spawn("_serve", str(port_file), str(model_path))
    deadline = time.time() + 60
    while not port_file.exists():
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError("model server did not start")
        time.sleep(0.1)
    return proc, f"127.0.0.1:{int(port_file.read_text())}"


# --------------------------------------------------------------------------- replay + p99
async def _replay(target: str, rows: np.ndarray, rate: float, concurrency: int) -> float:
    from service.oip.client import InferenceClient
    from service.probes.rate_limit import ProbeRateLimiter
    from service.probes.replay import PROBE_METADATA, ProbeReplayer

    async with InferenceClient(target, metadata=PROBE_METADATA) as client:
        replayer = ProbeReplayer(client, ProbeRateLimiter(rate, concurrency))
        t0 = time.perf_counter()
        answers = await replayer.replay("demo", "pixels", "probabilities", rows, batch_size=32)
        elapsed = time.perf_counter() - t0
    assert len(answers.scores) == len(rows)
    return elapsed


async def _probe_for(
    target: str, rows: np.ndarray, seconds: float, rate: float, conc: int, sent: dict[str, int]
) -> None:
    """Replays probes until cancelled or `seconds` pass; counts answered rows in `sent`."""
    from service.oip.client import InferenceClient
    from service.probes.rate_limit import ProbeRateLimiter
    from service.probes.replay import PROBE_METADATA, ProbeReplayer

    async with InferenceClient(target, metadata=PROBE_METADATA) as client:
        replayer = ProbeReplayer(client, ProbeRateLimiter(rate, conc))
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            chunk = rows[:32]
            await replayer.replay("demo", "pixels", "probabilities", chunk, batch_size=32)
            sent["rows"] += len(chunk)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_serve":
        _serve(Path(argv[1]), Path(argv[2]))
        return 0
    if argv and argv[0] == "_load":
        _load(argv[1], float(argv[2]), float(argv[3]), Path(argv[4]))
        return 0
    args = parse_args(__doc__.splitlines()[0], argv)
    from service.modelserver.demo_model import build_demo_model, load_demo_data
    from service.probes.builder import BuildOptions, build_suite
    from service.probes.settings import ProbeSettings

    quick = bool(args.quick)
    rounds = args.rounds or (3 if quick else 5)
    workdir = Path(tempfile.mkdtemp(prefix="outrider-bench-probes-"))
    model_path = build_demo_model(
        Path(
            os.environ.get(
                "OUTRIDER_BENCH_MODELS", Path(tempfile.gettempdir()) / "outrider-bench-models"
            )
        )
    )
    data = load_demo_data("digits", seed=0)
    n_attack = 100 if quick else 300
    x, y = data.x_test[:n_attack], data.y_test[:n_attack]
    budget = 200 if quick else 500

    try:
        attack_results = attack_duel(model_path, x, y, rounds, budget)
    except (ImportError, AttributeError, TypeError) as exc:  # ART missing or changed: a miss
        attack_results = {"error": describe_error(exc)}
        print(f"Square Attack duel failed: {attack_results['error']}")
    results: dict[str, Any] = {"attack": attack_results}

    # Probe rows: a corruptions suite of the test split (46 variants per sample).
    suite = build_suite(
        model_path,
        data.x_test,
        data.y_test,
        name="bench",
        kind="corruptions",
        options=BuildOptions(seed=0, max_samples=50),
    )
    rows = suite.inputs[:1000]
    defaults = ProbeSettings()
    proc, target = _start_server(workdir, model_path)
    loop = asyncio.new_event_loop()
    try:
        replay = alternating_rounds(
            {
                "default_pacing": lambda: loop.run_until_complete(
                    _replay(target, rows, defaults.max_probes_per_second, defaults.max_concurrency)
                ),
                "unpaced": lambda: loop.run_until_complete(
                    _replay(target, rows, 1e9, defaults.max_concurrency)
                ),
            },
            rounds,
        )
        results["replay_1000"] = {
            "default_rate_per_s": defaults.max_probes_per_second,
            "default_pacing_s": median(replay["default_pacing"]),
            "unpaced_s": median(replay["unpaced"]),
            "rounds": replay,
        }
        print(
            f"replay 1000 probes via gRPC: {results['replay_1000']['default_pacing_s']:.2f}s at "
            f"{defaults.max_probes_per_second:g}/s pacing, "
            f"{results['replay_1000']['unpaced_s']:.3f}s unpaced"
        )

        # p99 of a steady production load, with and without a concurrent probe run.
        # Short phases, many rounds: other users' bursts on this shared machine last seconds,
        # and alternating quickly spreads them over both conditions.
        phase = 2.0
        p99_rounds = args.rounds or (10 if quick else 20)
        load_rate = 200.0
        warmup = 2.0
        lat_file = workdir / "latencies.json"
        load = _spawn(
            "_load",
            target,
            str(load_rate),
            str(warmup + p99_rounds * 2 * (phase + 0.5) + 2),
            str(lat_file),
        )
        time.sleep(warmup)
        windows: list[tuple[str, float, float]] = []
        probes_sent = {"rows": 0}
        for r in range(p99_rounds):
            order = ["without", "with"] if r % 2 == 0 else ["with", "without"]
            for cond in order:
                start = time.time()
                if cond == "with":
                    # The probe run is cut at the phase's end, so both phases last as long.
                    probing = _probe_for(
                        target,
                        suite.inputs,
                        phase + 60,
                        defaults.max_probes_per_second,
                        defaults.max_concurrency,
                        probes_sent,
                    )
                    with contextlib.suppress(asyncio.TimeoutError):
                        loop.run_until_complete(asyncio.wait_for(probing, phase))
                else:
                    time.sleep(phase)
                windows.append((cond, start, time.time()))
        load.wait(timeout=120)
        samples = json.loads(lat_file.read_text())
    finally:
        loop.close()
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)

    per_round: dict[str, list[float]] = {"without": [], "with": []}
    pooled: dict[str, list[float]] = {"without": [], "with": []}
    for cond, start, end in windows:
        # Skip the first 0.25 s of each phase so one phase's tail does not leak into the next.
        lat = [s[1] for s in samples if start + 0.25 <= s[0] < end]
        if lat:
            per_round[cond].append(percentile(lat, 99))
            pooled[cond].extend(lat)
    p99_without = percentile(pooled["without"], 99)
    p99_with = percentile(pooled["with"], 99)
    ratios = [w / wo for w, wo in zip(per_round["with"], per_round["without"], strict=False)]
    results["p99"] = {
        "load_rate_per_s": load_rate,
        "probe_rate_per_s": defaults.max_probes_per_second,
        "phase_s": phase,
        "p99_without_ms": p99_without * 1e3,
        "p99_with_ms": p99_with * 1e3,
        "p50_without_ms": percentile(pooled["without"], 50) * 1e3,
        "p50_with_ms": percentile(pooled["with"], 50) * 1e3,
        "pooled_ratio": p99_with / p99_without,
        "median_round_ratio": median(ratios) if ratios else float("nan"),
        "requests": {k: len(v) for k, v in pooled.items()},
        "probe_rows_answered": probes_sent["rows"],
    }
    print(
        f"production p99 {p99_without * 1e3:.2f} ms without probes, {p99_with * 1e3:.2f} ms with "
        f"(pooled ratio {results['p99']['pooled_ratio']:.3f}, median per-round ratio "
        f"{results['p99']['median_round_ratio']:.3f}; {probes_sent['rows']} probe rows answered "
        f"during the probing phases)"
    )

    attack = results["attack"]
    targets = []
    for norm in ("linf", "l2"):
        if "error" in attack:
            targets += [
                not_measured(f"square {norm}: success ours - ART (>= 0)", 0.0, ">=",
                             attack["error"]),
                not_measured(f"square {norm}: wall time ours / ART", 0.5, "<=", attack["error"]),
            ]
            continue
        targets.append(
            Target(
                f"square {norm}: success ours - ART (>= 0)",
                attack[norm]["ours"]["success"] - attack[norm]["art"]["success"],
                0.0,
                ">=",
            )
        )
        targets.append(
            Target(
                f"square {norm}: wall time ours / ART",
                attack[norm]["wall_ratio_ours_over_art"],
                0.5,
                "<=",
            )
        )
    targets.append(
        Target(
            "1000 probes via gRPC, default pacing (s)",
            results["replay_1000"]["default_pacing_s"],
            10.0,
            "<=",
        )
    )
    targets.append(
        Target(
            "production p99 with / without a probe run (pooled over rounds)",
            results["p99"]["pooled_ratio"],
            1.10,
            "<=",
        )
    )
    return report("probes", results, targets, args.json, quick=quick)


if __name__ == "__main__":
    sys.exit(main())
