"""Sends suite rows to the live model over gRPC, paced, and gathers the answers in row order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import numpy as np

from service.oip.client import InferenceClient
from service.oip.codec import TensorError
from service.probes.rate_limit import ProbeRateLimiter

PROBE_METADATA: tuple[tuple[str, str], ...] = (("x-outrider-probe", "1"),)
"""The header that keeps probe traffic out of outrider's drift statistics."""


class ModelAnswerError(RuntimeError):
    """The model server answered, but not with the score output the probes need."""


RUN_ERRORS = (grpc.aio.AioRpcError, TensorError, ModelAnswerError, OSError, asyncio.TimeoutError)
"""What a run may meet from the model server side; anything else is a bug and propagates."""


def describe_run_error(exc: BaseException) -> str:
    """One line for the run history and the log."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"gRPC {exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class ReplayAnswers:
    """Scores per row (suite order) and the model versions that answered."""

    scores: np.ndarray
    versions: tuple[str, ...]
    """Distinct model_version values seen in responses, in order of first appearance."""


class ProbeReplayer:
    """Replays batches of rows against one model through a shared, paced client."""

    def __init__(self, client: InferenceClient, limiter: ProbeRateLimiter) -> None:
        self.client = client
        self.limiter = limiter

    async def score(
        self, model: str, input_name: str, score_output: str, rows: np.ndarray
    ) -> tuple[np.ndarray, str]:
        """One paced ModelInfer call; returns (scores, model_version)."""
        async with self.limiter.slot(len(rows)):
            result = await self.client.infer(model, {input_name: rows}, outputs=(score_output,))
        scores = result.outputs.get(score_output)
        if scores is None:
            raise ModelAnswerError(
                f"model {model!r} answered without output {score_output!r} "
                f"(got {sorted(result.outputs)})"
            )
        scores = np.asarray(scores, dtype=np.float64).reshape(len(rows), -1)
        return scores, result.model_version

    async def replay(
        self,
        model: str,
        input_name: str,
        score_output: str,
        rows: np.ndarray,
        *,
        batch_size: int,
    ) -> ReplayAnswers:
        """Scores every row in batches of `batch_size`; raises on the first failed call."""
        starts: Sequence[int] = range(0, len(rows), batch_size)
        tasks = [
            asyncio.ensure_future(
                self.score(model, input_name, score_output, rows[s : s + batch_size])
            )
            for s in starts
        ]
        try:
            answers = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        versions = tuple(dict.fromkeys(v for _, v in answers))
        scores = np.concatenate([s for s, _ in answers]) if answers else np.zeros((0, 0))
        return ReplayAnswers(scores=scores, versions=versions)
