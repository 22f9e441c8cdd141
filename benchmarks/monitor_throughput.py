"""Monitor pipeline: metrics latency at 1000 req/s, sustained throughput on one core, RSS.

Traffic is the demo model's real traffic: requests carry `pixels` [1, 64] from the digits
test split, responses carry `probabilities`, `logits` and the 32-dim `embedding` the model
computes; the signal is `embedding` against a reference of the training split. All
observations are built with the OIP codec, so decoding does the same work as live.

Measured (the process is pinned to one core):
- latency: a paced driver offers 1000 sampled requests/s to a running pipeline; for a mark
  every 100 ms, the time from `offer` until a scrape of the registry accounts for that
  request's row (fed to the detectors, or shed by the rate limit and counted); once with
  KS alone, once with KS + MMD where MMD tests every 500 rows (at most 2 tests/s here):
  no rate limit in either run, so KS sees every row in both (the monitor's row limit is
  per signal, so limiting MMD that way would starve KS too);
- throughput: queued observations drained on one thread, in alternating rounds for three
  contenders: decoding alone (every tensor), the pipeline with KS, with KS + MMD;
- flood: offers as fast as possible with default settings; what was accepted, dropped at the
  queue, shed by the rate limit, and how long the queue took to empty afterwards;
- RSS of the process after the runs.
"""

from __future__ import annotations

import os
import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import scipy.linalg  # noqa: F401  (loads scipy's BLAS so that the limit below covers it)
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from threadpoolctl import threadpool_limits

from benchmarks.harness import Target, alternating_rounds, median, parse_args, percentile, report
from service.dataplane.observation import RpcObservation
from service.modelserver.demo_model import build_demo_model, load_demo_data
from service.monitor.decoding import decode_observation
from service.monitor.model_versions import VersionResolver
from service.monitor.pipeline import MonitorPipeline
from service.monitor.reference import Reference, ReferenceStore
from service.monitor.settings import PipelineSettings
from service.oip import codec

METHOD = "/inference.GRPCInferenceService/ModelInfer"


def _pin_one_core() -> int | None:
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return cpu
    except (AttributeError, OSError):
        return None


def _demo_traffic(work: Path) -> tuple[np.ndarray, list[RpcObservation]]:
    """Reference embeddings (training split) and one observation per test image."""
    model_path = build_demo_model(work, "digits", seed=0)
    data = load_demo_data("digits", seed=0)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    train = dict(zip(names, session.run(None, {"pixels": data.x_train}), strict=True))
    test = dict(zip(names, session.run(None, {"pixels": data.x_test}), strict=True))
    observations = []
    for i in range(data.x_test.shape[0]):
        request = codec.encode_request("demo", {"pixels": data.x_test[i : i + 1]},
                                       request_id=f"req-{i}")
        response = codec.encode_response(
            "demo", {n: test[n][i : i + 1] for n in names}, model_version="1",
            request_id=f"req-{i}",
        )
        req, resp = request.SerializeToString(), response.SerializeToString()
        observations.append(
            RpcObservation(
                connection_id=1, stream_id=2 * i + 1, method=METHOD, authority="127.0.0.1",
                start_time=0.0, end_time=0.0, request_bytes=len(req), response_bytes=len(resp),
                grpc_status=0, grpc_message="", probe=False, sampled=True,
                request_messages=(req,), response_messages=(resp,),
                model_name="demo", model_version="",
            )
        )
    return np.asarray(train["embedding"], dtype=np.float64), observations


def _settings(detectors: list[dict[str, Any]], model: str = "demo", **monitor: Any
              ) -> PipelineSettings:
    return PipelineSettings.model_validate({
        "models": {model: {"signals": [{
            "name": "embedding", "source": {"output": "embedding"}, "detectors": detectors,
        }]}},
        "monitor": monitor,
    })


# Tumbling windows (a test per full window): the demo's monitoring configuration.
KS = {"type": "ks", "window": 500, "params": {"alpha": 0.01}}
# MMD is O((reference + window)^2) per test: fitted on a 500-row subset of the reference.
MMD = {
    "type": "mmd",
    "window": 200,
    "reference_rows": 500,
    "params": {"n_permutations": 100, "alpha": 0.01},
}
# The same MMD testing its last 200 rows every 500 rows: its cost bounded by test spacing,
# not by shedding rows (a row limit is per signal and would starve KS beside it).
MMD_SPACED = {**MMD, "params": {**MMD["params"], "test_every": 500}}


