"""The processes the data-plane benchmarks drive: upstreams, a bare passthrough, `outrider serve`.

Each server runs in its own process, so its CPU time and RSS are its own and the client's
work never shares its GIL. `ServerProcess` starts one and reads its CPU time from /proc;
`serve_config` writes the configuration `outrider serve` runs with at each monitoring
setting. The small roles (echo server, grpc.aio passthrough, the relay with the old
decoding stand-in) run as `python -m benchmarks.sidecar_processes --role NAME`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import yaml

ROOT = Path(__file__).resolve().parent.parent
MAX_MESSAGE = 64 * 1024 * 1024
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]
#: Monitoring settings of `outrider serve`, by name: dataplane sampling overrides.
SERVE_SETTINGS: dict[str, dict[str, float]] = {
    # the tap still parses every frame and header block (metrics); nothing is sampled
    "serve_off": {"sampling_rate": 0.0},
    # the dataplane's defaults: 10 % of inference RPCs, at most 50 samples/s
    "serve_default": {},
    # every RPC sampled; the budget raised so that it never binds
    "serve_full": {"sampling_rate": 1.0, "max_samples_per_second": 1e6},
}


def _identity(b: bytes) -> bytes:
    return b


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# --------------------------------------------------------------------------- processes
class ServerProcess:
    """One server in a subprocess: its port, its CPU time and RSS, a clean stop."""

    started: list[ServerProcess] = []

    def __init__(
        self,
        name: str,
        cmd: list[str],
        port: int,
        ready: Callable[[ServerProcess], bool],
        log_path: Path,
        timeout: float = 180.0,
    ) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        self.admin_port: int | None = None
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        ServerProcess.started.append(self)
        deadline = time.monotonic() + timeout
        while not ready(self):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"{name} did not start:\n{tail}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """CPU time of all the process's threads so far (schedstat: nanoseconds, not ticks)."""
        total = 0
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError):  # a thread may exit while we look
                total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        return float("nan")

    def metrics(self) -> dict[str, float]:
        """`outrider serve`'s own counters (sum over labels), read from its /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        if self.admin_port is None:
            return {}
        url = f"http://127.0.0.1:{self.admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name.endswith("_total"):
                    label = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())
                                     if k in ("outcome", "reason", "code"))
                    key = f"{s.name}{{{label}}}" if label else s.name
                    out[key] = out.get(key, 0.0) + s.value
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _port_file_ready(port_file: Path) -> Callable[[ServerProcess], bool]:
    return lambda proc: port_file.exists()


def _http_ready(url: str) -> Callable[[ServerProcess], bool]:
    def ready(proc: ServerProcess) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    return ready


def _log_says(text: str) -> Callable[[ServerProcess], bool]:
    return lambda proc: text in proc.log_path.read_text(errors="replace")


def start_role(workdir: Path, name: str, role: str, *args: str) -> ServerProcess:
    """An echo server, the passthrough or the stand-in relay (roles below), on a free port."""
    (port,) = free_ports(1)
    port_file = workdir / f"{name}.port"
    cmd = [sys.executable, "-m", "benchmarks.sidecar_processes", "--role", role,
           "--port", str(port), "--port-file", str(port_file), *args]
    return ServerProcess(name, cmd, port, _port_file_ready(port_file), workdir / f"{name}.log")


def start_model_server(workdir: Path, name: str, model_path: Path) -> ServerProcess:
    """`outrider modelserver` on the demo model."""
    (port,) = free_ports(1)
    cmd = [sys.executable, "-m", "service.cli", "modelserver", "--model", str(model_path),
           "--port", str(port), "--log-level", "warning"]
    return ServerProcess(name, cmd, port, _log_says(f"on 127.0.0.1:{port}"),
                         workdir / f"{name}.log")


def start_serve(workdir: Path, name: str, config: dict[str, Any]) -> ServerProcess:
    """`outrider serve --config FILE` with the relay and admin ports filled in; ready on /readyz."""
    listen, admin = free_ports(2)
    config = json.loads(json.dumps(config))  # a deep copy
    config["dataplane"]["listen_port"] = listen
    config["admin"] = {"host": "127.0.0.1", "port": admin}
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "-m", "service.cli", "serve", "--config", str(path)]
    proc = ServerProcess(name, cmd, listen, _http_ready(f"http://127.0.0.1:{admin}/readyz"),
                         workdir / f"{name}.log")
    proc.admin_port = admin
    return proc


def stop_all() -> None:
    for proc in ServerProcess.started:
        with contextlib.suppress(Exception):
            proc.stop()
    ServerProcess.started.clear()


# --------------------------------------------------------------------------- serve config
def demo_monitoring(upstream: str) -> dict[str, Any]:
    """examples/demo.yaml's models and alerts, with references read from the state directory.

    Against the echo server the responses carry no model outputs, so its one signal reads
    the request's `pixels` with the detectors demo.yaml puts on the embedding.
    """
    demo = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    models = demo["models"]
    for model in models.values():
        for sig in model["signals"]:
            sig.pop("reference", None)  # default location: state_dir/references/<model>/<signal>
    if upstream == "echo":
        embedding = next(s for s in models["demo"]["signals"] if s["name"] == "embedding")
        models = {"demo": {"signals": [
            {"name": "pixels", "source": {"input": "pixels"}, "detectors": embedding["detectors"]}
        ]}}
    return {"models": models, "alerts": demo.get("alerts", [])}


def serve_config(
    setting: str, upstream_port: int, state_dir: Path, monitoring: dict[str, Any]
) -> dict[str, Any]:
    """What `outrider serve` runs with at one monitoring setting (ports filled in at start)."""
    return {
        "state_dir": str(state_dir),
        "logging": {"level": "info", "format": "json"},
        "dataplane": {
            "upstream": {"host": "127.0.0.1", "port": upstream_port},
            **SERVE_SETTINGS[setting],
        },
        **monitoring,
    }


# --------------------------------------------------------------------------- roles
async def _serve_echo(port: int, port_file: Path) -> None:
    """An upstream that answers every unary call with the request bytes."""

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {"ModelInfer": grpc.unary_unary_rpc_method_handler(echo, _identity, _identity)},
    )
    server = grpc.aio.server(options=GRPC_OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await _announce_and_wait(port_file, lambda: server.stop(0.5))


async def _serve_passthrough(port: int, port_file: Path, upstream: str) -> None:
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
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await _announce_and_wait(port_file, lambda: server.stop(0.5))


class DecodingSink:
    """The old monitor stand-in: bounded queue, a task on the relay's loop that decodes every
    message (protobuf and tensors). No detectors, no worker thread: not what serve runs."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)

    def offer(self, obs: Any) -> bool:
        try:
            self.queue.put_nowait(obs)
        except asyncio.QueueFull:
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


