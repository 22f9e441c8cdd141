"""Renders the README's Performance tables (and detectors/README.md's figures) from the JSON
the benchmarks wrote to benchmarks/results/, so a table cannot drift from its run.

    python scripts/benchmark_tables.py            # rewrite the generated blocks
    python scripts/benchmark_tables.py --check    # exit 1 if a block differs from the JSON
    python scripts/benchmark_tables.py --run data-plane   # rerun, then rewrite
    python scripts/benchmark_tables.py --run ood --run failing_loudly

A generated block sits between `<!-- benchmark-table: NAME -->` and
`<!-- /benchmark-table: NAME -->`; everything between the two lines is replaced. `--run`
takes a benchmark name (`python -m benchmarks.NAME --json benchmarks/results/NAME.json`)
or a group (`data-plane`: proxy_overhead and serve_profile; `all`); `--python` names the
interpreter for the alibi-detect comparisons (detectors_speed, detectors_calibration).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCUMENTS = (ROOT / "README.md", ROOT / "detectors" / "README.md")
GROUPS = {
    "data-plane": ("proxy_overhead", "serve_profile"),
    "all": ("proxy_overhead", "serve_profile", "monitor_throughput", "failing_loudly", "ood",
            "probes", "detectors_speed", "detectors_calibration", "embedder"),
}
NEEDS_ALIBI = ("detectors_speed", "detectors_calibration")
BLOCK = re.compile(
    r"(<!-- benchmark-table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)"
    r"(<!-- /benchmark-table: (?P=name) -->)",
    re.DOTALL,
)

Payload = dict[str, Any]


# --------------------------------------------------------------------------- formatting
def num(value: Any, digits: int = 2) -> str:
    """A figure as the tables print it: fixed decimals, `n/a` for NaN or missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value and abs(value) < 10.0 ** -digits:
        return f"{value:.1e}"  # a tiny figure (a difference, a p-value) would print as 0
    return f"{value:,.{digits}f}"


def run_line(payload: Payload, what: str) -> str:
    """Which benchmark, mode, commit and machine a block's figures come from."""
    machine = payload.get("machine", {})
    load = machine.get("load_average")
    load_text = f", load average {load[0]:.1f} at the end" if load else ""
    mode = "quick" if payload.get("quick") else "full"
    commit = payload.get("commit") or "unknown commit"
    return (f"`python -m benchmarks.{payload['benchmark']}` ({mode} run at {commit}; "
            f"{what}; {machine.get('cpu_count', '?')} cores{load_text})")


def targets_table(payload: Payload) -> list[str]:
    lines = ["| target | value | limit | |", "|---|---|---|---|"]
    for t in payload["targets"]:
        if "error" in t:
            value, verdict = f"not measured: {t['error']}", "**missed**"
        else:
            value, verdict = num(t["value"], 3), "met" if t["met"] else "**missed**"
        lines.append(f"| {t['name']} | {value} | {t['comparison']} {num(t['limit'], 3)} "
                     f"| {verdict} |")
    return lines


def missing(name: str) -> list[str]:
    return [f"No committed run: `python scripts/benchmark_tables.py --run {name}` makes one."]


# --------------------------------------------------------------------------- blocks
def data_plane(p: Payload) -> list[str]:
    r = p["results"]
    names = {
        "passthrough": "bare grpc.aio passthrough (terminates gRPC)",
        "serve_off": "`outrider serve`, monitoring off (sampling 0)",
        "serve_default": "`outrider serve`, default budget (10 %, <= 50 samples/s)",
        "serve_full": "`outrider serve`, 100 % sampled (budget raised)",
        "standin_decodingsink": "extra: relay + decoding stand-in (no detectors; not serve)",
    }
    out = [run_line(p, f"{r['rounds']} alternating rounds, medians; tritonclient stubs on "
                       "grpc.aio, 4 KB requests of held-out digits"), ""]
    out += ["| 4 KB requests | model server: added p50, c=1 | throughput vs direct, c=8 "
            "| sidecar CPU per request, c=8 | echo server: added p50 | throughput vs direct "
            "| sidecar CPU per request |", "|---|---|---|---|---|---|---|"]
    for name, label in names.items():
        cells = []
        for upstream in ("model", "echo"):
            ratios, med = r[upstream]["ratios"][name], r[upstream]["medians"][name]
            cells += [f"{num(ratios['4KB_c1_added_p50_ms'])} ms",
                      f"{num(ratios['4KB_c8_throughput_vs_direct'])}x",
                      f"{num(med['4KB_c8_cpu_us_per_req'], 0)} µs"]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    direct = {u: r[u]["medians"]["direct"] for u in ("model", "echo")}
    out += ["", f"Direct calls: p50 {num(direct['model']['4KB_c1_p50_ms'])} ms and "
                f"{num(direct['model']['4KB_c8_rps'], 0)} requests/s at c=8 to the model server "
                f"(which itself spends {num(direct['model']['4KB_c8_cpu_us_per_req'], 0)} µs of "
                f"CPU per request), {num(direct['echo']['4KB_c1_p50_ms'])} ms and "
                f"{num(direct['echo']['4KB_c8_rps'], 0)} requests/s to the echo server. Envoy's "
                f"published figure: {num(r['envoy_cpu_us_per_request'], 0)} µs of CPU per "
                f"request ({r['envoy_source']})."]
    soak = r["rss_soak"]
    out += ["", f"RSS soak: `{soak['contender']}` in front of the {soak['upstream']} server, "
                f"{soak['requests']:,} requests: {num(soak['rss_start_mb'], 0)} MB at the "
                f"start, {num(soak['rss_half_mb'], 0)} MB halfway, {num(soak['rss_end_mb'], 0)} "
                "MB at the end.", ""]
    return out + targets_table(p)


