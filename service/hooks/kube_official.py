"""A :class:`KubernetesApi` over the official ``kubernetes`` client (extra ``outrider[k8s]``).

The official client is synchronous; each request runs in a worker thread so the event loop
(and with it the relay) never waits on the API server.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from service.hooks.kube_api import KubernetesApiError, parse_object_response

_MISSING = (
    "the kubernetes hooks need the official client: install it with "
    "pip install 'outrider[k8s]' (or set connection.api_url to use the built-in HTTP client)"
)


def _import_kubernetes() -> Any:
    try:
        import kubernetes
    except ImportError as exc:
        raise ImportError(_MISSING) from exc
    return kubernetes


class OfficialKubernetesApi:
    """Wraps a ``kubernetes.client.ApiClient``; build one with :meth:`from_environment`."""

    def __init__(self, api_client: Any, *, timeout_seconds: float = 10.0) -> None:
        self._api_client = api_client
        self._timeout = timeout_seconds

    @classmethod
    def from_environment(
        cls,
        *,
        kubeconfig: Path | None = None,
        context: str | None = None,
        timeout_seconds: float = 10.0,
    ) -> OfficialKubernetesApi:
        """In-cluster config inside a pod (unless a kubeconfig is named), else the kubeconfig."""
        kubernetes = _import_kubernetes()
        configuration = kubernetes.client.Configuration()
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        else:
            kubernetes.config.load_kube_config(
                config_file=str(kubeconfig) if kubeconfig is not None else None,
                context=context,
                client_configuration=configuration,
            )
        return cls(kubernetes.client.ApiClient(configuration), timeout_seconds=timeout_seconds)

    def _auth_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        # auth_settings() runs the token refresh hook (in-cluster tokens rotate).
        for setting in self._api_client.configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[str(setting["key"])] = str(setting["value"])
        return headers

    def _request_sync(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None,
        body: Any,
        content_type: str | None,
    ) -> dict[str, Any]:
        kubernetes = _import_kubernetes()
        url = self._api_client.configuration.host.rstrip("/") + path
        if query:
            url += "?" + urlencode(query)
        headers = {"Accept": "application/json", **self._auth_headers()}
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            response = self._api_client.rest_client.request(
                method, url, headers=headers, body=body, _request_timeout=self._timeout
            )
        except kubernetes.client.exceptions.ApiException as exc:
            raise KubernetesApiError(
                int(exc.status or 0), str(exc.reason or ""), _status_message(exc.body)
            ) from exc
        except Exception as exc:  # urllib3 and socket errors: the server is unreachable
            raise KubernetesApiError(0, "Unreachable", f"{method} {url}: {exc!r}") from exc
        data = response.data if getattr(response, "data", None) is not None else response.read()
        status = int(response.status)
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        if not 200 <= status < 300:
            raise KubernetesApiError(status, str(response.reason or ""), _status_message(text))
        return parse_object_response(status, text)

    async def get(self, path: str) -> dict[str, Any]:
        """Return the object at ``path``."""
        return await asyncio.to_thread(self._request_sync, "GET", path, None, None, None)

    async def list(self, path: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Return the ``items`` of the collection at ``path``."""
        query = {"labelSelector": label_selector} if label_selector else None
        document = await asyncio.to_thread(self._request_sync, "GET", path, query, None, None)
        return [item for item in document.get("items") or [] if isinstance(item, dict)]

    async def patch(self, path: str, body: Any, *, content_type: str) -> dict[str, Any]:
        """PATCH ``path`` with ``body`` sent as ``content_type``."""
        return await asyncio.to_thread(
            self._request_sync, "PATCH", path, None, body, content_type
        )


def _status_message(body: Any) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            document = json.loads(body)
        except ValueError:
            return body[:200]
        if isinstance(document, dict):
            return str(document.get("message", ""))[:500]
    return ""
