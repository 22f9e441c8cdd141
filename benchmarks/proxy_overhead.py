"""What outrider's relay costs per request, next to a bare gRPC passthrough and a direct call.

Run `python -m benchmarks.proxy_overhead [--quick] [--json PATH]`.

Every server runs in its own process (so its RSS is its own and the client's work does not
share its GIL): the upstream (the bundled model server on the demo ONNX model, or an echo
server), a bare grpcio terminating passthrough (written below, ~30 lines), and outrider's
relay with monitoring off (tap parses frames and headers for metrics, sampling 0) and on
(100 % sampled, every message handed to a sink that protobuf-parses it and decodes its
tensors like the monitor would, on the relay's own event loop), plus the same "on" relay
under uvloop. The client (grpc.aio, concurrency 1 and 8, ~4 KB and ~256 KB requests) calls
each contender in alternating rounds; the report gives medians over rounds and ratios
measured within a round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks.harness import Target, alternating_rounds, median, parse_args, percentile, report

METHOD = "/inference.GRPCInferenceService/ModelInfer"
MAX_MESSAGE = 64 * 1024 * 1024
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]
PAYLOADS = {"4KB": 16, "256KB": 1024}  # rows of 64 float32 pixels


def _identity(b: bytes) -> bytes:
    return b


# --------------------------------------------------------------------------- server roles
async def _serve_echo(port_file: Path) -> None:
    """An upstream that answers every unary call with the request bytes."""

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {"ModelInfer": grpc.unary_unary_rpc_method_handler(echo, _identity, _identity)},
    )
    server = grpc.aio.server(options=GRPC_OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await _announce_and_wait(port_file, port, lambda: server.stop(0.5))


async def _serve_model(port_file: Path, model_dir: Path) -> None:
    from service.modelserver.demo_model import build_demo_model
    from service.modelserver.server import start_model_server

    model = await start_model_server(build_demo_model(model_dir, "digits"), port=0)
    await _announce_and_wait(port_file, model.port, lambda: model.stop(0.5))


async def _serve_passthrough(port_file: Path, upstream: str) -> None:
    """The bare grpcio terminating passthrough: decode the call, re-send it, send back."""
    channel = grpc.aio.insecure_channel(upstream, options=GRPC_OPTIONS)
    calls: dict[str, Any] = {}

    class Forward(grpc.GenericRpcHandler):
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
            method = details.method
            if method not in calls:
                calls[method] = channel.unary_unary(method, _identity, _identity)
            call = calls[method]

            async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
                try:
                    return await call(request, metadata=context.invocation_metadata())
                except grpc.aio.AioRpcError as err:
                    await context.abort(err.code(), err.details() or "")
                    raise

            return grpc.unary_unary_rpc_method_handler(forward, _identity, _identity)

    server = grpc.aio.server(options=GRPC_OPTIONS)
    server.add_generic_rpc_handlers((Forward(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await _announce_and_wait(port_file, port, lambda: server.stop(0.5))


class DecodingSink:
    """A monitor stand-in: bounded queue, consumer task that decodes every message."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self.offered = 0
        self.dropped = 0
        self.decoded = 0

    def offer(self, obs: Any) -> bool:
        self.offered += 1
        try:
            self.queue.put_nowait(obs)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    async def consume(self) -> None:
        from service.oip import codec
        from service.oip import open_inference_pb2 as pb

        while True:
            obs = await self.queue.get()
            for raw in obs.request_messages:
                codec.decode_request_inputs(pb.ModelInferRequest.FromString(raw))
            for raw in obs.response_messages:
                pb.ModelInferResponse.FromString(raw)
            self.decoded += 1


async def _serve_relay(
    port_file: Path, upstream_port: int, monitoring: bool, stats: Path, tap: bool = True
) -> None:
    from service.dataplane.relay import Relay
    from service.dataplane.settings import DataplaneSettings, UpstreamSettings

    sink = DecodingSink()
    settings = DataplaneSettings(
        listen_port=0,
        upstream=UpstreamSettings(port=upstream_port),
        sampling_rate=1.0 if monitoring else 0.0,
        max_samples_per_second=1e9,
        max_message_bytes=MAX_MESSAGE,
        tap_enabled=tap,
    )
    relay = Relay(settings, sink=sink)
    await relay.start()
    consumer = asyncio.get_running_loop().create_task(sink.consume())

    async def stop() -> None:
        consumer.cancel()
        await relay.stop(0.5)
        counts = {"offered": sink.offered, "dropped": sink.dropped, "decoded": sink.decoded}
        with contextlib.suppress(OSError):
            stats.write_text(json.dumps(counts))

    await _announce_and_wait(port_file, relay.port, stop)


