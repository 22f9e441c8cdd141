"""Builds probe suites offline from clean samples and the ONNX model they are meant for."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.probes.black_box import AttackResult, run_sync
from service.probes.corruptions import (
    IMAGE_CORRUPTIONS,
    SEVERITIES,
    TABULAR_CORRUPTIONS,
    corrupt_images,
    corrupt_table,
)
from service.probes.hopskipjump import HopSkipJump
from service.probes.noise_stability import noisy_copies, stability_from_labels
from service.probes.onnx_model import OnnxClassifier
from service.probes.signature import TensorSpec
from service.probes.square_attack import Norm, SquareAttack
from service.probes.suite import SUITE_KINDS, ProbeSuite, SuiteKind, save_suite

Progress = Callable[[int, int], None]
"""progress(done, total): called as a suite is built, for a progress bar."""


@dataclass(frozen=True)
class BuildOptions:
    """Generator settings; each suite kind reads its own, all are written to the metadata."""

    seed: int = 0
    max_samples: int = 200
    image_shape: tuple[int, ...] | None = None
    """None: taken from the model's `image_shape` metadata; still None means tabular."""
    value_range: tuple[float, float] | None = None
    """None: the model's `pixel_max` metadata, else the data's min and max."""
    eps: float | None = None
    """Attack bound in input units; None: 0.3 of the range (L-inf), 0.1 * range * sqrt(D) (L2)."""
    norm: Norm = "linf"
    max_queries: int = 500
    p_init: float = 0.1
    attack_chunk: int = 64
    sigma: float | None = None
    """Noise level in input units; None: 0.25 of the value range."""
    noise_copies: int = 100
    alpha: float = 0.001


def _summary_of_attack(result: AttackResult) -> dict[str, Any]:
    return {
        "clean_accuracy": float(result.clean_correct.mean()) if len(result.clean_correct) else 0.0,
        "success_rate": result.success_rate,
        "median_queries": result.median_queries,
        "mean_queries": result.mean_queries,
        "max_distance": float(result.distance.max()) if len(result.distance) else 0.0,
    }


