"""`outrider probes ...`: build probe suites offline and list the run history.

The lead's `service/cli.py` calls `add_probes_subcommands(commands)`; each handler takes the
parsed arguments and returns the process exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from service.probes.builder import BuildOptions, build_suite
from service.probes.run_store import RunStore
from service.probes.sample_files import SampleFileError, load_samples
from service.probes.suite import SUITE_KINDS


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW or HxWxC, got {text!r}") from None
    if len(dims) not in (2, 3) or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW or HxWxC, got {text!r}")
    return dims


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}") from None
    if hi <= lo:
        raise argparse.ArgumentTypeError(f"expected LOW < HIGH, got {text!r}")
    return lo, hi


def add_probes_subcommands(subparsers: Any) -> None:
    """Adds `probes build` and `probes runs` to the top-level subparsers."""
    probes = subparsers.add_parser("probes", help="robustness probe suites and their runs")
    commands = probes.add_subparsers(dest="probes_command", required=True)

    build = commands.add_parser("build", help="build a probe suite (npz) from clean samples")
    build.add_argument("--model", type=Path, required=True, help="the ONNX model (M.onnx)")
    build.add_argument(
        "--data", type=Path, required=True, help="clean samples: .npz (inputs, labels), .npy, .csv"
    )
    build.add_argument("--suite", required=True, help="suite name")
    build.add_argument("--kind", choices=SUITE_KINDS, default="corruptions")
    build.add_argument("--out", type=Path, default=None, help="output npz (default ./NAME.npz)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--max-samples", type=int, default=200, help="clean samples used")
    build.add_argument(
        "--image-shape",
        type=_shape,
        default=None,
        help="HxW[xC] of image inputs (default: the model's image_shape metadata; none: tabular)",
    )
    build.add_argument(
        "--value-range",
        type=_range,
        default=None,
        help="LOW,HIGH of input values (default: the model's metadata, else the data's range)",
    )
    build.add_argument("--eps", type=float, default=None, help="attack bound in input units")
    build.add_argument("--norm", choices=["linf", "l2"], default="linf", help="Square Attack norm")
    build.add_argument("--max-queries", type=int, default=500, help="attack budget per sample")
    build.add_argument("--sigma", type=float, default=None, help="noise level (noise suites)")
    build.add_argument("--noise-copies", type=int, default=100, help="noisy copies per sample")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.set_defaults(func=run_build)

    runs = commands.add_parser("runs", help="list recent probe runs")
    runs.add_argument("--state-dir", type=Path, default=Path("./outrider-state"))
    runs.add_argument("--model", default=None)
    runs.add_argument("--suite", default=None)
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--json", action="store_true", help="JSON instead of a table")
    runs.set_defaults(func=run_list_runs)


def run_build(args: argparse.Namespace) -> int:
    """Handler of `outrider probes build`."""
    try:
        x, y = load_samples(args.data)
    except SampleFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = BuildOptions(
        seed=args.seed,
        max_samples=args.max_samples,
        image_shape=args.image_shape,
        value_range=args.value_range,
        eps=args.eps,
        norm=args.norm,
        max_queries=args.max_queries,
        sigma=args.sigma,
        noise_copies=args.noise_copies,
    )
    out = args.out or Path(f"{args.suite}.npz")
    try:
        if args.no_progress:
            suite = build_suite(
                args.model, x, y, name=args.suite, kind=args.kind, options=options, out=out
            )
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            ) as bar:
                task = bar.add_task(f"building {args.kind} suite {args.suite!r}", total=None)

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                suite = build_suite(
                    args.model,
                    x,
                    y,
                    name=args.suite,
                    kind=args.kind,
                    options=options,
                    out=out,
                    progress=progress,
                )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {k: v for k, v in suite.summary.items() if k != "accuracy"}
    accuracy = suite.summary.get("accuracy", {})
    print(f"wrote {out}: {len(suite)} probes, kind {suite.kind}, {len(accuracy)} variants")
    print(f"  clean accuracy {accuracy.get('clean', float('nan')):.4f}")
    worst = sorted(accuracy.items(), key=lambda kv: kv[1])[:3]
    for variant, value in worst:
        if variant != "clean":
            print(f"  {variant}: accuracy {value:.4f}")
    if summary:
        print("  " + json.dumps(summary, default=float))
    return 0


def run_list_runs(args: argparse.Namespace) -> int:
    """Handler of `outrider probes runs`."""
    path = Path(args.state_dir) / "probes" / "runs.sqlite"
    if not path.exists():
        print(f"no probe runs yet ({path} does not exist)", file=sys.stderr)
        return 1
    store = RunStore(path)
    try:
        records = store.runs(model=args.model, suite=args.suite, limit=args.limit)
    finally:
        store.close()
    if args.json:
        rows = [{k: v for k, v in r.__dict__.items() if k != "predictions"} for r in records]
        print(json.dumps(rows, indent=2, default=float))
        return 0
    print(
        f"{'id':>5} {'model':<12} {'version':<8} {'suite':<20} {'outcome':<8} "
        f"{'probes':>6} {'accuracy':>8} {'regr':>5}"
    )
    for r in records:
        acc = "" if r.accuracy is None else f"{r.accuracy:.4f}"
        regression = "" if r.regression is None else ("yes" if r.regression else "no")
        print(
            f"{r.id:>5} {r.model:<12} {r.version:<8} {r.suite:<20} {r.outcome:<8} "
            f"{r.probes:>6} {acc:>8} {regression:>5}"
        )
    return 0