async def _announce_and_wait(
    port_file: Path, port: int, stop: Callable[[], Awaitable[Any]]
) -> None:
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(port))
    tmp.replace(port_file)
    await done.wait()
    await stop()


def _role_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--upstream", default="")
    parser.add_argument("--model-dir", type=Path, default=Path("."))
    parser.add_argument("--stats-file", type=Path, default=Path("/dev/null"))
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args(argv)
    if args.role == "echo":
        coro = _serve_echo(args.port_file)
    elif args.role == "model":
        coro = _serve_model(args.port_file, args.model_dir)
    elif args.role == "passthrough":
        coro = _serve_passthrough(args.port_file, args.upstream)
    elif args.role in ("relay-off", "relay-on", "relay-notap"):
        coro = _serve_relay(
            args.port_file,
            int(args.upstream),
            args.role == "relay-on",
            args.stats_file,
            tap=args.role != "relay-notap",
        )
    else:
        raise SystemExit(f"unknown role {args.role}")
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)
    return 0


# --------------------------------------------------------------------------- processes
_STARTED: list[ServerProcess] = []


class ServerProcess:
    """One role in a subprocess; knows its port and its RSS."""

    def __init__(self, workdir: Path, name: str, *args: str) -> None:
        self.name = name
        self.port_file = workdir / f"{name}.port"
        self.stats_file = workdir / f"{name}.stats.json"
        cmd = [sys.executable, "-m", "benchmarks.proxy_overhead", "--port-file"]
        cmd += [str(self.port_file), "--stats-file", str(self.stats_file), *args]
        self.proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parent.parent)
        _STARTED.append(self)
        deadline = time.monotonic() + 120
        while not self.port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.05)
        self.port = int(self.port_file.read_text())

    def cpu_seconds(self) -> float:
        """CPU time of all the process's threads so far (schedstat: nanoseconds, not ticks)."""
        total = 0
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread may exit while we look
                total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        return float("nan")

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is not None:
            return {}
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.stats_file.exists():
            return dict(json.loads(self.stats_file.read_text()))
        return {}


# --------------------------------------------------------------------------- client side
def _request_bytes(rows: int, seed: int = 0) -> bytes:
    from service.oip.codec import encode_request

    rng = np.random.default_rng(seed)
    pixels = rng.uniform(0, 16, size=(rows, 64)).astype(np.float32)
    return bytes(encode_request("demo", {"pixels": pixels}).SerializeToString())


class Client:
    """grpc.aio calls to one target over one channel, measured."""

    def __init__(self, loop: asyncio.AbstractEventLoop, port: int) -> None:
        self.loop = loop

        async def connect() -> grpc.aio.Channel:  # grpc.aio binds a channel to the running loop
            return grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS)

        self.channel = loop.run_until_complete(connect())
        self.call = self.channel.unary_unary(METHOD, _identity, _identity)

    def latency(self, request: bytes, n: int) -> dict[str, float]:
        async def run() -> list[float]:
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                await self.call(request, timeout=30)
                out.append(time.perf_counter() - t0)
            return out

        lat = self.loop.run_until_complete(run())
        return {"p50_ms": percentile(lat, 50) * 1e3, "p99_ms": percentile(lat, 99) * 1e3}

    def throughput(self, request: bytes, concurrency: int, per_worker: int) -> float:
        async def worker() -> None:
            for _ in range(per_worker):
                await self.call(request, timeout=30)

        async def run() -> float:
            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return concurrency * per_worker / (time.perf_counter() - t0)

        return self.loop.run_until_complete(run())

    def close(self) -> None:
        self.loop.run_until_complete(self.channel.close())


