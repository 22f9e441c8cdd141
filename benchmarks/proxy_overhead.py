"""What the real `outrider serve` costs per request, beside a direct call and a bare passthrough.

Run `python -m benchmarks.proxy_overhead [--quick] [--json PATH] [--rounds N]`.

Every server runs in its own process (`sidecar_processes.py`): the upstream (the bundled
model server, `outrider modelserver`, on the demo digits model; or an echo server), a bare
grpc.aio terminating passthrough (~30 lines, the cost of a Python gRPC hop), and the real
`outrider serve` (relay, tap, monitor worker with its detectors, alert engine, admin HTTP)
at three monitoring settings:

- `serve_off`: sampling 0; the tap still parses every frame and header block for metrics;
- `serve_default`: the dataplane's default budget (10 % of inference RPCs, <= 50 samples/s);
- `serve_full`: 100 % sampling, budget raised to 1e6 samples/s: every RPC is kept, decoded
  and offered to the monitor, whose per-signal row limit sheds the excess (counted).

serve monitors what examples/demo.yaml monitors (MMD and kNN on the embedding, BBSD on the
probabilities, its two alert rules), with references built beforehand from the demo's
held-out reference split; traffic is held-out digits, so nothing drifts. Against the echo
server (no model outputs) the one signal reads the request's pixels with the same detectors.

An extra row, `standin_decodingsink`, is what this benchmark used to call "monitoring on":
the relay in a bare process with a sink that protobuf-decodes every message on the relay's
loop and runs no detectors. It is kept for comparison; it is not what `outrider serve` runs.

The client uses tritonclient's generated stubs (`GRPCInferenceServiceStub`) on a grpc.aio
channel: latency at concurrency 1 and throughput at concurrency 8, with 4 KB and 256 KB
requests, contenders in alternating rounds; medians over rounds and ratios within a round.
Sidecar CPU per request is the CPU time of all the sidecar's threads (/proc/PID/task/*/
schedstat) over a measured window divided by the requests in it, compared with Envoy's
published figure. After the rounds a soak sends 100k requests through `serve_full` in
front of the model server and reads its RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks.harness import Target, alternating_rounds, median, parse_args, percentile, report
from benchmarks.sidecar_processes import (
    GRPC_OPTIONS,
    ROOT,
    SERVE_SETTINGS,
    ServerProcess,
    demo_monitoring,
    serve_config,
    start_model_server,
    start_role,
    start_serve,
    stop_all,
)

PAYLOADS = {"4KB": 16, "256KB": 1024}  # rows of 64 float32 pixels
UPSTREAMS = ("model", "echo")
SERVE = tuple(SERVE_SETTINGS)  # serve_off, serve_default, serve_full
STANDIN = "standin_decodingsink"

#: Envoy's published sidecar CPU, Istio 1.12-1.16 "Performance and Scalability" pages
#: (https://istio.io/v1.16/docs/ops/deployment/performance-and-scalability/, the same
#: sentence on v1.12-v1.15): "The Envoy proxy uses 0.35 vCPU and 40 MB memory per 1000
#: requests per second going through the proxy" = 350 us of CPU per request. (Istio's own
#: load test: Fortio, HTTP/1.1, 1 KB payloads, mutual TLS; the v1.24 page gives 0.20 vCPU
#: for a 2-worker sidecar at 1000 requests/s of 1 KB.)
ENVOY_CPU_US_PER_REQUEST = 350.0
ENVOY_SOURCE = (
    "Istio 1.12-1.16 Performance and Scalability "
    "(https://istio.io/v1.16/docs/ops/deployment/performance-and-scalability/): "
    "0.35 vCPU per 1000 requests/s through the Envoy proxy"
)
#: Issue #18's independent measurement of today's serve (added p50, 4 KB, c=1): +0.12-0.21 ms.
TODAY_ADDED_P50_MS = 0.21
#: Issue #18's targets for the real serve.
THROUGHPUT_VS_DIRECT = 0.75
CPU_US_DEFAULT = 100.0
CPU_US_FULL = 150.0


# --------------------------------------------------------------------------- client side
def _request(rows: int) -> Any:
    """A ModelInferRequest (tritonclient's message class) of held-out digits."""
    from tritonclient.grpc import service_pb2

    from service.modelserver.demo_model import load_demo_data

    pixels = np.resize(load_demo_data("digits", seed=0).x_test, (rows, 64)).astype(np.float32)
    request = service_pb2.ModelInferRequest(model_name="demo")
    tensor = request.inputs.add(name="pixels", datatype="FP32")
    tensor.shape.extend(pixels.shape)
    request.raw_input_contents.append(pixels.tobytes())
    return request


class Client:
    """tritonclient's GRPCInferenceServiceStub on one grpc.aio channel, measured."""

    def __init__(self, loop: asyncio.AbstractEventLoop, port: int) -> None:
        from tritonclient.grpc import service_pb2_grpc

        self.loop = loop

        async def connect() -> grpc.aio.Channel:  # grpc.aio binds a channel to the running loop
            return grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS)

        self.channel = loop.run_until_complete(connect())
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)

    def latency(self, request: Any, n: int) -> list[float]:
        async def run() -> list[float]:
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                await self.stub.ModelInfer(request, timeout=30)
                out.append(time.perf_counter() - t0)
            return out

        return self.loop.run_until_complete(run())

    def throughput(self, request: Any, concurrency: int, per_worker: int) -> float:
        async def worker() -> None:
            for _ in range(per_worker):
                await self.stub.ModelInfer(request, timeout=30)

        async def run() -> float:
            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return concurrency * per_worker / (time.perf_counter() - t0)

        return self.loop.run_until_complete(run())

    def close(self) -> None:
        self.loop.run_until_complete(self.channel.close())


