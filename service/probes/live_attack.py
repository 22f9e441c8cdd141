"""The live attack: a small Square Attack against the live model, on a schedule.

It starts from the clean rows of a loaded suite and queries the model through the probes'
paced client, so its queries carry the probe header like every probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import structlog

from service.probes.black_box import run_async
from service.probes.metrics import ProbeMetrics
from service.probes.replay import RUN_ERRORS, ProbeReplayer, describe_run_error
from service.probes.run_store import RunRecord
from service.probes.settings import LiveAttackSettings
from service.probes.square_attack import SquareAttack
from service.probes.suite import ProbeSuite

log = structlog.get_logger(__name__)


async def live_attack(
    cfg: LiveAttackSettings,
    suite: ProbeSuite,
    digest: str,
    replayer: ProbeReplayer,
    metrics: ProbeMetrics,
    clock: Callable[[], float],
) -> RunRecord:
    """Runs the attack; the run's record (outcome failed when the model could not answer)."""
    model = cfg.model
    name = f"{cfg.source_suite}:live_square_{cfg.norm}"
    clean = np.flatnonzero(suite.variants.astype(str) == "clean")[: cfg.samples]
    x, y = suite.inputs[clean], suite.labels[clean]
    value_range = suite.generator.get("value_range") or [float(x.min()), float(x.max())]
    image_shape = cfg.image_shape or suite.generator.get("image_shape")
    attack = SquareAttack(
        eps=cfg.eps,
        max_queries=cfg.max_queries,
        norm=cfg.norm,
        image_shape=tuple(image_shape) if image_shape else None,
        value_range=(float(value_range[0]), float(value_range[1])),
        seed=cfg.seed,
    )
    versions: list[str] = []

    async def scores(batch: np.ndarray) -> np.ndarray:
        answer, version = await replayer.score(
            model, suite.input_spec.name, suite.score_output, batch
        )
        versions.append(version)
        return answer

    started = clock()
    t0 = time.monotonic()
    try:
        result = await run_async(attack.plan(x, y), scores)
    except RUN_ERRORS as exc:
        failed = RunRecord(
            model=model,
            version="",
            suite=name,
            suite_digest=digest,
            kind="live_square",
            started_at=started,
            finished_at=clock(),
            outcome="failed",
            probes=len(x),
            error=describe_run_error(exc),
        )
        metrics.record_outcome(model, name, "failed", failed.finished_at, 0.0)
        log.error("probes.live_attack_failed", model=model, error=failed.error)
        return failed
    version = next((v for v in reversed(versions) if v), "")
    finished = clock()
    metrics.record_outcome(model, name, "ok", finished, time.monotonic() - t0)
    metrics.record_attack(model, version, name, result.success_rate, result.median_queries)
    return RunRecord(
        model=model,
        version=version,
        suite=name,
        suite_digest=digest,
        kind="live_square",
        started_at=started,
        finished_at=finished,
        outcome="ok",
        probes=len(x),
        results={
            "success_rate": result.success_rate,
            "median_queries": result.median_queries,
            "mean_queries": result.mean_queries,
            "eps": cfg.eps,
            "norm": cfg.norm,
            "max_queries": cfg.max_queries,
        },
    )