def serve_profile(p: Payload) -> list[str]:
    r = p["results"]
    settings = [s for s in ("serve_off", "serve_default", "serve_full") if s in r]
    out = [run_line(p, f"py-spy at {r['sampling_hz']} Hz, {r['seconds_per_setting']:.0f} s of "
                       f"c={r['concurrency']} {r['payload']} load per setting against the "
                       f"{r['upstream']} server"), ""]
    out.append("| where the CPU goes (µs per request) | " + " | ".join(settings) + " |")
    out.append("|---|" + "---|" * len(settings))
    buckets: list[str] = []
    for s in settings:
        for name in r[s]["buckets"]:
            if name not in buckets:
                buckets.append(name)
    for name in buckets:
        cells = []
        for s in settings:
            b = r[s]["buckets"].get(name)
            cells.append(f"{num(b['us_per_request'], 0)} ({num(100 * b['share'], 0)} %)"
                         if b else "-")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out.append("| **total (measured from /proc)** | " + " | ".join(
        f"**{num(r[s]['cpu_us_per_request'], 0)}** at {num(r[s]['rps'], 0)} req/s"
        for s in settings) + " |")
    return out


def monitor_pipeline(p: Payload) -> list[str]:
    r = p["results"]
    t = r["throughput_obs_per_s"]["median"]
    lat, lat_mmd, flood = (r["latency_1000_rps_ks"], r["latency_1000_rps_ks_mmd_every_500"],
                           r["flood"])
    out = [run_line(p, "pinned to one core, medians over alternating rounds"), "",
           "| measure | value |", "|---|---|",
           f"| sampled requests/s, decode only | {num(t['decode_only'], 0)} |",
           f"| sampled requests/s, decode + KS (d = 32) | {num(t['ks'], 0)} |",
           f"| sampled requests/s, decode + KS + MMD | {num(t['ks_mmd'], 0)} |",
           f"| request -> /metrics p99 at 1,000 req/s, KS | {num(lat['p99_s'])} s |",
           f"| same, KS + MMD testing every 500 rows (KS fed every row) | "
           f"{num(lat_mmd['p99_s'])} s |",
           f"| flood: offered / accepted per s | {num(flood['offered_per_s'], 0)} / "
           f"{num(flood['accepted_per_s'], 0)} |",
           f"| flood: queue empty after | {num(flood['queue_empty_after_s'])} s |",
           f"| RSS | {num(r['rss_mb']['current'], 0)} MB |", ""]
    return out + targets_table(p)


def failing_loudly(p: Payload) -> list[str]:
    r = p["results"]
    sizes = [n for n in (10, 100, 1000) if str(n) in r["methods"][r["chosen_method"]]["accuracy"]]
    chosen_on, scored_on = r["chosen_on"], r["scored_on"]
    out = [run_line(p, f"held-out split: MNIST 5k shuffle seed {scored_on['mnist_split_seed']}, "
                       f"{scored_on['runs_per_shift']} runs per shift, "
                       f"{scored_on['runs_without_shift']} without shift"), "",
           f"Method chosen on the validation split (shuffle seed "
           f"{chosen_on['mnist_split_seed']}, {chosen_on['runs_per_shift']} runs per shift) "
           f"by the rule fixed beforehand ({r['selection_rule']}): **{r['chosen_method']}**.",
           "", "| held-out accuracy | " + " | ".join(f"n = {n}" for n in sizes)
           + " | false-positive rate |", "|---|" + "---|" * (len(sizes) + 1)]
    paper = r["paper_bbsds"]
    out.append("| paper's BBSDs (Rabanser et al. 2019, Table 1a) | "
               + " | ".join(num(paper.get(str(n))) for n in sizes) + " | |")
    for name, row in r["methods"].items():
        mark = " (chosen)" if name == r["chosen_method"] else ""
        out.append(f"| {name}{mark} | " + " | ".join(num(row["accuracy"][str(n)]) for n in sizes)
                   + f" | {num(row['fpr_overall'], 3)} |")
    return [*out, "", *targets_table(p)]