def _measure_mode(
    mode: str, workdir: Path, quick: bool, rounds: int, model_dir: Path
) -> tuple[dict[str, Any], dict[str, ServerProcess]]:
    upstream = ServerProcess(
        workdir, f"{mode}-upstream", "--role", mode, "--model-dir", str(model_dir)
    )
    up = str(upstream.port)
    servers = {
        "passthrough": ServerProcess(
            workdir, f"{mode}-pt", "--role", "passthrough", "--upstream", f"127.0.0.1:{up}"
        ),
        "outrider_off": ServerProcess(
            workdir, f"{mode}-off", "--role", "relay-off", "--upstream", up
        ),
        "outrider_on": ServerProcess(workdir, f"{mode}-on", "--role", "relay-on", "--upstream", up),
    }
    if not quick:  # uvloop is kept only if it measurably helps; the full run decides
        servers["outrider_on_uvloop"] = ServerProcess(
            workdir, f"{mode}-onuv", "--role", "relay-on", "--upstream", up, "--loop", "uvloop"
        )
    loop = asyncio.new_event_loop()
    clients = {"direct": Client(loop, upstream.port)}
    clients.update({name: Client(loop, proc.port) for name, proc in servers.items()})
    requests = {label: _request_bytes(rows) for label, rows in PAYLOADS.items()}
    n_small, n_large = (100, 20) if quick else (500, 100)
    per_worker_small, per_worker_large = (40, 6) if quick else (200, 30)

    def contender(name: str) -> Callable[[], dict[str, float]]:
        client = clients[name]

        def measure() -> dict[str, float]:
            out: dict[str, float] = {}
            for label, request in requests.items():
                n = n_small if label == "4KB" else n_large
                per = per_worker_small if label == "4KB" else per_worker_large
                client.latency(request, 10)  # warm the path
                lat = client.latency(request, n)
                out[f"{label}_c1_p50_ms"] = lat["p50_ms"]
                out[f"{label}_c1_p99_ms"] = lat["p99_ms"]
                proc = servers.get(name)
                cpu0 = proc.cpu_seconds() if proc is not None else 0.0
                out[f"{label}_c8_rps"] = client.throughput(request, 8, per)
                if proc is not None:
                    # CPU the sidecar spends per request: far less noisy than wall times
                    out[f"{label}_c8_cpu_us_per_req"] = (
                        (proc.cpu_seconds() - cpu0) / (8 * per) * 1e6
                    )
            if name in servers:
                out["rss_mb"] = servers[name].rss_mb()
            return out

        return measure

    raw = alternating_rounds({name: contender(name) for name in clients}, rounds)
    for client in clients.values():
        client.close()
    loop.close()
    servers["upstream"] = upstream
    return {"rounds": raw, "loop": None}, servers


