"""Model performance: realized metrics vs scikit-learn, label-free estimates vs NannyML's CBPE.

    python -m benchmarks.performance [--quick] [--json PATH] [--rounds N]

NannyML lives in its own virtualenv (see benchmarks/README.md); run the benchmark with that
interpreter for the comparison. Without NannyML everything of ours still runs and every
target that compares with CBPE is reported as missed, with the reason.

1. Realized metrics (`detectors.performance_metrics`) against scikit-learn on random inputs
   (binary and 3/5/10 classes, 10 to 10,000 rows): accuracy, macro F1, ROC AUC, Brier
   score and log loss, max |difference| <= 1e-9; ECE and adaptive ECE against a direct
   loop over the bins.
2. Label-free estimation on the shifted chunks of `benchmarks.performance_data` (MNIST 5k
   and scikit-learn digits with the Failing Loudly shifts through the benchmark MLP, a
   synthetic task with covariate shift and one with concept shift): mean absolute error of
   the estimated accuracy and ROC AUC against the realized ones, for our estimator, NannyML's
   CBPE (isotonic calibration, its default) and the naive average-confidence estimate, on
   the same chunks. Our estimator's settings are chosen on the validation chunks (disjoint
   rows and shift settings) among a fixed list of candidates: the one whose worst ratio of
   MAE to CBPE's over the four tasks is lowest (MAE = mean of the accuracy and ROC AUC
   MAEs; without NannyML, our own isotonic CBPE stands in for it). Then fit + estimate time
   of ours against NannyML's, alternating rounds, medians.
3. The degradation test (`PerformanceDegradationTest`) on no-change streams: the fraction
   of tests that signal (false alarms) at alpha = 0.05, for 0/1 errors and log losses,
   beside its detection rate when the error rate rises by half.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks.alibi_import import single_threaded
from benchmarks.harness import Target, alternating_rounds, median, parse_args, report
from benchmarks.nannyml_import import nannyml_module
from benchmarks.performance_data import TASKS, Chunk, Task
from detectors.classifier_outputs import as_probabilities
from detectors.performance_degradation import PerformanceDegradationTest
from detectors.performance_estimation import (
    ConfidenceBasedEstimator,
    PerformanceEstimator,
    ThresholdedConfidenceEstimator,
)
from detectors.performance_metrics import (
    accuracy,
    adaptive_calibration_error,
    brier_score,
    expected_calibration_error,
    log_loss,
    macro_f1,
    per_sample_loss,
    roc_auc,
)

EQUALITY_TOLERANCE = 1e-9
ALPHA = 0.05
SHIFT_SETS = ("covariate", "concept")

# Our candidates: name -> estimator with those settings (seeded; bands do not change MAEs).
CANDIDATES: dict[str, Callable[[], PerformanceEstimator]] = {
    "cbpe isotonic": lambda: ConfidenceBasedEstimator("isotonic", seed=0),
    "cbpe histogram 20": lambda: ConfidenceBasedEstimator("histogram", seed=0),
    "cbpe histogram 10": lambda: ConfidenceBasedEstimator("histogram", n_bins=10, seed=0),
    "cbpe temperature": lambda: ConfidenceBasedEstimator("temperature", seed=0),
    "cbpe auto": lambda: ConfidenceBasedEstimator("auto", seed=0),
    "cbpe isotonic top-label": lambda: ConfidenceBasedEstimator(
        "isotonic", multiclass="top_label", seed=0
    ),
    "atc negative entropy, isotonic": lambda: ThresholdedConfidenceEstimator(seed=0),
    "atc negative entropy, histogram 20": lambda: ThresholdedConfidenceEstimator(
        calibration="histogram", seed=0
    ),
    "atc negative entropy, temperature": lambda: ThresholdedConfidenceEstimator(
        calibration="temperature", seed=0
    ),
    "atc negative entropy, auto": lambda: ThresholdedConfidenceEstimator(
        calibration="auto", seed=0
    ),
    "atc max confidence, temperature": lambda: ThresholdedConfidenceEstimator(
        score="max_confidence", calibration="temperature", seed=0
    ),
}
NAIVE = "naive average confidence"


# -- 1. realized metrics against scikit-learn ---------------------------------------------------


def ece_direct(probabilities: np.ndarray, labels: np.ndarray, n_bins: int, adaptive: bool) -> float:
    """Top-label ECE by an explicit loop over the bins (the reference for ours)."""
    p = as_probabilities(probabilities)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == labels).astype(float)
    n = len(labels)
    total = 0.0
    if adaptive:
        order = np.argsort(conf, kind="stable")
        for b in range(n_bins):
            idx = order[(b * n) // n_bins : ((b + 1) * n) // n_bins]
            total += abs(float(correct[idx].sum() - conf[idx].sum()))
        return total / n
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for m in range(n_bins):
        lo, hi = edges[m], edges[m + 1]
        inside = (conf > lo) & (conf <= hi) if m else (conf >= lo) & (conf <= hi)
        total += abs(float(correct[inside].sum() - conf[inside].sum()))
    return total / n


def realized_equality(quick: bool) -> tuple[dict[str, Any], list[Target]]:
    from sklearn import metrics as skm

    sizes = (20, 200, 2000) if quick else (10, 100, 1000, 10000)
    class_counts = (2, 3, 10) if quick else (2, 3, 5, 10)
    seeds = range(3 if quick else 5)
    worst: dict[str, float] = {}
    cases = 0
    for k in class_counts:
        for n in sizes:
            if n < 2 * k:
                continue
            for seed in seeds:
                rng = np.random.default_rng([seed, k, n])
                p2 = rng.dirichlet(np.full(k, 0.5), size=n)
                y = rng.integers(0, k, size=n)
                y[:k] = np.arange(k)  # every class present, as scikit-learn's OvR AUC needs
                p = p2[:, 1] if k == 2 else p2
                pred = p2.argmax(axis=1)
                labels = list(range(k))
                pairs = {
                    "accuracy": (accuracy(p, y).value, skm.accuracy_score(y, pred)),
                    "macro_f1": (
                        macro_f1(p, y, n_bootstrap=1).value,
                        skm.f1_score(y, pred, average="macro"),
                    ),
                    "roc_auc": (
                        roc_auc(p, y, n_bootstrap=1).value,
                        skm.roc_auc_score(y, p, multi_class="ovr", labels=labels)
                        if k > 2
                        else skm.roc_auc_score(y, p),
                    ),
                    "brier": (
                        brier_score(p, y).value,
                        skm.brier_score_loss(y, p, labels=labels),
                    ),
                    "log_loss": (log_loss(p, y).value, skm.log_loss(y, p2, labels=labels)),
                    "ece_vs_direct_loop": (
                        expected_calibration_error(p, y, n_bootstrap=1).value,
                        ece_direct(p, y, 15, adaptive=False),
                    ),
                    "adaptive_ece_vs_direct_loop": (
                        adaptive_calibration_error(p, y, n_bootstrap=1).value,
                        ece_direct(p, y, 15, adaptive=True),
                    ),
                }
                cases += 1
                for name, (ours, theirs) in pairs.items():
                    worst[name] = max(worst.get(name, 0.0), abs(float(ours) - float(theirs)))
    print(f"\nRealized metrics: max |ours - reference| over {cases} random cases")
    for name, diff in worst.items():
        print(f"  {name:30s} {diff:.3g}")
    targets = [
        Target(
            f"realized {name}: max |ours - "
            f"{'direct loop' if name.endswith('loop') else 'scikit-learn'}|",
            diff,
            EQUALITY_TOLERANCE,
            "<=",
        )
        for name, diff in worst.items()
    ]
    return {"cases": cases, "max_abs_diff": worst, "tolerance": EQUALITY_TOLERANCE}, targets


# -- 2. label-free estimation -------------------------------------------------------------------


def _realized(chunks: list[Chunk]) -> np.ndarray:
    return np.array(
        [
            [
                accuracy(c.probabilities, c.labels).value,
                roc_auc(c.probabilities, c.labels, n_bootstrap=1).value,
            ]
            for c in chunks
        ]
    )


def _ours(make: Callable[[], PerformanceEstimator], task: Task, chunks: list[Chunk]) -> np.ndarray:
    est = make().fit(task.reference_probabilities, task.reference_labels)
    out = []
    for c in chunks:
        m = est.estimate(c.probabilities)
        out.append([m["accuracy"].value, m["roc_auc"].value])
    return np.array(out)


def _frame(pd: Any, probs: np.ndarray, labels: np.ndarray | None = None) -> Any:
    if probs.ndim == 1:
        data: dict[str, Any] = {"p": probs, "y_pred": (probs > 0.5).astype(int)}
    else:
        data = {f"p{c}": probs[:, c] for c in range(probs.shape[1])}
        data["y_pred"] = probs.argmax(axis=1)
    if labels is not None:
        data["y_true"] = labels
    return pd.DataFrame(data)


def _cbpe(nml: Any, task: Task, chunks: list[Chunk]) -> np.ndarray:
    """NannyML CBPE (isotonic, its default) fitted on the reference, one estimate per chunk."""
    import pandas as pd

    ref = task.reference_probabilities
    binary = ref.ndim == 1
    size = len(chunks[0].labels)
    if any(len(c.labels) != size for c in chunks):
        raise ValueError("CBPE chunks by size: every chunk must have the same number of rows")
    est = nml.CBPE(
        problem_type="classification_binary" if binary else "classification_multiclass",
        y_pred_proba="p" if binary else {c: f"p{c}" for c in range(ref.shape[1])},
        y_pred="y_pred",
        y_true="y_true",
        metrics=["roc_auc", "accuracy"],
        chunk_size=size,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(_frame(pd, ref, task.reference_labels))
        analysis = pd.concat([_frame(pd, c.probabilities) for c in chunks], ignore_index=True)
        res = est.estimate(analysis).filter(period="analysis").to_df()
    out = np.stack(
        [res[("accuracy", "value")].to_numpy(float), res[("roc_auc", "value")].to_numpy(float)],
        axis=1,
    )
    if out.shape[0] != len(chunks):
        raise RuntimeError(f"CBPE returned {out.shape[0]} chunks for {len(chunks)}")
    return out


def _mae(estimates: np.ndarray, realized: np.ndarray) -> dict[str, float]:
    err = np.abs(estimates - realized)
    acc = float(np.nanmean(err[:, 0]))
    auc = float(np.nanmean(err[:, 1]))
    return {"accuracy": acc, "roc_auc": auc, "mean": (acc + auc) / 2}


def _per_shift(chunks: list[Chunk], estimates: np.ndarray, realized: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for shift in dict.fromkeys(c.shift for c in chunks):
        rows = [i for i, c in enumerate(chunks) if c.shift == shift]
        out[shift] = {
            "realized_accuracy": float(np.mean(realized[rows, 0])),
            "estimated_accuracy": float(np.mean(estimates[rows, 0])),
            "realized_roc_auc": float(np.nanmean(realized[rows, 1])),
            "estimated_roc_auc": float(np.nanmean(estimates[rows, 1])),
        }
    return out


def estimation(
    tasks: dict[str, Task], nml: Any, nml_reason: str | None, rounds: int
) -> tuple[dict[str, Any], list[Target]]:
    # choose our settings on the validation chunks
    validation: dict[str, dict[str, dict[str, float]]] = {}
    for name, task in tasks.items():
        real = _realized(task.validation)
        row = {
            cand: _mae(_ours(make, task, task.validation), real)
            for cand, make in CANDIDATES.items()
        }
        if nml is not None:
            row["nannyml cbpe"] = _mae(_cbpe(nml, task, task.validation), real)
        validation[name] = row
    yardstick = "nannyml cbpe" if nml is not None else "cbpe isotonic"
    worst_ratio = {
        cand: max(validation[t][cand]["mean"] / validation[t][yardstick]["mean"] for t in tasks)
        for cand in CANDIDATES
    }
    chosen = min(worst_ratio, key=lambda c: worst_ratio[c])
    print(
        f"\nValidation MAE (accuracy / ROC AUC); chosen: {chosen} "
        f"(lowest worst ratio to {yardstick})"
    )
    for cand in [*CANDIDATES, *(["nannyml cbpe"] if nml is not None else [])]:
        cells = "  ".join(
            f"{validation[t][cand]['accuracy']:.3f}/{validation[t][cand]['roc_auc']:.3f}"
            for t in tasks
        )
        ratio = f"  worst ratio {worst_ratio[cand]:.3f}" if cand in worst_ratio else ""
        print(f"  {cand:36s} {cells}{ratio}")

    # score the chosen settings, CBPE and the naive estimate on the scored chunks
    contenders: dict[str, Callable[[Task, list[Chunk]], np.ndarray]] = {
        f"ours ({chosen})": lambda t, c: _ours(CANDIDATES[chosen], t, c),
        NAIVE: lambda t, c: _ours(lambda: ConfidenceBasedEstimator("none", seed=0), t, c),
        "ours cbpe isotonic (NannyML's method)": lambda t, c: _ours(
            CANDIDATES["cbpe isotonic"], t, c
        ),
    }
    if nml is not None:
        contenders["nannyml cbpe"] = lambda t, c: _cbpe(nml, t, c)
    ours_key = f"ours ({chosen})"
    scored: dict[str, Any] = {}
    targets: list[Target] = []
    print("\nScored chunks: MAE of estimated accuracy / ROC AUC against realized")
    for name, task in tasks.items():
        real = _realized(task.scored)
        estimates = {who: fn(task, task.scored) for who, fn in contenders.items()}
        maes = {who: _mae(est, real) for who, est in estimates.items()}
        scored[name] = {
            "description": task.description,
            "chunks": len(task.scored),
            "chunk_rows": len(task.scored[0].labels),
            "mae": maes,
            "per_shift": {
                who: _per_shift(task.scored, est, real) for who, est in estimates.items()
            },
        }
        print(f"  {name} ({len(task.scored)} chunks of {len(task.scored[0].labels)})")
        for who, m in maes.items():
            print(f"    {who:42s} {m['accuracy']:.4f} / {m['roc_auc']:.4f}")
        strict = name in SHIFT_SETS
        for metric in ("accuracy", "roc_auc"):
            cmp = "<" if strict else "<="
            label = f"{name}: MAE of estimated {metric}, ours {cmp} NannyML CBPE's"
            if nml is None:
                targets.append(Target(f"{label} (missed: {nml_reason})", math.nan, math.nan, cmp))
            else:
                theirs = maes["nannyml cbpe"][metric]
                targets.append(Target(label, maes[ours_key][metric], theirs, cmp))

    # time: fit + estimate of every scored chunk, ours against NannyML's
    timing: dict[str, Any] = {}
    for name, task in tasks.items():
        fns: dict[str, Callable[[], float]] = {
            "ours": lambda t=task: _timed(lambda: _ours(CANDIDATES[chosen], t, t.scored))
        }
        if nml is not None:
            fns["nannyml"] = lambda t=task: _timed(lambda: _cbpe(nml, t, t.scored))
        runs = alternating_rounds(fns, rounds)
        timing[name] = {who: median(v) for who, v in runs.items()}
        if nml is not None:
            timing[name]["ratio_ours_to_nannyml"] = timing[name]["ours"] / timing[name]["nannyml"]
    print("\nFit + estimate of all scored chunks (median seconds, alternating rounds)")
    for name, t in timing.items():
        extra = (
            f"  nannyml {t['nannyml']:.3f} s  ratio {t['ratio_ours_to_nannyml']:.3f}"
            if "nannyml" in t
            else ""
        )
        print(f"  {name:10s} ours {t['ours']:.3f} s{extra}")
    for name, t in timing.items():
        label = f"{name}: fit + estimate time, ours / NannyML CBPE's"
        if nml is None:
            targets.append(Target(f"{label} (missed: {nml_reason})", math.nan, 0.1, "<="))
        else:
            targets.append(Target(label, t["ratio_ours_to_nannyml"], 0.1, "<="))
    results = {
        "candidates": list(CANDIDATES),
        "selection": {
            "criterion": "lowest worst-case ratio over tasks of validation MAE "
            "(mean of accuracy and ROC AUC MAEs) to the yardstick's",
            "yardstick": yardstick,
            "chunks": "validation chunks of every task (rows and shift settings disjoint "
            "from the scored chunks)",
            "validation_mae": validation,
            "worst_ratio": worst_ratio,
            "chosen": chosen,
        },
        "scored": scored,
        "timing_seconds": timing,
        "nannyml_absent": nml_reason,
    }
    return results, targets


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- 3. degradation test calibration ------------------------------------------------------------


def _degradation_rates(
    pool: np.ndarray, loss: str, window: int, runs: int, tests: int, worse: float | None
) -> float:
    """Fraction of tests that signal; `worse` scales the stream's 0/1 error rate (None: same)."""
    signalled = 0
    for r in range(runs):
        rng = np.random.default_rng([r, window, len(pool)])
        ref = rng.choice(pool, size=2000)
        det = PerformanceDegradationTest(ref, loss=loss, window_size=window, alpha=ALPHA)
        for _ in range(tests):
            stream = rng.choice(pool, size=window)
            if worse is not None:
                rate = float(pool.mean()) * worse
                stream = (rng.random(window) < rate).astype(float)
            signalled += int(det.update(stream).drift_detected)
    return signalled / (runs * tests)


