"""A token bucket that caps rows per second per signal; what it refuses is shed (counted)."""

from __future__ import annotations


class TokenBucket:
    """Allows `rate` rows per second on average, with bursts of up to `burst` rows."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError(f"rate and burst must be > 0, got {rate} and {burst}")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def take(self, n: int, now: float) -> int:
        """How many of `n` rows may pass now (0..n); the tokens for them are spent."""
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        allowed = min(n, int(self._tokens))
        self._tokens -= allowed
        return allowed
