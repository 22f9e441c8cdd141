"""A decision-based (label-only) attack after HopSkipJump, L2, with a per-sample query budget.

References: J. Chen, M. I. Jordan, M. J. Wainwright, "HopSkipJumpAttack: A Query-Efficient
Decision-Based Attack", IEEE S&P 2020.

Only the top label of each answer is used. Per sample: start from a random input the model
already labels differently, binary-search to the decision boundary, then repeat: estimate
the boundary's normal from the labels of random perturbations, step along it (geometric
step-size search) and binary-search back to the boundary. Every stage queries all samples
still being attacked in one model call. A sample stops when its boundary point is within
`eps` of the clean input (success) or when the next stage would exceed its budget.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.probes.black_box import AttackPlan, AttackResult, run_sync


@dataclass(frozen=True)
class HopSkipJump:
    """Label-only L2 attack; `eps` is the L2 bound that counts as success."""

    eps: float
    max_queries: int = 1000
    init_tries: int = 20
    initial_evals: int = 20
    max_evals: int = 100
    max_step_halvings: int = 8
    value_range: tuple[float, float] = (0.0, 1.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.eps <= 0:
            raise ValueError(f"eps must be positive, got {self.eps}")
        if self.max_queries < 2:
            raise ValueError(f"max_queries must be at least 2, got {self.max_queries}")
        if self.initial_evals < 2 or self.max_evals < self.initial_evals:
            raise ValueError("need 2 <= initial_evals <= max_evals")
        if self.value_range[1] <= self.value_range[0]:
            raise ValueError(f"value_range must be (low, high), got {self.value_range}")

    def generate(self, x: np.ndarray, y: np.ndarray, scores: object) -> AttackResult:
        """Runs the attack with a synchronous scorer `scores(batch) -> (batch, classes)`."""
        return run_sync(self.plan(x, y), scores)  # type: ignore[arg-type]

    def plan(self, x: np.ndarray, y: np.ndarray) -> AttackPlan:
        """The attack as an ask/tell generator (see `black_box`)."""
        if x.ndim != 2 or len(x) != len(y):
            raise ValueError(f"x must be (N, D) with N labels, got {x.shape} and {y.shape}")
        dtype = x.dtype
        n, d = x.shape
        lo, hi = self.value_range
        rng = np.random.default_rng(self.seed)
        clean = x.astype(np.float64)
        y = np.asarray(y, dtype=np.int64)
        queries = np.zeros(n, dtype=np.int64)
        # The binary search stops at this distance to the boundary (the paper's theta,
        # d^-3/2 on a unit box, in input units here).
        theta = (hi - lo) / (d * math.sqrt(d))

        def labels_of(scores: np.ndarray) -> np.ndarray:
            return np.asarray(np.argmax(scores, axis=1), dtype=np.int64)

        clean_pred = labels_of((yield x))
        queries += 1
        clean_correct = clean_pred == y

        # 1. A starting point per sample that the model labels differently.
        start = clean.copy()
        found = ~clean_correct
        for _ in range(self.init_tries):
            need = np.flatnonzero(~found & (queries < self.max_queries - 1))
            if len(need) == 0:
                break
            trial = rng.uniform(lo, hi, size=(len(need), d))
            hit = labels_of((yield trial.astype(dtype))) != y[need]
            queries[need] += 1
            start[need[hit]] = trial[hit]
            found[need[hit]] = True
        first_steps = math.ceil(math.log2(max((hi - lo) * math.sqrt(d) / theta, 2.0)))
        attacked = clean_correct & found & (queries + first_steps <= self.max_queries)
        boundary = clean.copy()
        best = clean.copy()
        best_dist = np.full(n, np.inf)
        won_at = np.zeros(n, dtype=np.int64)

        idx = np.flatnonzero(attacked)
        if len(idx):
            boundary[idx] = yield from self._binary_search(
                clean[idx], start[idx], y[idx], idx, queries, theta, dtype
            )
            self._record(idx, boundary, clean, best, best_dist, won_at, queries)

        # 2. Iterate: gradient direction, geometric step, back to the boundary.
        t = 0
        while True:
            t += 1
            evals = int(min(self.initial_evals * math.sqrt(t), self.max_evals))
            # Reserve enough for the step search and a binary search after the estimate.
            steps = math.ceil(math.log2(max((hi - lo) * math.sqrt(d) / theta, 2.0)))
            reserve = evals + self.max_step_halvings + steps
            idx = np.flatnonzero(
                attacked & (best_dist > self.eps) & (queries + reserve <= self.max_queries)
            )
            if len(idx) == 0:
                break
            k = len(idx)
            dist = np.linalg.norm(boundary[idx] - clean[idx], axis=1)
            delta = math.sqrt(d) * theta * dist
            u = rng.normal(size=(k, evals, d))
            u /= np.linalg.norm(u, axis=2, keepdims=True)
            probes = np.clip(boundary[idx][:, None, :] + delta[:, None, None] * u, lo, hi)
            answers = labels_of((yield probes.reshape(k * evals, d).astype(dtype)))
            queries[idx] += evals
            phi = np.where(answers.reshape(k, evals) != y[idx][:, None], 1.0, -1.0)
            # Subtracting the mean reduces variance unless every answer agreed.
            baseline = phi.mean(axis=1, keepdims=True)
            centred = np.where(np.abs(baseline) == 1.0, phi, phi - baseline)
            u_eff = (
                np.clip(boundary[idx][:, None, :] + delta[:, None, None] * u, lo, hi)
                - boundary[idx][:, None, :]
            )
            grad = (centred[:, :, None] * u_eff).mean(axis=1)
            grad /= np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-12)

            step = dist / math.sqrt(t)
            moved = boundary[idx].copy()
            pending = np.ones(k, dtype=bool)
            for _ in range(self.max_step_halvings):
                sel = np.flatnonzero(pending)
                if len(sel) == 0:
                    break
                cand = np.clip(boundary[idx[sel]] + step[sel, None] * grad[sel], lo, hi)
                ok = labels_of((yield cand.astype(dtype))) != y[idx[sel]]
                queries[idx[sel]] += 1
                moved[sel[ok]] = cand[ok]
                pending[sel[ok]] = False
                step[sel[~ok]] /= 2.0
            # Samples whose step never stayed adversarial keep their boundary point.
            go = ~pending
            if go.any():
                gi = idx[go]
                boundary[gi] = yield from self._binary_search(
                    clean[gi], moved[go], y[gi], gi, queries, theta, dtype
                )
                self._record(gi, boundary, clean, best, best_dist, won_at, queries)

        success = attacked & (best_dist <= self.eps)
        adversarial = clean.copy()
        # Unsuccessful samples keep their best point projected onto the eps ball, so every
        # stored example respects the bound (it may then no longer fool the model).
        has_best = attacked & np.isfinite(best_dist)
        diff = best[has_best] - clean[has_best]
        scale = np.minimum(1.0, self.eps / np.maximum(best_dist[has_best], 1e-12))
        adversarial[has_best] = clean[has_best] + diff * scale[:, None]
        spent = np.where(success, won_at, queries)
        distance = np.linalg.norm(adversarial - clean, axis=1)
        return AttackResult(
            adversarial=adversarial.astype(dtype),
            success=success,
            queries=spent,
            clean_correct=clean_correct,
            distance=distance,
        )

    def _binary_search(
        self,
        clean: np.ndarray,
        adv: np.ndarray,
        y: np.ndarray,
        idx: np.ndarray,
        queries: np.ndarray,
        theta: float,
        dtype: np.dtype[Any],
    ) -> Generator[np.ndarray, np.ndarray, np.ndarray]:
        """Blends clean -> adv until the adversarial end is within theta of the boundary."""
        low = np.zeros(len(clean))
        high = np.ones(len(clean))
        span = np.linalg.norm(adv - clean, axis=1)
        while True:
            sel = np.flatnonzero((high - low) * span > theta)
            if len(sel) == 0:
                break
            mid = (low[sel] + high[sel]) / 2.0
            cand = clean[sel] + mid[:, None] * (adv[sel] - clean[sel])
            answers = yield cand.astype(dtype)
            adversarial = np.argmax(answers, axis=1) != y[sel]
            queries[idx[sel]] += 1
            high[sel[adversarial]] = mid[adversarial]
            low[sel[~adversarial]] = mid[~adversarial]
        return np.asarray(clean + high[:, None] * (adv - clean))

    @staticmethod
    def _record(
        idx: np.ndarray,
        boundary: np.ndarray,
        clean: np.ndarray,
        best: np.ndarray,
        best_dist: np.ndarray,
        won_at: np.ndarray,
        queries: np.ndarray,
    ) -> None:
        dist = np.linalg.norm(boundary[idx] - clean[idx], axis=1)
        better = dist < best_dist[idx]
        best[idx[better]] = boundary[idx[better]]
        best_dist[idx[better]] = dist[better]
        won_at[idx[better]] = queries[idx[better]]
