"""A :class:`KubernetesApi` over plain aiohttp: any API server URL plus a bearer token."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from service.hooks.kube_api import KubernetesApiError, parse_object_response


class HttpKubernetesApi:
    """Talks to ``base_url`` directly; one short-lived session per request (hooks are rare).

    ``token`` may be a callable, called per request, so rotated service-account tokens work.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | Callable[[], str] | None = None,
        ca_file: Path | None = None,
        verify_tls: bool = True,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._ssl: ssl.SSLContext | bool
        if ca_file is not None:
            self._ssl = ssl.create_default_context(cafile=str(ca_file))
        else:
            self._ssl = verify_tls

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self._token() if callable(self._token) else self._token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type is not None:
            headers["Content-Type"] = content_type
        return headers

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        url = self.base_url + path
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.request(
                    method,
                    url,
                    params=params,
                    data=body,
                    headers=self._headers(content_type),
                    ssl=self._ssl,
                ) as response,
            ):
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise KubernetesApiError(0, "Unreachable", f"{method} {url}: {exc!r}") from exc
        if not 200 <= status < 300:
            raise _api_error(status, text)
        return parse_object_response(status, text)

    async def get(self, path: str) -> dict[str, Any]:
        """Return the object at ``path``."""
        return await self._request("GET", path)

    async def list(self, path: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Return the ``items`` of the collection at ``path``."""
        params = {"labelSelector": label_selector} if label_selector else None
        document = await self._request("GET", path, params=params)
        items = document.get("items") or []
        return [item for item in items if isinstance(item, dict)]

    async def patch(self, path: str, body: Any, *, content_type: str) -> dict[str, Any]:
        """PATCH ``path`` with ``body`` (JSON-encoded) as ``content_type``."""
        data = json.dumps(body, separators=(",", ":")).encode()
        return await self._request("PATCH", path, body=data, content_type=content_type)


def _api_error(status: int, text: str) -> KubernetesApiError:
    """Build the error from a Status document when the server sent one."""
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict) and document.get("kind") == "Status":
        return KubernetesApiError(
            status, str(document.get("reason", "")), str(document.get("message", ""))
        )
    return KubernetesApiError(status, "", text[:200])
