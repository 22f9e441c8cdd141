"""Model versions as the monitor labels them: resolved when calls name none, bounded in number.

A version comes from the response, else the request, else the upstream's ModelMetadata
(asked per model, remembered for some minutes). Label values are bounded: past `limit` distinct
versions per model, new ones fold into `other`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

UNKNOWN_VERSION = "unknown"


class VersionResolver:
    """Versions for calls that name none: asks `lookup` per model, remembers for a while.

    `lookup` (typically a ModelMetadata call to the upstream) runs on the monitor worker,
    never on the relay. An answer is remembered for `refresh_seconds`, so a rollout of a new
    version shows in the labels within that time; a failed or empty answer is remembered as
    `unknown` for `retry_seconds`, so a broken upstream is asked now and then, not once per
    request.
    """

    def __init__(
        self,
        lookup: Callable[[str], str | None] | None = None,
        *,
        refresh_seconds: float = 300.0,
        retry_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._refresh_seconds = refresh_seconds
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._cache: dict[str, tuple[str, float]] = {}  # model -> (version, expires at)

    def resolve(self, model: str) -> str:
        now = self._clock()
        cached = self._cache.get(model)
        if cached is not None and now < cached[1]:
            return cached[0]
        version = None
        if self._lookup is not None:
            try:
                version = self._lookup(model)
            except Exception:  # noqa: BLE001 - any upstream failure means "unknown"
                version = None
        if version:
            self._cache[model] = (version, now + self._refresh_seconds)
            return version
        self._cache[model] = (UNKNOWN_VERSION, now + self._retry_seconds)
        return UNKNOWN_VERSION


def latest_version(versions: list[str]) -> str | None:
    """The version a ModelMetadata answer most likely serves: the highest, numerically if can."""
    if not versions:
        return None
    if all(v.isdigit() for v in versions):
        return max(versions, key=int)
    return sorted(versions)[-1]


def upstream_version_lookup(target: str, *, timeout: float = 2.0) -> Callable[[str], str | None]:
    """A lookup for `VersionResolver` that asks the upstream's ModelMetadata (blocking).

    Runs its own short-lived event loop, so call it from a worker thread, never the relay's.
    """

    def lookup(model: str) -> str | None:
        from service.oip.client import InferenceClient  # grpc only where a lookup is wanted

        async def ask() -> str | None:
            async with InferenceClient(target, timeout=timeout) as client:
                response = await client.model_metadata(model)
                return latest_version(list(response.versions))

        return asyncio.run(ask())

    return lookup


def upstream_lookup_for(target: str, *, tls: bool) -> Callable[[str], str | None] | None:
    """The ModelMetadata lookup of the upstream at host:port `target`, or None for a TLS
    upstream (the lookup client speaks plaintext only)."""
    return None if tls else upstream_version_lookup(target)