def build_suite(
    model_path: Path,
    x: np.ndarray,
    y: np.ndarray | None,
    *,
    name: str,
    kind: SuiteKind = "corruptions",
    options: BuildOptions | None = None,
    out: Path | None = None,
    progress: Progress | None = None,
) -> ProbeSuite:
    """Builds one suite of `kind` from clean samples x (labels y, or the model's own labels).

    Rows always include the clean samples (variant "clean"), so accuracy under a corruption
    or attack can be read against clean accuracy on the same run.
    """
    if kind not in SUITE_KINDS:
        raise ValueError(f"kind must be one of {list(SUITE_KINDS)}, got {kind!r}")
    opts = options or BuildOptions()
    model = OnnxClassifier(model_path)
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    x = x.reshape(len(x), -1).astype(model.dtype)
    if (
        model.sample_shape
        and len(model.sample_shape) == 1
        and model.sample_shape[0] not in (-1, x.shape[1])
    ):
        raise ValueError(
            f"data has {x.shape[1]} features, model input {model.input_name!r} takes "
            f"{model.sample_shape[0]}"
        )
    rng = np.random.default_rng(opts.seed)
    if len(x) > opts.max_samples:
        keep = np.sort(rng.choice(len(x), opts.max_samples, replace=False))
        x = x[keep]
        y = None if y is None else np.asarray(y)[keep]
    labels = model.predict(x) if y is None else np.asarray(y, dtype=np.int64).reshape(-1)
    if len(labels) != len(x):
        raise ValueError(f"{len(labels)} labels for {len(x)} samples")
    image_shape = opts.image_shape or model.image_shape()
    value_range = opts.value_range or model.value_range() or (float(x.min()), float(x.max()))
    if value_range[1] <= value_range[0]:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    span = value_range[1] - value_range[0]
    report = progress or (lambda done, total: None)

    rows: list[np.ndarray] = [x]
    variants: list[np.ndarray] = [np.full(len(x), "clean")]
    sources: list[np.ndarray] = [np.arange(len(x))]
    queries: list[np.ndarray] = [np.full(len(x), -1)]
    generator: dict[str, Any] = {
        "seed": opts.seed,
        "samples": len(x),
        "image_shape": list(image_shape) if image_shape else None,
        "value_range": list(value_range),
    }
    summary: dict[str, Any] = {}

    if kind == "corruptions":
        if image_shape is not None:
            names = sorted(IMAGE_CORRUPTIONS)
            generator["modality"] = "image"
        else:
            names = list(TABULAR_CORRUPTIONS)
            generator["modality"] = "tabular"
        generator["corruptions"] = names
        total = len(names) * len(SEVERITIES)
        std = np.std(x.astype(np.float64), axis=0)
        for i, corruption in enumerate(names):
            for severity in SEVERITIES:
                if image_shape is not None:
                    corrupted = corrupt_images(
                        x,
                        corruption,
                        severity,
                        image_shape=image_shape,
                        value_range=value_range,
                        seed=opts.seed,
                    )
                else:
                    corrupted = corrupt_table(
                        x, corruption, severity, seed=opts.seed, feature_std=std
                    )
                rows.append(corrupted)
                variants.append(np.full(len(x), f"{corruption}/{severity}"))
                sources.append(np.arange(len(x)))
                queries.append(np.full(len(x), -1))
                report(i * len(SEVERITIES) + severity, total)
    elif kind in ("square", "hopskipjump"):
        # MNIST-style defaults: 0.3 of the range in L-inf, 0.1 of the range per sqrt(feature)
        # in L2 (12.8 on 8x8 digits with values 0..16).
        linf = kind == "square" and opts.norm == "linf"
        default_eps = 0.3 * span if linf else 0.1 * span * float(np.sqrt(x.shape[1]))
        eps = opts.eps if opts.eps is not None else default_eps
        attack: SquareAttack | HopSkipJump
        if kind == "square":
            attack = SquareAttack(
                eps=eps,
                max_queries=opts.max_queries,
                norm=opts.norm,
                p_init=opts.p_init,
                image_shape=image_shape,
                value_range=value_range,
                seed=opts.seed,
            )
            variant = f"square_{opts.norm}"
        else:
            attack = HopSkipJump(
                eps=eps, max_queries=opts.max_queries, value_range=value_range, seed=opts.seed
            )
            variant = "hopskipjump_l2"
        generator["attack"] = {k: v for k, v in asdict(attack).items() if k != "image_shape"}
        parts: list[AttackResult] = []
        for start in range(0, len(x), opts.attack_chunk):
            chunk = slice(start, start + opts.attack_chunk)
            parts.append(run_sync(attack.plan(x[chunk], labels[chunk]), model.scores))
            report(min(start + opts.attack_chunk, len(x)), len(x))
        result = AttackResult(
            adversarial=np.concatenate([p.adversarial for p in parts]),
            success=np.concatenate([p.success for p in parts]),
            queries=np.concatenate([p.queries for p in parts]),
            clean_correct=np.concatenate([p.clean_correct for p in parts]),
            distance=np.concatenate([p.distance for p in parts]),
        )
        rows.append(result.adversarial)
        variants.append(np.full(len(x), variant))
        sources.append(np.arange(len(x)))
        queries.append(np.where(result.success, result.queries, -1))
        summary = _summary_of_attack(result)
    else:
        sigma = opts.sigma if opts.sigma is not None else 0.25 * span
        generator["noise"] = {"sigma": sigma, "copies": opts.noise_copies, "alpha": opts.alpha}
        copies = noisy_copies(
            x, sigma=sigma, n=opts.noise_copies, seed=opts.seed, value_range=value_range
        )
        predicted = np.concatenate(
            [model.predict(copies[i : i + 4096]) for i in range(0, len(copies), 4096)]
        )
        stability = stability_from_labels(
            predicted, opts.noise_copies, sigma=sigma, alpha=opts.alpha
        )
        rows.append(copies)
        variants.append(np.full(len(copies), f"noise_sigma={sigma:g}"))
        sources.append(np.repeat(np.arange(len(x)), opts.noise_copies))
        queries.append(np.full(len(copies), -1))
        summary = {
            "median_radius": float(np.median(stability.radius)),
            "mean_radius": float(stability.radius.mean()),
            "abstain_rate": float((stability.radius == 0).mean()),
        }
        report(1, 1)

    inputs = np.concatenate(rows).astype(model.dtype)
    all_variants = np.concatenate(variants)
    all_sources = np.concatenate(sources)
    all_labels = labels[all_sources]
    predicted_all = np.concatenate(
        [model.predict(inputs[i : i + 4096]) for i in range(0, len(inputs), 4096)]
    )
    summary["accuracy"] = {
        v: float((predicted_all[all_variants == v] == all_labels[all_variants == v]).mean())
        for v in dict.fromkeys(all_variants.tolist())
    }
    suite = ProbeSuite(
        name=name,
        kind=kind,
        inputs=inputs,
        labels=all_labels,
        variants=all_variants.astype("U"),
        source_index=all_sources,
        queries=np.concatenate(queries),
        input_spec=TensorSpec(model.input_name, model.input_spec.datatype, (-1, x.shape[1])),
        score_output=model.score_output,
        signature=model.signature,
        created_at=time.time(),
        generator=generator,
        summary=summary,
    )
    if out is not None:
        save_suite(suite, out)
    return suite
