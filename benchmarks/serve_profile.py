"""Where `outrider serve`'s CPU per request goes, at each monitoring setting (py-spy).

    python -m benchmarks.serve_profile [--quick] [--json PATH] [--rounds SECONDS]
        [--setting serve_off|serve_default|serve_full ...]

The same processes as `benchmarks.proxy_overhead` (the model server, `outrider serve` at
serve_off, serve_default and serve_full): each serve in turn carries concurrency-8 4 KB
load from tritonclient's stubs for a fixed time while py-spy (`pip install py-spy`) samples
it from outside (`--nonblocking`: it never pauses the process) and /proc gives its CPU time.
Every sampled stack is put in one bucket by the deepest frame that names one (`BUCKETS`).
Each thread's CPU time over the window (/proc/PID/task/TID/schedstat) is split among the
buckets of that thread's samples, and the sum over threads divided by the requests gives
each bucket's microseconds per request. py-spy leaves out sleeping threads; samples of a
thread that waits (`WAITING_LEAVES`) are left out. On a shared machine a runnable thread
waiting for a core is sampled where it waits, so the split within a thread is approximate;
the split between threads is measured.

A profile is a measurement aid, not a target: the JSON has no targets of its own beyond
"the profile ran" (samples taken at every setting).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import Target, parse_args, report
from benchmarks.proxy_overhead import PAYLOADS, Client, _request, demo_model_path, prepare_state
from benchmarks.sidecar_processes import (
    SERVE_SETTINGS,
    serve_config,
    start_model_server,
    start_serve,
    stop_all,
)

#: (bucket, what a frame's "function (file:line)" text must contain), deepest frame first:
#: a stack goes to the bucket of its deepest frame that matches any entry. Order matters
#: only between entries that can match the same frame.
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("hand-off to the monitor (offer)", ("offer (service/monitor/pipeline.py",
                                         "offer (service/monitor/intake.py",
                                         "service/dataplane/dispatch.py")),
    ("HPACK decode", ("hpack/",)),
    ("tap: HTTP/2 frame parse", ("service/dataplane/http2_frames.py",)),
    ("tap: gRPC message reassembly, model name", ("service/dataplane/grpc_messages.py",
                                                  "service/dataplane/protobuf_fields.py")),
    ("tap: sampling decision", ("service/dataplane/sampling.py",)),
    ("tap: streams, observations", ("service/dataplane/tap.py",
                                    "service/dataplane/observation.py")),
    ("metrics (prometheus_client, dataplane metrics)", ("prometheus_client/",
                                                         "service/dataplane/metrics.py")),
    ("monitor worker: detectors", ("detectors/",)),
    ("monitor worker: decode (protobuf, tensors)", ("service/monitor/decoding.py",
                                                    "service/oip/codec.py")),
    ("checkpoints (writes, fsync)", ("service/store/checkpoints.py",
                                     "service/store/checkpointer.py",
                                     "service/monitor/checkpoint_codec.py")),
    ("alert engine, incidents, plots", ("service/alerting/", "service/store/")),
    ("monitor worker: other (queue, batches, signals, readings)", ("service/monitor/",)),
    ("relay: read/write callbacks", ("service/dataplane/relay.py",)),
    ("asyncio transports: socket recv/send", ("asyncio/selector_events.py",)),
    ("admin HTTP (aiohttp)", ("aiohttp/",)),
    ("event loop: select, scheduling", ("asyncio/", "selectors.py")),
    ("threads, other", ("threading.py", "concurrent/futures")),
)
OTHER = "other"
#: A stack whose deepest frame is one of these is a thread waiting (epoll, a lock, a queue),
#: not using CPU: on a loaded machine a woken thread waits for a core where it woke, and
#: py-spy, which only sees that the thread is runnable, samples it there. Such samples are
#: counted apart and left out of the shares.
WAITING = "waiting (epoll, locks, queues: not CPU)"
WAITING_LEAVES = ("select (selectors.py", "wait (threading.py", "_worker (concurrent/futures",
                  "get (queue.py")


def bucket_of(stack: Sequence[str]) -> str:
    """The bucket of one stack (root first, as py-spy writes them)."""
    for frame in reversed(stack):
        for name, needles in BUCKETS:
            if any(needle in frame for needle in needles):
                return name
    return OTHER


def read_raw(path: Path) -> tuple[dict[str, Counter[str]], dict[str, Counter[str]]]:
    """py-spy's raw output (one `thread (TID);frame;... count` line per distinct stack):
    samples per thread id and bucket, and per bucket the counts of its stacks' deepest
    frames (what to look at first)."""
    counts: dict[str, Counter[str]] = {}
    leaves: dict[str, Counter[str]] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        # "thread (TID): name" with --threads; TID is the OS thread id, as in /proc
        head = re.match(r"thread \((\w+)\)", parts[0])
        tid = head.group(1) if head else "?"
        frames = parts[1:] if head else parts
        waiting = bool(frames) and any(leaf in frames[-1] for leaf in WAITING_LEAVES)
        bucket = WAITING if waiting else bucket_of(frames)
        counts.setdefault(tid, Counter())[bucket] += int(count)
        leaves.setdefault(bucket, Counter())[frames[-1] if frames else "?"] += int(count)
    return counts, leaves


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of each of the process's threads, by thread id (schedstat)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, IndexError):
            out[task.name] = int((task / "schedstat").read_text().split()[0]) / 1e9
    return out


def attribute(
    samples: dict[str, Counter[str]], cpu_by_thread: dict[str, float]
) -> dict[str, float]:
    """CPU seconds per bucket: each thread's measured CPU split by its own samples' buckets.

    Splitting per thread keeps a thread that waits for a core on a loaded machine (sampled,
    but not running) from taking CPU that another thread used. CPU of threads py-spy never
    caught running is charged to "unsampled threads".
    """
    out: Counter[str] = Counter()
    for tid, cpu in cpu_by_thread.items():
        buckets = {b: n for b, n in samples.get(tid, Counter()).items() if b != WAITING}
        total = sum(buckets.values())
        if total == 0:
            out["unsampled threads"] += cpu
            continue
        for bucket, n in buckets.items():
            out[bucket] += cpu * n / total
    return dict(out)


def profile_setting(
    workdir: Path, setting: str, upstream_port: int, monitoring: dict[str, Any],
    references: Path, seconds: float, rate: int,
) -> dict[str, Any]:
    state = workdir / f"profile-{setting}-state"
    shutil.copytree(references, state / "references")
    serve = start_serve(workdir, f"profile-{setting}",
                        serve_config(setting, upstream_port, state, monitoring))
    loop = asyncio.new_event_loop()
    client = Client(loop, serve.port)
    request = _request(PAYLOADS["4KB"])
    per_worker = max(1, int(seconds * 150))  # roughly `seconds` of load at ~1200 req/s
    client.throughput(request, 8, 50)  # warm
    raw = workdir / f"profile-{setting}.txt"
    spy = subprocess.Popen(
        [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(serve.pid),
         "--rate", str(rate), "--nonblocking", "--format", "raw", "--threads",
         "--output", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    time.sleep(1.0)  # py-spy attaches
    threads0, t0 = thread_cpu(serve.pid), time.perf_counter()
    rps = client.throughput(request, 8, per_worker)
    threads1, wall = thread_cpu(serve.pid), time.perf_counter() - t0
    by_thread = {tid: threads1[tid] - threads0.get(tid, 0.0) for tid in threads1}
    cpu = sum(by_thread.values())
    spy.send_signal(subprocess.signal.SIGINT)  # py-spy writes its output on SIGINT
    _, err = spy.communicate(timeout=60)
    requests = 8 * per_worker
    client.close()
    loop.close()
    counters = serve.metrics()
    serve.stop()
    samples, leaves = read_raw(raw) if raw.exists() else ({}, {})
    counts: Counter[str] = Counter()
    for per_thread in samples.values():
        counts.update(per_thread)
    waiting = counts.pop(WAITING, 0)
    total = sum(counts.values())
    cpu_us = cpu / requests * 1e6
    seconds = attribute(samples, by_thread) if total else {}
    buckets = {
        name: {"samples": counts.get(name, 0), "share": s / cpu,
               "us_per_request": s / requests * 1e6,
               "top_leaf_frames": dict(leaves.get(name, Counter()).most_common(5))}
        for name, s in sorted(seconds.items(), key=lambda item: -item[1])
    }
    return {
        "requests": requests, "wall_s": wall, "rps": rps, "cpu_s": cpu,
        "cpu_us_per_request": cpu_us, "samples": total, "waiting_samples": waiting,
        "cpu_s_by_thread": {tid: c for tid, c in by_thread.items() if c > 0},
        "waiting_top_leaf_frames": dict(leaves.get(WAITING, Counter()).most_common(5)),
        "py_spy_error": None if total else err.decode(errors="replace")[-2000:],
        "buckets": buckets, "serve_counters": counters,
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    settings: list[str] = []
    while "--setting" in argv:  # profile only these settings (repeatable)
        at = argv.index("--setting")
        settings.append(argv[at + 1])
        del argv[at : at + 2]
    args = parse_args(__doc__.splitlines()[0] if __doc__ else "", argv)
    args.settings = settings
    seconds = float(args.rounds or (5 if args.quick else 20))
    try:
        with tempfile.TemporaryDirectory(prefix="outrider-profile-") as tmp:
            return run(Path(tmp), args, seconds)
    finally:
        stop_all()


def run(workdir: Path, args: argparse.Namespace, seconds: float) -> int:
    model_path = demo_model_path()
    up = start_model_server(workdir, "profile-upstream", model_path)
    monitoring, references = prepare_state(workdir, "model", model_path)
    results: dict[str, Any] = {"seconds_per_setting": seconds, "upstream": "model",
                               "payload": "4KB", "concurrency": 8, "sampling_hz": 200}
    for setting in args.settings or SERVE_SETTINGS:
        results[setting] = res = profile_setting(workdir, setting, up.port, monitoring,
                                                 references, seconds, 200)
        print(f"\n== {setting}: {res['cpu_us_per_request']:.0f} us CPU per request at "
              f"{res['rps']:.0f} req/s ({res['samples']} samples) ==")
        for name, b in res["buckets"].items():
            print(f"  {b['us_per_request']:7.1f} us  {100 * b['share']:5.1f} %  {name}")
            for frame, n in b["top_leaf_frames"].items():
                print(f"{'':22}{n:6d}  {frame}")
        if res["py_spy_error"]:
            print(f"  py-spy: {res['py_spy_error']}")
    up.stop()
    targets = [Target(f"{s}: py-spy samples taken", float(results[s]["samples"]), 1.0, ">=")
               for s in args.settings or SERVE_SETTINGS]
    return report("serve_profile", results, targets, args.json, quick=args.quick)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
