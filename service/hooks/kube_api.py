"""The small async Kubernetes API surface hooks need, independent of any client library."""

from __future__ import annotations

import json
from typing import Any, Protocol
from urllib.parse import quote

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


class KubernetesApiError(RuntimeError):
    """The API server refused a request (``status`` is the HTTP status, 0 if unreachable)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class KubernetesApi(Protocol):
    """Get, list and patch objects by API path (e.g. ``/apis/apps/v1/namespaces/x/...``)."""

    async def get(self, path: str) -> dict[str, Any]:
        """Return the object at ``path``."""
        ...

    async def list(self, path: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Return the ``items`` of the collection at ``path``."""
        ...

    async def patch(self, path: str, body: Any, *, content_type: str) -> dict[str, Any]:
        """PATCH ``path`` with ``body`` sent as ``content_type``; return the patched object."""
        ...


def parse_object_response(status: int, text: str) -> dict[str, Any]:
    """Decode a successful response body, which must be one JSON object (else BadResponse)."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise KubernetesApiError(status, "BadResponse", f"not JSON: {text[:200]}") from exc
    if not isinstance(document, dict):
        raise KubernetesApiError(status, "BadResponse", "response is not a JSON object")
    return document


def _segment(value: str) -> str:
    return quote(value, safe="")


def deployment_path(namespace: str, name: str) -> str:
    """API path of an apps/v1 Deployment."""
    return f"/apis/apps/v1/namespaces/{_segment(namespace)}/deployments/{_segment(name)}"


def replicasets_path(namespace: str) -> str:
    """API path of the apps/v1 ReplicaSet collection in a namespace."""
    return f"/apis/apps/v1/namespaces/{_segment(namespace)}/replicasets"


def rollout_path(namespace: str, name: str) -> str:
    """API path of an Argo Rollouts Rollout (argoproj.io/v1alpha1)."""
    return f"/apis/argoproj.io/v1alpha1/namespaces/{_segment(namespace)}/rollouts/{_segment(name)}"


def inference_service_path(namespace: str, name: str) -> str:
    """API path of a KServe InferenceService (serving.kserve.io/v1beta1)."""
    return (
        f"/apis/serving.kserve.io/v1beta1/namespaces/{_segment(namespace)}"
        f"/inferenceservices/{_segment(name)}"
    )


def label_selector_string(selector: dict[str, Any]) -> str:
    """Render a LabelSelector (matchLabels and matchExpressions) as a query string selector.

    Raises ValueError for an operator the API does not define.
    """
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key = expression["key"]
        operator = expression["operator"]
        values = ",".join(expression.get("values") or [])
        if operator == "In":
            parts.append(f"{key} in ({values})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif operator == "Exists":
            parts.append(key)
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise ValueError(f"unknown label selector operator {operator!r}")
    return ",".join(parts)