# --------------------------------------------------------------------------- one upstream
def prepare_state(workdir: Path, upstream: str, model_path: Path) -> tuple[dict[str, Any], Path]:
    """serve's monitoring config for this upstream, and a state dir holding its references."""
    import onnxruntime as ort
    import yaml

    from service.modelserver.demo_model import load_demo_data

    monitoring = demo_monitoring(upstream)
    state = workdir / f"references-{upstream}"
    config = serve_config("serve_default", 1, state, monitoring)
    config_path = workdir / f"references-{upstream}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    data = load_demo_data("digits", seed=0)
    if upstream == "echo":
        rows = {"pixels": data.x_reference}
    else:
        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        rows = dict(zip(names, session.run(None, {"pixels": data.x_reference}), strict=True))
    for model, settings in monitoring["models"].items():
        for sig in settings["signals"]:
            tensor = sig["source"].get("output") or sig["source"]["input"]
            source = workdir / f"{upstream}-{sig['name']}.npy"
            np.save(source, np.asarray(rows[tensor], dtype=np.float32))
            subprocess.run(
                [sys.executable, "-m", "service.cli", "reference", "build", "--config",
                 str(config_path), "--signal", f"{model}/{sig['name']}", "--from", str(source),
                 "--version", "1", "--no-progress"],
                check=True, capture_output=True, cwd=ROOT,
            )
    return monitoring, state / "references"


def start_contenders(
    workdir: Path, upstream: str, model_path: Path, include_standin: bool = True
) -> tuple[ServerProcess, dict[str, ServerProcess]]:
    """The upstream, then every sidecar in front of it: name -> process."""
    if upstream == "model":
        up = start_model_server(workdir, f"{upstream}-upstream", model_path)
    else:
        up = start_role(workdir, f"{upstream}-upstream", "echo")
    monitoring, references = prepare_state(workdir, upstream, model_path)
    sidecars: dict[str, ServerProcess] = {
        "passthrough": start_role(
            workdir, f"{upstream}-passthrough", "passthrough", "--upstream", f"127.0.0.1:{up.port}"
        )
    }
    for setting in SERVE:
        state = workdir / f"{upstream}-{setting}-state"
        shutil.copytree(references, state / "references")
        config = serve_config(setting, up.port, state, monitoring)
        sidecars[setting] = start_serve(workdir, f"{upstream}-{setting}", config)
    if include_standin:
        sidecars[STANDIN] = start_role(
            workdir, f"{upstream}-standin", "standin", "--upstream", str(up.port)
        )
    return up, sidecars


def measure_upstream(
    upstream: str, workdir: Path, quick: bool, rounds: int, model_path: Path
) -> dict[str, Any]:
    up, sidecars = start_contenders(workdir, upstream, model_path)
    loop = asyncio.new_event_loop()
    clients = {"direct": Client(loop, up.port)}
    clients.update({name: Client(loop, proc.port) for name, proc in sidecars.items()})
    requests = {label: _request(rows) for label, rows in PAYLOADS.items()}
    n_c1 = {"4KB": 100, "256KB": 20} if quick else {"4KB": 500, "256KB": 100}
    per_worker = {"4KB": 40, "256KB": 6} if quick else {"4KB": 250, "256KB": 30}

    def contender(name: str) -> Callable[[], dict[str, float]]:
        client = clients[name]
        proc = sidecars.get(name)

        def cpu() -> float:
            # the sidecar's CPU; for "direct", the upstream's own (context, not a sidecar cost)
            return (proc or up).cpu_seconds()

        def measure() -> dict[str, float]:
            out: dict[str, float] = {}
            for label, request in requests.items():
                client.latency(request, 10)  # warm the path
                cpu0 = cpu()
                lat = client.latency(request, n_c1[label])
                out[f"{label}_c1_cpu_us_per_req"] = (cpu() - cpu0) / n_c1[label] * 1e6
                out[f"{label}_c1_p50_ms"] = percentile(lat, 50) * 1e3
                out[f"{label}_c1_p99_ms"] = percentile(lat, 99) * 1e3
                cpu0 = cpu()
                out[f"{label}_c8_rps"] = client.throughput(request, 8, per_worker[label])
                out[f"{label}_c8_cpu_us_per_req"] = (
                    (cpu() - cpu0) / (8 * per_worker[label]) * 1e6
                )
            out["rss_mb"] = (proc or up).rss_mb()
            return out

        return measure

    raw = alternating_rounds({name: contender(name) for name in clients}, rounds)
    for client in clients.values():
        client.close()
    loop.close()
    counters = {}
    for name in SERVE:
        with contextlib.suppress(OSError):
            counters[name] = sidecars[name].metrics()
    for proc in [*sidecars.values(), up]:
        proc.stop()
    return {"raw": raw, "serve_counters": counters, **summarise(raw)}


