"""Model versions as the monitor labels them: resolved when calls name none, bounded in number.

A version comes from the response, else the request, else the upstream's ModelMetadata
(asked once per model, remembered). Label values are bounded: past `limit` distinct
versions per model, new ones fold into `other`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

UNKNOWN_VERSION = "unknown"


class VersionResolver:
    """Versions for calls that name none: asks `lookup` once per model and remembers.

    `lookup` (typically a ModelMetadata call to the upstream) runs on the monitor worker,
    never on the relay; a failed or empty answer is remembered as `unknown` so a broken
    upstream is asked once, not once per request.
    """

    def __init__(self, lookup: Callable[[str], str | None] | None = None) -> None:
        self._lookup = lookup
        self._cache: dict[str, str] = {}

    def resolve(self, model: str) -> str:
        cached = self._cache.get(model)
        if cached is not None:
            return cached
        version = None
        if self._lookup is not None:
            try:
                version = self._lookup(model)
            except Exception:  # noqa: BLE001 - any upstream failure means "unknown"
                version = None
        resolved = version or UNKNOWN_VERSION
        self._cache[model] = resolved
        return resolved


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
