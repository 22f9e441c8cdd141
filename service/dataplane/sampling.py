"""Which inference RPCs get sampled: a rate and a per-second budget (token bucket)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class Sampler:
    """Decides per RPC whether its messages are kept for the monitor."""

    def __init__(
        self,
        rate: float,
        max_per_second: float,
        *,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        if max_per_second <= 0:
            raise ValueError(f"max_per_second must be > 0, got {max_per_second}")
        self.rate = rate
        self.max_per_second = max_per_second
        self.seed = seed
        self._clock = clock
        self._random = random.Random(seed)
        # a bucket of one second's budget lets a short burst through after a quiet spell
        self._capacity = max(1.0, max_per_second)
        self._tokens = self._capacity
        self._last = clock()

    def decide(self) -> bool:
        """True if this RPC is sampled; consumes a token when it is."""
        if self.rate <= 0.0:
            return False
        if self.rate < 1.0 and self._random.random() >= self.rate:
            return False
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self.max_per_second)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