def _summarise(raw: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name, rounds in raw.items():
        summary[name] = {k: median([r[k] for r in rounds]) for k in rounds[0]}
    ratios: dict[str, Any] = {}
    n = len(raw["direct"])
    for name in raw:
        if name == "direct":
            continue
        entry: dict[str, float] = {}
        for label in PAYLOADS:
            k = f"{label}_c1_p50_ms"
            entry[f"{label}_c1_added_p50_ms"] = median(
                [raw[name][i][k] - raw["direct"][i][k] for i in range(n)]
            )
            k = f"{label}_c8_rps"
            entry[f"{label}_c8_throughput_vs_direct"] = median(
                [raw[name][i][k] / raw["direct"][i][k] for i in range(n)]
            )
        ratios[name] = entry
    for name in ("outrider_on", "outrider_on_uvloop"):
        if name not in raw:
            continue
        entry = ratios[name]
        entry["4KB_c1_added_p50_vs_passthrough"] = median(
            [
                (raw[name][i]["4KB_c1_p50_ms"] - raw["direct"][i]["4KB_c1_p50_ms"])
                / (raw["passthrough"][i]["4KB_c1_p50_ms"] - raw["direct"][i]["4KB_c1_p50_ms"])
                for i in range(n)
            ]
        )
        entry["4KB_c8_cpu_per_req_on_vs_off"] = median(
            [
                raw[name][i]["4KB_c8_cpu_us_per_req"]
                / raw["outrider_off"][i]["4KB_c8_cpu_us_per_req"]
                for i in range(n)
            ]
        )
        for label in PAYLOADS:
            entry[f"{label}_c1_p50_on_vs_off"] = median(
                [
                    raw[name][i][f"{label}_c1_p50_ms"]
                    / raw["outrider_off"][i][f"{label}_c1_p50_ms"]
                    for i in range(n)
                ]
            )
            entry[f"{label}_c8_rps_on_vs_off"] = median(
                [
                    raw[name][i][f"{label}_c8_rps"] / raw["outrider_off"][i][f"{label}_c8_rps"]
                    for i in range(n)
                ]
            )
    return {"medians": summary, "ratios": ratios}


def _rss_soak(workdir: Path, model_dir: Path, total: int) -> dict[str, float]:
    """Sidecar RSS (monitoring on, 100 % sampled) after total/2 and total requests."""
    upstream = ServerProcess(workdir, "soak-upstream", "--role", "echo")
    relay = ServerProcess(
        workdir, "soak-on", "--role", "relay-on", "--upstream", str(upstream.port)
    )
    loop = asyncio.new_event_loop()
    client = Client(loop, relay.port)
    request = _request_bytes(PAYLOADS["4KB"])
    half = total // 2
    out = {"rss_start_mb": relay.rss_mb()}
    client.throughput(request, 8, half // 8)
    out["rss_half_mb"] = relay.rss_mb()
    client.throughput(request, 8, half // 8)
    out["rss_end_mb"] = relay.rss_mb()
    out["requests"] = float(8 * (half // 8) * 2)
    out["rss_growth_mb"] = out["rss_end_mb"] - out["rss_half_mb"]
    client.close()
    loop.close()
    stats = relay.stop()
    upstream.stop()
    out.update({f"sink_{k}": float(v) for k, v in stats.items()})
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--role" in argv:
        return _role_main(argv)
    args = parse_args(__doc__.splitlines()[0], argv)
    # SIGTERM -> SystemExit, so the server processes below are stopped on the way out
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    rounds = args.rounds or (3 if args.quick else 7)
    results: dict[str, Any] = {"rounds": rounds, "payloads": {"4KB": 4096, "256KB": 262144}}
    targets: list[Target] = []
    try:
        return _run(args, rounds, results, targets)
    finally:
        for proc in _STARTED:
            proc.stop()


def _run(
    args: argparse.Namespace, rounds: int, results: dict[str, Any], targets: list[Target]
) -> int:
    with tempfile.TemporaryDirectory(prefix="outrider-bench-") as tmp:
        try:
            return _run_in(Path(tmp), args, rounds, results, targets)
        finally:
            for proc in _STARTED:
                proc.stop()


def _run_in(
    workdir: Path,
    args: argparse.Namespace,
    rounds: int,
    results: dict[str, Any],
    targets: list[Target],
) -> int:
    # the demo model is cached across runs (training it takes a few seconds)
    model_dir = Path(
        os.environ.get(
            "OUTRIDER_BENCH_MODEL_DIR", Path(__file__).resolve().parent.parent / ".bench-models"
        )
    )
    for mode in ("model", "echo"):
        raw, servers = _measure_mode(mode, workdir, args.quick, rounds, model_dir)
        summary = _summarise(raw["rounds"])
        summary["sink"] = {}
        for name, proc in servers.items():
            stats = proc.stop()
            if stats:
                summary["sink"][name] = stats
        results[mode] = {"raw": raw["rounds"], **summary}
        _print_mode(mode, summary)
        r = summary["ratios"]["outrider_on"]
        targets += [
            Target(
                f"{mode}: added p50 outrider-on / passthrough (4KB, c=1)",
                r["4KB_c1_added_p50_vs_passthrough"],
                0.35,
                "<=",
            ),
            Target(
                f"{mode}: throughput outrider-on / direct (4KB, c=8)",
                r["4KB_c8_throughput_vs_direct"],
                0.75,
                ">=",
            ),
            Target(
                f"{mode}: p50 monitoring on / off (4KB, c=1)",
                r["4KB_c1_p50_on_vs_off"],
                1.15,
                "<=",
            ),
            Target(
                f"{mode}: throughput monitoring on / off (4KB, c=8)",
                r["4KB_c8_rps_on_vs_off"],
                0.90,
                ">=",
            ),
        ]
    soak_total = 4_000 if args.quick else 100_000
    soak = _rss_soak(workdir, model_dir, soak_total)
    results["rss_soak"] = soak
    print(
        f"\nRSS soak ({int(soak['requests'])} requests, monitoring on, 100 %): "
        f"start {soak['rss_start_mb']:.1f} MB, half {soak['rss_half_mb']:.1f} MB, "
        f"end {soak['rss_end_mb']:.1f} MB; sink {soak.get('sink_decoded', 0):.0f} decoded, "
        f"{soak.get('sink_dropped', 0):.0f} dropped"
    )
    targets += [
        Target("sidecar RSS after soak (MB)", soak["rss_end_mb"], 250.0, "<="),
        Target("sidecar RSS growth second half of soak (MB)", soak["rss_growth_mb"], 5.0, "<="),
    ]
    return report("proxy_overhead", results, targets, args.json, quick=args.quick)


def _print_mode(mode: str, summary: dict[str, Any]) -> None:
    print(f"\n== upstream: {mode} (medians over rounds) ==")
    med = summary["medians"]
    cols = [
        "4KB_c1_p50_ms",
        "4KB_c1_p99_ms",
        "4KB_c8_rps",
        "256KB_c1_p50_ms",
        "256KB_c1_p99_ms",
        "256KB_c8_rps",
        "4KB_c8_cpu_us_per_req",
        "rss_mb",
    ]
    print(f"{'contender':<20}" + "".join(f"{c:>22}" for c in cols))
    for name, row in med.items():
        print(f"{name:<20}" + "".join(f"{row.get(c, float('nan')):>22.3f}" for c in cols))
    print("ratios (per-round, median):")
    for name, row in summary["ratios"].items():
        print(f"  {name}: " + ", ".join(f"{k}={v:.3f}" for k, v in row.items()))
    if summary.get("sink"):
        print(f"  sink counts: {summary['sink']}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
