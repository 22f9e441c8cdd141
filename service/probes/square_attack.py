"""Square Attack: score-based black-box adversarial examples by random square updates.

References: M. Andriushchenko, F. Croce, N. Flammarion, M. Hein, "Square Attack: a
query-efficient black-box adversarial attack via random search", ECCV 2020.

Vectorised over the batch: each iteration proposes one square update for every sample still
unbroken and within budget, and scores them all in one model call.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from service.probes.black_box import AttackPlan, AttackResult, margins, run_sync

Norm = Literal["linf", "l2"]


def square_fraction(p_init: float, iteration: int, n_iters: int) -> float:
    """The paper's schedule: the share of pixels a square covers halves at fixed milestones.

    Milestones are given for a 10 000-query budget and rescaled to `n_iters`.
    """
    i = int(iteration / max(n_iters, 1) * 10000)
    milestones = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
    halvings = sum(1 for m in milestones if i > m)
    return float(p_init / (2**halvings))


@functools.lru_cache(maxsize=64)
def _pseudo_gaussian(size: int) -> np.ndarray:
    """The paper's centred bump for L2 updates: rings weighted by 1/(k+1)^2, unit norm."""
    centre = (size - 1) / 2.0
    idx = np.arange(size)
    ring = np.maximum(np.abs(idx[:, None] - centre), np.abs(idx[None, :] - centre))
    ring = np.floor(ring).astype(int)
    weights = np.cumsum(1.0 / (np.arange(size, 0, -1) + 0.0) ** 2)[::-1]
    bump = weights[np.minimum(ring, size - 1)]
    return np.asarray(bump / np.linalg.norm(bump))