async def _serve_standin(port: int, port_file: Path, upstream_port: int) -> None:
    from service.dataplane.relay import Relay
    from service.dataplane.settings import DataplaneSettings, UpstreamSettings

    sink = DecodingSink()
    settings = DataplaneSettings(
        listen_port=port,
        upstream=UpstreamSettings(port=upstream_port),
        sampling_rate=1.0,
        max_samples_per_second=1e9,
        max_message_bytes=MAX_MESSAGE,
    )
    relay = Relay(settings, sink=sink)
    await relay.start()
    consumer = asyncio.get_running_loop().create_task(sink.consume())

    async def stop() -> None:
        consumer.cancel()
        await relay.stop(0.5)

    await _announce_and_wait(port_file, stop)


async def _announce_and_wait(port_file: Path, stop: Callable[[], Awaitable[Any]]) -> None:
    done = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, done.set)
    port_file.write_text("ready")
    await done.wait()
    await stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one benchmark server role")
    parser.add_argument("--role", required=True, choices=("echo", "passthrough", "standin"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--upstream", default="")
    args = parser.parse_args(argv)
    if args.role == "echo":
        coro = _serve_echo(args.port, args.port_file)
    elif args.role == "passthrough":
        coro = _serve_passthrough(args.port, args.port_file, args.upstream)
    else:
        coro = _serve_standin(args.port, args.port_file, int(args.upstream))
    asyncio.run(coro)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