def ood(p: Payload) -> list[str]:
    r = p["results"]
    sets = [*r["near_sets"], *r["far_sets"]]
    out = [run_line(p, f"{len(r['seeds'])} seeds, medians"), "",
           f"Chosen on validation data ({', '.join(r['chosen_on']['ood_sets'])}; "
           f"{r['chosen_on']['id_rows']}): kNN k = {r['chosen_k']}, scorer "
           f"**{r['chosen_scorer']}**. Scored on {r['scored_on']['id_rows']} and the sets below "
           "(near: " + ", ".join(r["near_sets"]) + ").", "",
           "| AUROC | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    for name, row in r["table"].items():
        mark = " (chosen)" if name == r["chosen_scorer"] else ""
        out.append(f"| {name}{mark} | " + " | ".join(num(row[s]["auroc"]) for s in sets) + " |")
    return [*out, "", *targets_table(p)]


def probes(p: Payload) -> list[str]:
    r = p["results"]
    out = [run_line(p, "Square Attack ours vs ART on the same onnxruntime session"), ""]
    attack = r["attack"]
    if "error" in attack:
        out.append(f"Square Attack comparison not run: {attack['error']}.")
    else:
        for norm in ("linf", "l2"):
            a = attack[norm]
            out.append(f"- {norm}: success ours {num(a['ours']['success'])} vs ART "
                       f"{num(a['art']['success'])}, wall time ours / ART "
                       f"{num(a['wall_ratio_ours_over_art'])}")
    p99 = r["p99"]
    out += [f"- production p99 without / with a probe run: {num(p99['p99_without_ms'])} / "
            f"{num(p99['p99_with_ms'])} ms", ""]
    return out + targets_table(p)


def detectors_speed(p: Payload) -> list[str]:
    r = p["results"]
    out = [run_line(p, "one thread per contender; alibi-detect time / ours")]
    if r.get("alibi_skipped"):
        out += ["", f"alibi-detect was not importable in this run ({r['alibi_skipped']}): "
                    "every comparison below is a miss."]
    return [*out, "", *targets_table(p)]


def detectors_calibration(p: Payload) -> list[str]:
    r = p["results"]
    out = [run_line(p, f"ERT {r['settings']['ert']}, {r['settings']['delay_runs']} delay runs"),
           "", "| detector | no-drift mean run length | mean delay, mean shift | "
           "mean delay, covariance shift |", "|---|---|---|---|"]
    for name, d in r["detectors"].items():
        out.append(f"| {name} | {num(d['run_length']['mean_run_length'], 0)} | "
                   f"{num(d['mean_shift'].get('mean_delay'), 1)} | "
                   f"{num(d['covariance_shift'].get('mean_delay'), 1)} |")
    return [*out, "", *targets_table(p)]


def embedder(p: Payload) -> list[str]:
    r = p["results"]
    out = [run_line(p, f"{r['texts']} texts of {num(r['tokens']['median'], 0)} tokens median, "
                       f"{r['rounds']} alternating rounds, CPU time medians"), "",
           "| texts per worker cycle | every text padded to 128 | as the monitor calls it "
           "| ratio |", "|---|---|---|---|"]
    for key in ("1_row_per_call", "10_per_s", "50_per_s"):
        row = r[key]
        out.append(f"| {row['rows_per_call']} | {num(row['today_cpu_ms_per_row'])} ms "
                   f"| {num(row['outrider_cpu_ms_per_row'])} ms | {num(row['ratio_median'], 3)} |")
    build = r["reference_build"]
    out += ["", f"Reference build of {build['texts']:,} texts from a CSV column: peak RSS "
                f"{num(build['peak_rss_mb'], 0)} MB, {num(build['rows_per_second'], 0)} texts/s.",
            ""]
    return out + targets_table(p)


def detector_costs(p: Payload) -> list[str]:
    """detectors/README.md: our own detectors' measured costs (no comparison needed)."""
    r, s = p["results"], p["results"]["settings"]
    lines = [f"Measured by {run_line(p, 'medians, one thread')}:", ""]
    if "asymp_test_s" in r.get("ks", {}):
        ks = s["ks"]
        lines.append(f"- `KSDrift(method=\"asymp\")`: {num(r['ks']['asymp_test_s'] * 1e3, 1)} ms "
                     f"per test of {ks['n_test']} x {ks['d']} against {ks['n_ref']} rows")
    if "ours_calibration_s" in r.get("cvm_online", {}):
        c = s["cvm"]
        lines.append(f"- `CVMOnline`: fit {num(r['cvm_online']['ours_calibration_s'], 2)} s "
                     f"({c['n_ref']} x {c['d']}, ERT {c['ert']}, {c['n_bootstraps']} bootstraps);"
                     f" {num(r['cvm_online']['ours_update_s'] * 1e6, 0)} µs per one-row update")
    if "ours_calibration_s" in r.get("mmd_online", {}):
        m = s["mmd_online"]
        lines.append(f"- `RffMmdOnline`: fit {num(r['mmd_online']['ours_calibration_s'], 2)} s "
                     f"({m['n_ref']} x {m['d']}, ERT {m['ert']}, {m['n_bootstraps']} "
                     f"bootstraps); {num(r['mmd_online']['ours_update_s'] * 1e6, 0)} µs per "
                     "one-row update")
    if "ours_test_s" in r.get("mmd", {}):
        m = s["mmd"]
        lines.append(f"- `MMDDrift`: {num(r['mmd']['ours_test_s'], 3)} s per test of "
                     f"{m['n_test']} against {m['n_ref']} rows x {m['d']}, "
                     f"{m['n_permutations']} permutations")
    return lines


#: block name -> (benchmark whose JSON it reads, renderer)
RENDERERS: dict[str, tuple[str, Callable[[Payload], list[str]]]] = {
    "data-plane": ("proxy_overhead", data_plane),
    "serve-profile": ("serve_profile", serve_profile),
    "monitor-pipeline": ("monitor_throughput", monitor_pipeline),
    "failing-loudly": ("failing_loudly", failing_loudly),
    "ood": ("ood", ood),
    "probes": ("probes", probes),
    "detectors-speed": ("detectors_speed", detectors_speed),
    "detectors-calibration": ("detectors_calibration", detectors_calibration),
    "detector-costs": ("detectors_speed", detector_costs),
    "embedder": ("embedder", embedder),
}


def render(name: str, results: Path = RESULTS) -> str:
    """The Markdown of one block, from benchmarks/results/<benchmark>.json."""
    benchmark, renderer = RENDERERS[name]
    path = results / f"{benchmark}.json"
    lines = renderer(json.loads(path.read_text())) if path.exists() else missing(benchmark)
    return "\n".join(lines) + "\n"


def refresh(text: str, results: Path = RESULTS) -> str:
    """`text` with every generated block re-rendered from the JSON."""

    def replace(match: re.Match[str]) -> str:
        return match.group(1) + render(match.group("name"), results) + match.group(4)

    return BLOCK.sub(replace, text)


def run_benchmarks(names: list[str], python: str, alibi_python: str | None) -> None:
    for name in names:
        for benchmark in GROUPS.get(name, (name,)):
            exe = alibi_python if benchmark in NEEDS_ALIBI and alibi_python else python
            out = RESULTS / f"{benchmark}.json"
            print(f"running {benchmark} -> {out.relative_to(ROOT)}", flush=True)
            subprocess.run([exe, "-m", f"benchmarks.{benchmark}", "--json", str(out)],
                           cwd=ROOT, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--check", action="store_true", help="exit 1 if a block is stale")
    parser.add_argument("--run", action="append", default=[],
                        help="rerun a benchmark or group first (data-plane, all, or a name)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for --run")
    parser.add_argument("--alibi-python", default=None,
                        help="interpreter with alibi-detect, for detectors_speed/calibration")
    args = parser.parse_args(argv)
    if args.run:
        run_benchmarks(args.run, args.python, args.alibi_python)
    stale = []
    for doc in DOCUMENTS:
        text = doc.read_text()
        fresh = refresh(text)
        if fresh != text:
            stale.append(doc.relative_to(ROOT))
            if not args.check:
                doc.write_text(fresh)
    if args.check and stale:
        print("stale: " + ", ".join(map(str, stale)) + ": run python scripts/benchmark_tables.py")
        return 1
    print(("rewrote: " + ", ".join(map(str, stale))) if stale else "all tables fresh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