def summarise(raw: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Medians per contender, and per-round ratios (median over rounds) against direct/off."""
    medians = {name: {k: median([r[k] for r in rows]) for k in rows[0]}
               for name, rows in raw.items()}
    n = len(raw["direct"])

    def per_round(name: str, key: str, other: str, op: Callable[[float, float], float]) -> float:
        return median([op(raw[name][i][key], raw[other][i][key]) for i in range(n)])

    def diff(a: float, b: float) -> float:
        return a - b

    def ratio(a: float, b: float) -> float:
        return a / b

    ratios: dict[str, dict[str, float]] = {}
    for name in raw:
        if name == "direct":
            continue
        entry: dict[str, float] = {}
        for label in PAYLOADS:
            entry[f"{label}_c1_added_p50_ms"] = per_round(name, f"{label}_c1_p50_ms", "direct",
                                                          diff)
            entry[f"{label}_c8_throughput_vs_direct"] = per_round(name, f"{label}_c8_rps",
                                                                  "direct", ratio)
        entry["4KB_c8_cpu_vs_envoy"] = (
            medians[name]["4KB_c8_cpu_us_per_req"] / ENVOY_CPU_US_PER_REQUEST
        )
        if name != "passthrough":
            entry["4KB_c1_added_p50_vs_passthrough"] = median([
                (raw[name][i]["4KB_c1_p50_ms"] - raw["direct"][i]["4KB_c1_p50_ms"])
                / (raw["passthrough"][i]["4KB_c1_p50_ms"] - raw["direct"][i]["4KB_c1_p50_ms"])
                for i in range(n)
            ])
        if name in ("serve_default", "serve_full", STANDIN):
            entry["4KB_c1_p50_vs_serve_off"] = per_round(name, "4KB_c1_p50_ms", "serve_off",
                                                         ratio)
            entry["4KB_c8_rps_vs_serve_off"] = per_round(name, "4KB_c8_rps", "serve_off", ratio)
        ratios[name] = entry
    return {"medians": medians, "ratios": ratios}


def upstream_targets(upstream: str, result: dict[str, Any]) -> list[Target]:
    """Issue #18's targets for the real serve, and the README's standing data-plane targets."""
    med, r = result["medians"], result["ratios"]
    return [
        Target(f"{upstream}: throughput serve_default / direct (4KB, c=8)",
               r["serve_default"]["4KB_c8_throughput_vs_direct"], THROUGHPUT_VS_DIRECT, ">="),
        Target(f"{upstream}: sidecar CPU per request, serve_default (4KB, c=8, us)",
               med["serve_default"]["4KB_c8_cpu_us_per_req"], CPU_US_DEFAULT, "<="),
        Target(f"{upstream}: sidecar CPU per request, serve_full (4KB, c=8, us)",
               med["serve_full"]["4KB_c8_cpu_us_per_req"], CPU_US_FULL, "<="),
        Target(f"{upstream}: added p50 serve_default (4KB, c=1, ms) vs issue #18's "
               f"{TODAY_ADDED_P50_MS} ms", r["serve_default"]["4KB_c1_added_p50_ms"],
               TODAY_ADDED_P50_MS, "<="),
        Target(f"{upstream}: added p50 serve_full / passthrough's (4KB, c=1)",
               r["serve_full"]["4KB_c1_added_p50_vs_passthrough"], 0.35, "<="),
        Target(f"{upstream}: p50 serve_full / serve_off (4KB, c=1)",
               r["serve_full"]["4KB_c1_p50_vs_serve_off"], 1.15, "<="),
        Target(f"{upstream}: throughput serve_full / serve_off (4KB, c=8)",
               r["serve_full"]["4KB_c8_rps_vs_serve_off"], 0.90, ">="),
    ]


def rss_soak(workdir: Path, model_path: Path, total: int) -> dict[str, Any]:
    """serve_full's RSS in front of the model server after total/2 and total requests."""
    up = start_model_server(workdir, "soak-upstream", model_path)
    monitoring, references = prepare_state(workdir, "model", model_path)
    state = workdir / "soak-state"
    shutil.copytree(references, state / "references")
    serve = start_serve(workdir, "soak-serve_full", serve_config("serve_full", up.port, state,
                                                                 monitoring))
    loop = asyncio.new_event_loop()
    client = Client(loop, serve.port)
    request = _request(PAYLOADS["4KB"])
    half = total // 2
    out: dict[str, Any] = {"upstream": "model", "contender": "serve_full",
                           "rss_start_mb": serve.rss_mb()}
    client.throughput(request, 8, half // 8)
    out["rss_half_mb"] = serve.rss_mb()
    client.throughput(request, 8, half // 8)
    out["rss_end_mb"] = serve.rss_mb()
    out["requests"] = 8 * (half // 8) * 2
    out["rss_growth_mb"] = out["rss_end_mb"] - out["rss_half_mb"]
    out["serve_counters"] = serve.metrics()
    client.close()
    loop.close()
    serve.stop()
    up.stop()
    return out


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0] if __doc__ else "", argv)
    # SIGTERM -> SystemExit, so the server processes are stopped on the way out
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    rounds = args.rounds or (3 if args.quick else 7)
    try:
        with tempfile.TemporaryDirectory(prefix="outrider-bench-") as tmp:
            return run(Path(tmp), args, rounds)
    finally:
        stop_all()


def demo_model_path() -> Path:
    """The demo model, cached across runs (training it takes seconds)."""
    from service.modelserver.demo_model import build_demo_model

    cache = Path(os.environ.get("OUTRIDER_BENCH_MODEL_DIR", ROOT / ".bench-models"))
    return build_demo_model(cache, "digits")


def run(workdir: Path, args: argparse.Namespace, rounds: int) -> int:
    model_path = demo_model_path()
    load_before = os.getloadavg()
    results: dict[str, Any] = {
        "rounds": rounds,
        "payloads": {"4KB": 4096, "256KB": 262144},
        "envoy_cpu_us_per_request": ENVOY_CPU_US_PER_REQUEST,
        "envoy_source": ENVOY_SOURCE,
        "serve_settings": SERVE_SETTINGS,
        "cpu_count": os.cpu_count(),
    }
    targets: list[Target] = []
    for upstream in UPSTREAMS:
        result = measure_upstream(upstream, workdir, args.quick, rounds, model_path)
        results[upstream] = result
        print_upstream(upstream, result)
        targets += upstream_targets(upstream, result)
    soak = rss_soak(workdir, model_path, 4_000 if args.quick else 100_000)
    results["rss_soak"] = soak
    print(
        f"\nRSS soak ({soak['requests']} requests through serve_full in front of the model "
        f"server): start {soak['rss_start_mb']:.1f} MB, half {soak['rss_half_mb']:.1f} MB, "
        f"end {soak['rss_end_mb']:.1f} MB"
    )
    targets += [
        Target("model: serve_full RSS after the soak (MB)", soak["rss_end_mb"], 250.0, "<="),
        Target("model: serve_full RSS growth over the soak's second half (MB)",
               soak["rss_growth_mb"], 5.0, "<="),
    ]
    results["load_average"] = {"before": load_before, "after": os.getloadavg()}
    print(f"load average (1, 5, 15 min) before {load_before}, after {os.getloadavg()}")
    return report("proxy_overhead", results, targets, args.json, quick=args.quick)


def print_upstream(upstream: str, result: dict[str, Any]) -> None:
    print(f"\n== upstream: {upstream} (medians over rounds) ==")
    cols = ["4KB_c1_p50_ms", "4KB_c1_p99_ms", "4KB_c8_rps", "4KB_c8_cpu_us_per_req",
            "4KB_c1_cpu_us_per_req", "256KB_c1_p50_ms", "256KB_c8_rps",
            "256KB_c8_cpu_us_per_req", "rss_mb"]
    print(f"{'contender':<22}" + "".join(f"{c:>24}" for c in cols))
    for name, row in result["medians"].items():
        print(f"{name:<22}" + "".join(f"{row.get(c, float('nan')):>24.3f}" for c in cols))
    print("(direct's CPU columns are the upstream's own)")
    print("ratios (per round, median):")
    for name, row in result["ratios"].items():
        print(f"  {name}: " + ", ".join(f"{k}={v:.3f}" for k, v in row.items()))
    for name, counters in result["serve_counters"].items():
        tap = {k: v for k, v in counters.items() if "tap_samples" in k or "monitor" in k}
        print(f"  {name} counters: {tap}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
