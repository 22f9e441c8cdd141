"""Calibration of the online detectors: no-drift run length vs ERT, and detection delay.

    python -m benchmarks.detectors_calibration [--quick] [--json PATH]

Every ERT-calibrated online detector (ours: RffMmdOnline, CVMOnline; alibi-detect's
MMDDriftOnline with the PyTorch backend and CVMDriftOnline, through
benchmarks.alibi_adapters) is fitted once on the same reference, at the same ERT, window
and number of bootstrap streams (`mmd_bootstraps`, `cvm_bootstraps`: the same for both
sides of a pair), then:

- run length with no drift: `runs` fresh N(0, I) streams, each fed until the first alarm;
  the mean must be within +-10 % of the ERT. Run length counts rows from the first row at
  which the detector can test (row 1 for the MMD detectors; row `window` for the CVM ones,
  whose ERT both libraries define from the point the window is full).
- detection delay: streams that change at row `t0` (mean shift: +`mean_shift` in every
  dimension; covariance shift: every standard deviation x `scale_shift`); delay is the
  number of rows from the change to the alarm, over runs without a false alarm before t0.
- an alibi-detect detector whose mean run length misses the ERT by more than 10 % is
  rebuilt with its ERT scaled so that its run length matches ours, and measured again:
  delays compared at an equal false-alarm rate (context; the targets stay at equal ERT).

Run in /work/venv-alibi for the alibi-detect side (see benchmarks/README.md); without it
ours still run and the comparison says alibi-detect was skipped.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import detectors
from benchmarks.alibi_import import alibi_cd, single_threaded
from benchmarks.harness import (
    Target,
    describe_error,
    median,
    not_measured,
    parse_args,
    percentile,
    report,
)
from detectors.base import DriftDetector

RowSource = Callable[[np.random.Generator, int, int], np.ndarray]


def _settings(quick: bool) -> dict[str, Any]:
    common = {"d": 4, "n_ref": 1000, "window": 20, "chunk": 20, "mean_shift": 0.5,
              "scale_shift": 1.5, "t0": 100}
    if quick:
        return {**common, "ert": 100, "t0": 50, "runs_ours": 100, "runs_alibi": 30,
                "delay_runs": 15, "cvm_bootstraps": 4000, "mmd_bootstraps": 500}
    # Both sides of a pair calibrate from the same number of bootstrap streams.
    return {**common, "ert": 500, "runs_ours": 500, "runs_alibi": 200, "delay_runs": 200,
            "cvm_bootstraps": 10000, "mmd_bootstraps": 2000}


def no_drift(d: int) -> RowSource:
    def rows(rng: np.random.Generator, start: int, n: int) -> np.ndarray:
        return rng.normal(size=(n, d))

    return rows


def shifted(d: int, t0: int, loc: float, scale: float) -> RowSource:
    """N(0, I) before row t0, N(loc, scale^2 I) from row t0 on."""

    def rows(rng: np.random.Generator, start: int, n: int) -> np.ndarray:
        x = rng.normal(size=(n, d))
        after = np.arange(start, start + n) >= t0
        x[after] = x[after] * scale + loc
        return x

    return rows


def first_alarm(
    det: DriftDetector, source: RowSource, rng: np.random.Generator, cap: int, chunk: int
) -> int | None:
    """0-based index of the first alarm after a reset, or None if none within `cap` rows."""
    det.reset()
    fed = 0
    while fed < cap:
        det.update(source(rng, fed, chunk))
        fed += chunk
        if det.detection_index is not None:
            return det.detection_index
    return None


def run_lengths(
    det: DriftDetector, d: int, runs: int, cap: int, chunk: int, first_test_row: int, seed: int
) -> dict[str, float]:
    lengths: list[float] = []
    censored = 0
    start = time.perf_counter()
    for r in range(runs):
        idx = first_alarm(det, no_drift(d), np.random.default_rng([seed, r]), cap, chunk)
        if idx is None:
            censored += 1
            lengths.append(float(cap - first_test_row + 1))
        else:
            lengths.append(float(idx + 1 - (first_test_row - 1)))
    mean = float(np.mean(lengths))
    return {
        "runs": runs,
        "mean_run_length": mean,
        "median_run_length": median(lengths),
        "std_error": float(np.std(lengths, ddof=1) / np.sqrt(runs)),
        "censored_at_cap": censored,
        "wall_s": time.perf_counter() - start,
    }


def delays(
    det: DriftDetector, source: RowSource, runs: int, t0: int, cap: int, chunk: int, seed: int
) -> dict[str, float]:
    found: list[float] = []
    false_alarms = missed = 0
    for r in range(runs):
        idx = first_alarm(det, source, np.random.default_rng([seed, 7, r]), cap, chunk)
        if idx is None:
            missed += 1
        elif idx < t0:
            false_alarms += 1
        else:
            found.append(float(idx - t0 + 1))
    out: dict[str, float] = {"runs": runs, "false_alarms_before_change": false_alarms,
                             "missed": missed}
    if found:
        out.update(mean_delay=float(np.mean(found)), median_delay=median(found),
                   p90_delay=percentile(found, 90))
    return out


def alibi_detector(kind: str, cfg: dict[str, Any], ref: np.ndarray, ert: float) -> Any:
    from benchmarks.alibi_adapters import AlibiOnlineDetector

    bootstraps = cfg["mmd_bootstraps" if kind == "MMDDriftOnline" else "cvm_bootstraps"]
    return AlibiOnlineDetector(kind, ref, ert=ert, window_size=cfg["window"], seed=0,
                               n_bootstraps=bootstraps)


def build_detectors(
    cfg: dict[str, Any], ref: np.ndarray, cd: Any
) -> tuple[dict[str, tuple[Any, int]], dict[str, str]]:
    """name -> (fitted detector, first row (1-based) at which it can test); name -> error
    for those that could not be built."""
    w, ert = cfg["window"], cfg["ert"]
    built: dict[str, tuple[Any, int]] = {}
    failed: dict[str, str] = {}
    makers: dict[str, tuple[Callable[[], Any], int]] = {
        "ours RffMmdOnline": (
            lambda: detectors.RffMmdOnline(ref, ert=ert, window_size=w, seed=0,
                                           n_bootstraps=cfg["mmd_bootstraps"]), 1
        ),
        "ours CVMOnline": (lambda: detectors.CVMOnline(ref, ert=ert, window_size=w, seed=0,
                                                       n_bootstraps=cfg["cvm_bootstraps"]), w),
    }
    if cd is not None:
        makers["alibi MMDDriftOnline"] = (
            lambda: alibi_detector("MMDDriftOnline", cfg, ref, ert), 1
        )
        makers["alibi CVMDriftOnline"] = (
            lambda: alibi_detector("CVMDriftOnline", cfg, ref, ert), w
        )
    for name, (make, first_row) in makers.items():
        start = time.perf_counter()
        try:
            det = make()
        except (AttributeError, TypeError) as exc:
            failed[name] = describe_error(exc)
            print(f"  {name}: failed ({failed[name]})")
            continue
        print(f"  {name}: calibrated in {time.perf_counter() - start:.3g} s")
        built[name] = (det, first_row)
    return built, failed


PAIRS = (("ours RffMmdOnline", "alibi MMDDriftOnline"), ("ours CVMOnline", "alibi CVMDriftOnline"))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0] if __doc__ else "", argv)
    warnings.filterwarnings("ignore")
    threads = single_threaded()
    cd, skipped = alibi_cd()
    cfg = _settings(args.quick)
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(cfg["n_ref"], cfg["d"]))
    print(f"settings: {cfg}")
    built, failed = build_detectors(cfg, ref, cd)
    if skipped is not None:
        failed.update({f"alibi {kind}": skipped for kind in ("MMDDriftOnline", "CVMDriftOnline")})
    results: dict[str, Any] = {"settings": cfg, "alibi_skipped": skipped, "detectors": {},
                               "failed": failed}
    targets: list[Target] = []
    ert, cap, chunk, t0 = cfg["ert"], 10 * cfg["ert"], cfg["chunk"], cfg["t0"]
    streams = {
        "mean_shift": shifted(cfg["d"], t0, cfg["mean_shift"], 1.0),
        "covariance_shift": shifted(cfg["d"], t0, 0.0, cfg["scale_shift"]),
    }
    def measure(name: str, det: DriftDetector, first_row: int, det_ert: float) -> dict[str, Any]:
        runs = cfg["runs_ours"] if name.startswith("ours") else cfg["runs_alibi"]
        rl = run_lengths(det, cfg["d"], runs, cap, chunk, first_row, seed=1)
        print(f"\n{name}: no drift, ERT {det_ert:.0f}: mean run length "
              f"{rl['mean_run_length']:.1f} (+-{rl['std_error']:.1f} s.e., median "
              f"{rl['median_run_length']:.0f}, {rl['runs']} runs, {rl['censored_at_cap']} "
              f"censored, {rl['wall_s']:.1f} s)")
        entry: dict[str, Any] = {"ert": det_ert, "run_length": rl}
        for stream_name, source in streams.items():
            dl = delays(det, source, cfg["delay_runs"], t0, t0 + 5 * ert, chunk, seed=2)
            entry[stream_name] = dl
            print(f"  {stream_name}: mean delay {dl.get('mean_delay', float('nan')):.1f}, "
                  f"median {dl.get('median_delay', float('nan')):.1f} rows "
                  f"({dl['false_alarms_before_change']} false alarms before the change, "
                  f"{dl['missed']} missed)")
        return entry

    for name, (det, first_row) in built.items():
        results["detectors"][name] = measure(name, det, first_row, ert)
    for name in ("ours RffMmdOnline", "ours CVMOnline"):
        for limit, comparison in ((0.9, ">="), (1.1, "<=")):
            label = f"{name}: no-drift mean run length / ERT"
            if name in failed:
                targets.append(not_measured(label, limit, comparison, failed[name]))
            else:
                rl = results["detectors"][name]["run_length"]
                targets.append(Target(label, rl["mean_run_length"] / ert, limit, comparison))
    for ours, theirs in PAIRS:
        if ours not in results["detectors"] or theirs not in results["detectors"]:
            why = failed.get(ours) or failed.get(theirs) or "not measured"
            targets += [not_measured(f"{ours} mean delay ({s}) <= {theirs}'s (rows)", float("nan"),
                                     "<=", why) for s in streams]
            continue
        own = results["detectors"][ours]["run_length"]["mean_run_length"]
        other = results["detectors"][theirs]["run_length"]["mean_run_length"]
        if abs(other / ert - 1.0) > 0.1:
            matched_ert = ert * own / other
            det = alibi_detector(theirs.split()[-1], cfg, ref, matched_ert)
            label = f"{theirs} (ERT re-set to {matched_ert:.0f} to match our run length)"
            results["detectors"][label] = measure(label, det, built[theirs][1], matched_ert)
        for stream_name in streams:
            a = results["detectors"][ours][stream_name].get("mean_delay")
            b = results["detectors"][theirs][stream_name].get("mean_delay")
            label = f"{ours} mean delay ({stream_name}) <= {theirs}'s (rows)"
            if a is not None and b is not None:
                targets.append(Target(label, a, b, "<="))
            else:
                targets.append(not_measured(label, float("nan"), "<=",
                                            "no detection without a false alarm in any run"))
    del threads
    return report("detectors_calibration", results, targets, args.json, quick=args.quick)


if __name__ == "__main__":
    raise SystemExit(main())