@dataclass(frozen=True)
class SquareAttack:
    """Untargeted Square Attack in L-inf or L2 with a per-sample query budget.

    Parameters: `eps` is the norm bound in input units; `max_queries` counts every model
    call a sample takes part in (the clean check and the initialisation included);
    `p_init` is the initial share of pixels a square covers; `image_shape` is (H, W) or
    (H, W, C) for flattened images (None: a sample is one row of width D); `value_range`
    is the box inputs are clipped to.
    """

    eps: float
    max_queries: int = 1000
    norm: Norm = "linf"
    p_init: float = 0.1
    image_shape: tuple[int, ...] | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.eps <= 0:
            raise ValueError(f"eps must be positive, got {self.eps}")
        if self.max_queries < 2:
            raise ValueError(f"max_queries must be at least 2, got {self.max_queries}")
        if self.norm not in ("linf", "l2"):
            raise ValueError(f"norm must be one of ['l2', 'linf'], got {self.norm!r}")
        if not 0 < self.p_init <= 1:
            raise ValueError(f"p_init must be in (0, 1], got {self.p_init}")
        if self.value_range[1] <= self.value_range[0]:
            raise ValueError(f"value_range must be (low, high), got {self.value_range}")

    def _shape(self, width: int) -> tuple[int, int, int]:
        if self.image_shape is None:
            return (1, width, 1)
        shape = tuple(self.image_shape) if len(self.image_shape) == 3 else (*self.image_shape, 1)
        if len(shape) != 3 or math.prod(shape) != width:
            raise ValueError(f"image_shape {self.image_shape} does not hold {width} features")
        return (int(shape[0]), int(shape[1]), int(shape[2]))

    def generate(self, x: np.ndarray, y: np.ndarray, scores: object) -> AttackResult:
        """Runs the attack with a synchronous scorer `scores(batch) -> (batch, classes)`."""
        return run_sync(self.plan(x, y), scores)  # type: ignore[arg-type]

    def plan(self, x: np.ndarray, y: np.ndarray) -> AttackPlan:
        """The attack as an ask/tell generator (see `black_box`)."""
        if x.ndim != 2 or len(x) != len(y):
            raise ValueError(f"x must be (N, D) with N labels, got {x.shape} and {y.shape}")
        dtype = x.dtype
        n = len(x)
        h, w, c = self._shape(x.shape[1])
        lo, hi = self.value_range
        rng = np.random.default_rng(self.seed)
        clean = x.astype(np.float64).reshape(n, h, w, c)
        y = np.asarray(y, dtype=np.int64)
        queries = np.zeros(n, dtype=np.int64)

        clean_margin = margins((yield x), y)
        queries += 1
        clean_correct = clean_margin > 0

        if self.norm == "linf":
            delta = self.eps * rng.choice(np.array([-1.0, 1.0]), size=(n, 1, w, c))
            delta = np.broadcast_to(delta, (n, h, w, c)).copy()
        else:
            delta = self._l2_init(n, h, w, c, rng)
        adv = np.clip(clean + delta, lo, hi)
        margin = clean_margin.copy()
        todo = np.flatnonzero(clean_correct)
        if len(todo):
            init_margin = margins((yield adv[todo].reshape(len(todo), -1).astype(dtype)), y[todo])
            queries[todo] += 1
            margin[todo] = init_margin
        else:
            adv = clean.copy()
        # Samples the model got wrong already are not attacked and keep their clean input.
        adv[~clean_correct] = clean[~clean_correct]

        n_iters = self.max_queries - 2
        for it in range(n_iters):
            active = np.flatnonzero(clean_correct & (margin > 0) & (queries < self.max_queries))
            if len(active) == 0:
                break
            p = square_fraction(self.p_init, it, n_iters)
            side = int(round(math.sqrt(p * h * w)))
            side = max(1, min(side, h, w - 1 if w > 1 else 1))
            k = len(active)
            masks, bumps = _window_bank(h, w, side)
            hs = rng.integers(0, masks.shape[0], size=k)
            ws = rng.integers(0, masks.shape[1], size=k)
            window = masks[hs, ws]  # (k, h, w, 1)
            cur = adv[active] - clean[active]
            if self.norm == "linf":
                signs = rng.integers(0, 2, size=(k, 1, 1, c)) * (2.0 * self.eps) - self.eps
                proposal = np.where(window, signs, cur)
            else:
                proposal = self._l2_update(cur, window, bumps[hs, ws], masks, rng)
            candidate = np.minimum(np.maximum(clean[active] + proposal, lo), hi)
            new_margin = margins((yield candidate.reshape(k, -1).astype(dtype)), y[active])
            queries[active] += 1
            better = new_margin < margin[active]
            adv[active[better]] = candidate[better]
            margin[active[better]] = new_margin[better]

        success = clean_correct & (margin < 0)
        flat_adv = adv.reshape(n, -1)
        diff = flat_adv - clean.reshape(n, -1)
        distance = np.abs(diff).max(axis=1) if self.norm == "linf" else np.linalg.norm(diff, axis=1)
        return AttackResult(
            adversarial=flat_adv.astype(dtype),
            success=success,
            queries=queries,
            clean_correct=clean_correct,
            distance=distance,
        )

    def _l2_init(self, n: int, h: int, w: int, c: int, rng: np.random.Generator) -> np.ndarray:
        # The paper's start: a grid of bumps with random signs, scaled to the eps sphere.
        block = max(1, min(h, w) // 3)
        bump = _pseudo_gaussian(block)
        delta = np.zeros((n, h, w, c))
        for r in range(0, h - block + 1, block):
            for q in range(0, w - block + 1, block):
                signs = rng.choice(np.array([-1.0, 1.0]), size=(n, 1, 1, c))
                delta[:, r : r + block, q : q + block, :] = bump[None, :, :, None] * signs
        norms = np.linalg.norm(delta.reshape(n, -1), axis=1).reshape(n, 1, 1, 1)
        return np.asarray(delta * self.eps / np.maximum(norms, 1e-12))

    def _l2_update(
        self,
        cur: np.ndarray,
        window: np.ndarray,
        placed: np.ndarray,
        masks: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        # Move the mass of a second window (plus any unused budget) into the first one, as a
        # fresh bump with a random sign: the total norm stays exactly eps before clipping.
        k, h, w, c = cur.shape
        second = masks[
            rng.integers(0, masks.shape[0], size=k), rng.integers(0, masks.shape[1], size=k)
        ]
        union = window | second  # (k, h, w, 1)
        energy = cur * cur
        total_sq = energy.reshape(k, -1).sum(axis=1)
        union_sq = (energy * union).reshape(k, -1).sum(axis=1)
        mass = np.sqrt(union_sq + np.maximum(self.eps**2 - total_sq, 0.0))
        signs = rng.integers(0, 2, size=(k, 1, 1, c)) * 2.0 - 1.0
        # A unit-norm bump per channel, so c channels together carry `mass`.
        fresh = placed * signs * (mass / math.sqrt(c)).reshape(k, 1, 1, 1)
        return np.where(window, fresh, np.where(union, 0.0, cur))


@functools.lru_cache(maxsize=64)
def _window_bank(h: int, w: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Every position of a side x side square in an h x w image: masks and placed L2 bumps.

    Shapes (positions_h, positions_w, h, w, 1); indexing both with per-sample positions
    gives each sample its own square in one gather.
    """
    ph, pw = h - side + 1, w - side + 1
    masks = np.zeros((ph, pw, h, w, 1), dtype=bool)
    bumps = np.zeros((ph, pw, h, w, 1))
    bump = _pseudo_gaussian(side)
    for r in range(ph):
        for q in range(pw):
            masks[r, q, r : r + side, q : q + side, 0] = True
            bumps[r, q, r : r + side, q : q + side, 0] = bump
    masks.flags.writeable = False
    bumps.flags.writeable = False
    return masks, bumps