def _throughput(state_dir: Path, obs: list[RpcObservation], detectors: list[dict[str, Any]],
                model: str, n: int) -> float:
    settings = _settings(detectors, model=model, queue_size=n, batch_size=256,
                         max_samples_per_second=None, max_lag_seconds=600)
    pipeline = MonitorPipeline(settings, registry=None, state_dir=state_dir)
    for i in range(n):
        pipeline.offer(obs[i % len(obs)])
    start = time.perf_counter()
    pipeline.drain()
    return n / (time.perf_counter() - start)


def _decode_only(obs: list[RpcObservation], n: int) -> float:
    """The floor: every tensor of request and response decoded, nothing else."""
    resolver = VersionResolver()
    start = time.perf_counter()
    for i in range(n):
        decode_observation(obs[i % len(obs)], resolver)
    return n / (time.perf_counter() - start)


def _rows_on_metrics(registry: CollectorRegistry) -> float:
    """Rows accounted for on a text scrape (fed to detectors, or shed and counted)."""
    text = generate_latest(registry).decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name in ("outrider_monitor_samples", "outrider_monitor_shed_samples"):
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


def _latency(state_dir: Path, obs: list[RpcObservation], seconds: float, rate: float,
             detectors: list[dict[str, Any]], max_samples_per_second: float | None,
             ) -> dict[str, float]:
    """Offer -> visible on a scrape, for a mark every 100 ms of a paced stream.

    A mark made after n offered requests is visible once a scrape accounts for n rows:
    fed to the detectors (their state updated) or shed by the rate limit (counted).
    """
    settings = _settings(detectors, max_samples_per_second=max_samples_per_second)
    registry = CollectorRegistry()
    pipeline = MonitorPipeline(settings, registry=registry, state_dir=state_dir)
    scrapes: list[tuple[float, float]] = []
    done = threading.Event()

    def scrape_loop() -> None:
        while not done.is_set():
            rows = _rows_on_metrics(registry)
            scrapes.append((time.perf_counter(), rows))
            time.sleep(0.01)

    scraper = threading.Thread(target=scrape_loop, daemon=True)
    pipeline.start()
    scraper.start()
    marks: list[tuple[float, int]] = []
    offered = 0
    tick = 0.01
    per_tick = int(rate * tick)
    start = time.perf_counter()
    try:
        while (now := time.perf_counter()) - start < seconds:
            for _ in range(per_tick):
                pipeline.offer(obs[offered % len(obs)])
                offered += 1
            if len(marks) < (now - start) / 0.1:
                marks.append((now, offered))
            # Pace on a 10 ms grid, as a steady client load would arrive.
            next_tick = start + tick * (offered // per_tick)
            time.sleep(max(0.0, next_tick - time.perf_counter()))
        elapsed = time.perf_counter() - start
        time.sleep(2.0)  # let the last marks become visible
    finally:
        done.set()
        scraper.join()
        pipeline.stop()
    latencies = []
    for t0, n in marks:
        seen = next((t for t, rows in scrapes if t >= t0 and rows >= n), None)
        latencies.append(float("inf") if seen is None else seen - t0)
    finite = [x for x in latencies if x != float("inf")]
    shed = registry.get_sample_value("outrider_monitor_shed_samples_total",
                                     {"model": "demo", "signal": "embedding"}) or 0.0
    return {
        "shed_samples": shed,
        "offered_per_s": offered / elapsed,
        "marks": float(len(latencies)),
        "unresolved_marks": float(len(latencies) - len(finite)),
        "p50_s": median(latencies),
        "p99_s": percentile(latencies, 99),
        "max_s": max(latencies),
    }


def _flood(state_dir: Path, obs: list[RpcObservation], seconds: float) -> dict[str, float]:
    settings = _settings([KS, MMD])  # defaults: queue 4096, 5000 rows/s per signal
    registry = CollectorRegistry()
    pipeline = MonitorPipeline(settings, registry=registry, state_dir=state_dir)
    pipeline.start()
    offered = accepted = 0
    max_depth = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            accepted += pipeline.offer(obs[offered % len(obs)])
            offered += 1
        max_depth = max(max_depth, pipeline.queue_depth)
        time.sleep(0)  # let the worker have the GIL, as an asyncio relay would between reads
    stop_offering = time.perf_counter()
    while pipeline.queue_depth and time.perf_counter() - stop_offering < 30:
        time.sleep(0.005)
    drain_s = time.perf_counter() - stop_offering
    elapsed = stop_offering - start
    pipeline.stop()

    def value(name: str, labels: dict[str, str]) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    decoded = value("outrider_monitor_observations_total", {"outcome": "decoded"})
    return {
        "offered_per_s": offered / elapsed,
        "accepted_per_s": accepted / elapsed,
        "dropped_at_queue": float(offered - accepted),
        "processed_per_s": decoded / (elapsed + drain_s),
        "shed_samples": value("outrider_monitor_shed_samples_total",
                              {"model": "demo", "signal": "embedding"}),
        "max_queue_depth": float(max_depth),
        "queue_empty_after_s": drain_s,
    }


def _rss_mb() -> tuple[float, float]:
    current = 0.0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return current, peak


def main() -> int:
    args = parse_args(__doc__ or "")
    rounds = args.rounds or (3 if args.quick else 7)
    n = 3000 if args.quick else 10000
    latency_seconds = 5.0 if args.quick else 20.0
    flood_seconds = 3.0 if args.quick else 10.0
    cpu = _pin_one_core()
    # BLAS at one thread, as `outrider serve` runs it: on one pinned core a second BLAS
    # thread can only spin against the first
    blas = threadpool_limits(limits=1, user_api="blas")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        reference, obs = _demo_traffic(work / "models")
        ReferenceStore(work).save(
            Reference("demo", "1", "embedding", reference, "bench", "0" * 64)
        )
        print(f"pinned to cpu {cpu}; reference {reference.shape}; {len(obs)} observations")
        results = alternating_rounds(
            {
                "decode_only": lambda: _decode_only(obs, n),
                "ks": lambda: _throughput(work, obs, [KS], "demo", n),
                "ks_mmd": lambda: _throughput(work, obs, [KS, MMD], "demo", n),
            },
            rounds,
        )
        throughput = {name: median(values) for name, values in results.items()}
        for name, value in throughput.items():
            print(f"  throughput {name:12s} median {value:8.0f} obs/s  rounds {results[name]}")
        ratios = {
            "ks_vs_decode_only": throughput["ks"] / throughput["decode_only"],
            "ks_mmd_vs_decode_only": throughput["ks_mmd"] / throughput["decode_only"],
        }
        print(f"  ratios {ratios}")
        latency = _latency(work, obs, latency_seconds, 1000.0, [KS], None)
        print(f"  latency at 1000 req/s, ks: {latency}")
        latency_mmd = _latency(work, obs, latency_seconds, 1000.0, [KS, MMD_SPACED], None)
        print(f"  latency at 1000 req/s, ks + mmd testing every 500 rows: {latency_mmd}")
        flood = _flood(work, obs, flood_seconds)
        print(f"  flood: {flood}")
    blas.restore_original_limits()
    rss, peak = _rss_mb()
    print(f"  RSS {rss:.0f} MB (peak {peak:.0f} MB)")
    table = {
        "throughput_obs_per_s": {"median": throughput, "rounds": results, "ratios": ratios},
        "latency_1000_rps_ks": latency,
        "latency_1000_rps_ks_mmd_every_500": latency_mmd,
        "flood": flood,
        "rss_mb": {"current": rss, "peak": peak},
        "pinned_cpu": cpu,
    }
    sheds_without_lag = flood["shed_samples"] > 0 and flood["queue_empty_after_s"] < 5.0
    targets = [
        Target("request -> /metrics latency p99 at 1000 req/s, ks (s)", latency["p99_s"], 1.0,
               "<="),
        Target("same, ks + mmd testing every 500 rows, KS fed every row (s)",
               latency_mmd["p99_s"], 1.0, "<="),
        Target("sustained sampled req/s on one core (ks, d=32)", throughput["ks"], 2000, ">="),
        Target(
            "or: flood shed (counted) and queue drained within 5 s (1 = yes)",
            1.0 if sheds_without_lag else 0.0, 1.0, ">=",
        ),
        Target("steady RSS of the monitor process (MB)", rss, 400, "<="),
    ]
    return report("monitor_throughput", table, targets, args.json, quick=args.quick)


if __name__ == "__main__":
    raise SystemExit(main())