def degradation(tasks: dict[str, Task], quick: bool) -> dict[str, Any]:
    runs, tests = (40, 5) if quick else (200, 10)
    windows = (50, 200, 1000)
    pools: dict[str, tuple[str, np.ndarray]] = {
        "bernoulli 0.02 errors": ("zero_one", (np.arange(1000) < 20).astype(float)),
        "bernoulli 0.1 errors": ("zero_one", (np.arange(1000) < 100).astype(float)),
        "bernoulli 0.3 errors": ("zero_one", (np.arange(1000) < 300).astype(float)),
    }
    for name in ("mnist", "covariate"):
        task = tasks.get(name)
        if task is None:
            continue
        unshifted = [c for c in task.validation + task.scored if c.shift in ("none", "none@0")]
        probs = np.concatenate(
            [task.reference_probabilities, *(c.probabilities for c in unshifted)]
        )
        labels = np.concatenate([task.reference_labels, *(c.labels for c in unshifted)])
        pools[f"{name} 0/1 errors"] = ("zero_one", per_sample_loss(probs, labels, "zero_one"))
        pools[f"{name} log loss"] = ("continuous", per_sample_loss(probs, labels, "log_loss"))
    out: dict[str, Any] = {"alpha": ALPHA, "runs": runs, "tests_per_run": tests, "rates": {}}
    print(
        f"\nDegradation test, alpha {ALPHA}: false-alarm rate per test with no change"
        " (detection rate when the error rate rises by half)"
    )
    for name, (loss, pool) in pools.items():
        row: dict[str, Any] = {"loss": loss}
        for w in windows:
            fpr = _degradation_rates(pool, loss, w, runs, tests, None)
            power = (
                _degradation_rates(pool, loss, w, runs, tests, 1.5) if loss == "zero_one" else None
            )
            row[str(w)] = {"false_alarm_rate": fpr, "detection_rate_error_x1.5": power}
        out["rates"][name] = row
        cells = "  ".join(
            f"w={w}: {row[str(w)]['false_alarm_rate']:.3f}"
            + (f" ({row[str(w)]['detection_rate_error_x1.5']:.2f})" if loss == "zero_one" else "")
            for w in windows
        )
        print(f"  {name:24s} {cells}")
    all_fpr = [
        v["false_alarm_rate"] for r in out["rates"].values() for k, v in r.items() if k != "loss"
    ]
    out["max_false_alarm_rate"] = max(all_fpr)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0] if __doc__ else "", argv)
    threads = single_threaded()
    quick = args.quick
    rounds = args.rounds or (2 if quick else 5)
    nml, nml_reason = nannyml_module()
    started = time.perf_counter()
    equality, targets = realized_equality(quick)
    runs = 1 if quick else 3
    tasks: dict[str, Task] = {}
    for name, make in TASKS.items():
        tasks[name] = make(runs)
        print(f"  task {name}: built ({time.perf_counter() - started:.0f} s)")
    est_results, est_targets = estimation(tasks, nml, nml_reason, rounds)
    targets += est_targets
    degr = degradation(tasks, quick)
    results = {
        "realized": equality,
        "estimation": est_results,
        "degradation": degr,
        "nannyml_version": getattr(nml, "__version__", None),
        "runs_per_shift": runs,
        "rounds": rounds,
        "machine_note": "2 shared cores, one BLAS thread per contender; times are medians",
    }
    del threads
    return report("performance", results, targets, args.json, quick=quick)


if __name__ == "__main__":
    raise SystemExit(main())
