"""A local fake of the Kubernetes API endpoints the hooks use, strict where the real one is.

Serves namespaced objects under ``/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}]``:
GET, list (equality label selectors), PATCH on the object and on ``/status``. Like the real
API server it: accepts json-patch, merge-patch and (built-in types only) strategic-merge-patch
content types and answers 415 otherwise; answers errors as ``Status`` objects; fails a JSON
patch ``replace`` on a missing path with 422; ignores status changes sent to the object and
everything but status sent to ``/status``; bumps resourceVersion and, on spec change,
generation; requires the bearer token when one is set. Every PATCH is recorded.
"""

from __future__ import annotations

import copy
import json
import socket
from dataclasses import dataclass
from typing import Any

from aiohttp import web

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
BUILT_IN_GROUPS = {"apps"}
KINDS = {
    "deployments": "Deployment",
    "replicasets": "ReplicaSet",
    "rollouts": "Rollout",
    "inferenceservices": "InferenceService",
}


@dataclass(frozen=True)
class RecordedPatch:
    """One PATCH as received: path, Content-Type and the parsed body."""

    path: str
    content_type: str
    body: Any


class PatchError(Exception):
    """A JSON patch operation that does not apply."""


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(
        {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
         "message": message, "reason": reason, "code": code},
        status=code,
    )


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]


def apply_json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902 add/remove/replace/test on a copy of ``document``."""
    if not isinstance(operations, list):
        raise PatchError("JSON patch must be a list of operations")
    result = copy.deepcopy(document)
    for operation in operations:
        op = operation.get("op")
        parts = _pointer(operation.get("path", ""))
        parent = result
        for part in parts[:-1]:
            if isinstance(parent, list):
                parent = parent[int(part)]
            elif isinstance(parent, dict) and part in parent:
                parent = parent[part]
            else:
                raise PatchError(f"doc is missing path: {operation.get('path')}")
        last = parts[-1]
        if op in ("replace", "remove", "test") and (
            (isinstance(parent, dict) and last not in parent)
            or (isinstance(parent, list) and not 0 <= int(last) < len(parent))
        ):
            raise PatchError(
                f"jsonpatch {op} operation does not apply: doc is missing key: "
                f"{operation.get('path')}"
            )
        if op in ("add", "replace"):
            if isinstance(parent, list):
                if op == "add":
                    parent.insert(len(parent) if last == "-" else int(last), operation["value"])
                else:
                    parent[int(last)] = operation["value"]
            else:
                parent[last] = operation["value"]
        elif op == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif op == "test":
            current = parent[int(last) if isinstance(parent, list) else last]
            if current != operation.get("value"):
                raise PatchError(f"testing value {operation.get('path')} failed")
        else:
            raise PatchError(f"unsupported JSON patch op {op!r}")
    return result


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def _labels_match(obj: dict[str, Any], selector: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for requirement in filter(None, selector.split(",")):
        key, sep, value = requirement.partition("=")
        if not sep or key.endswith("!"):
            raise ValueError(f"unsupported selector requirement {requirement!r}")
        if labels.get(key) != value.lstrip("="):
            return False
    return True


class FakeKubeApi:
    """The fake server; load objects with :meth:`put`, then :meth:`start`."""

    def __init__(self, *, token: str | None = None) -> None:
        self.token = token
        self.objects: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
        self.patches: list[RecordedPatch] = []
        self.requests: list[tuple[str, str]] = []
        self._resource_version = 1000
        self._runner: web.AppRunner | None = None
        self.url = ""

    def put(self, obj: dict[str, Any]) -> None:
        """Store ``obj`` (apiVersion, kind and metadata.namespace/name must be set)."""
        group_version = obj["apiVersion"]
        group, _, version = group_version.rpartition("/")
        plural = {kind: plural for plural, kind in KINDS.items()}[obj["kind"]]
        meta = obj["metadata"]
        self.objects[(group, version, meta["namespace"], plural, meta["name"])] = copy.deepcopy(
            obj
        )

    def get(self, group: str, version: str, namespace: str, plural: str, name: str) -> Any:
        """A copy of the stored object."""
        return copy.deepcopy(self.objects[(group, version, namespace, plural, name)])

    async def start(self) -> str:
        """Serve on a free loopback port; return the base URL."""
        app = web.Application()
        base = "/apis/{group}/{version}/namespaces/{namespace}/{plural}"
        app.router.add_get(base, self._list)
        app.router.add_get(base + "/{name}", self._get)
        app.router.add_patch(base + "/{name}", self._patch)
        app.router.add_patch(base + "/{name}/{subresource}", self._patch)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()

    def _denied(self, request: web.Request) -> web.Response | None:
        self.requests.append((request.method, request.path_qs))
        if self.token is None:
            return None
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _status(401, "Unauthorized", "Unauthorized")
        return None

    def _key(self, request: web.Request) -> tuple[str, str, str, str, str]:
        info = request.match_info
        return (info["group"], info["version"], info["namespace"], info["plural"], info["name"])

    async def _get(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        key = self._key(request)
        if key not in self.objects:
            return _status(404, "NotFound", f'{key[3]}.{key[0]} "{key[4]}" not found')
        return web.json_response(self.objects[key])

    async def _list(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        info = request.match_info
        selector = request.query.get("labelSelector", "")
        try:
            items = [
                obj
                for (group, version, namespace, plural, _), obj in sorted(self.objects.items())
                if (group, version, namespace, plural)
                == (info["group"], info["version"], info["namespace"], info["plural"])
                and _labels_match(obj, selector)
            ]
        except ValueError as exc:
            return _status(400, "BadRequest", str(exc))
        kind = KINDS.get(info["plural"], "Unknown") + "List"
        api_version = f"{info['group']}/{info['version']}"
        return web.json_response(
            {"kind": kind, "apiVersion": api_version,
             "metadata": {"resourceVersion": str(self._resource_version)}, "items": items}
        )

    async def _patch(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        key = self._key(request)
        subresource = request.match_info.get("subresource")
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        allowed = {JSON_PATCH, MERGE_PATCH}
        if key[0] in BUILT_IN_GROUPS:
            allowed.add(STRATEGIC_MERGE_PATCH)
        if content_type not in allowed:
            return _status(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {', '.join(sorted(allowed))}",
            )
        if subresource not in (None, "status"):
            return _status(404, "NotFound", f"subresource {subresource!r} not found")
        if key not in self.objects:
            return _status(404, "NotFound", f'{key[3]}.{key[0]} "{key[4]}" not found')
        try:
            body = json.loads(await request.read())
        except ValueError as exc:
            return _status(400, "BadRequest", f"invalid JSON: {exc}")
        self.patches.append(RecordedPatch(request.path, content_type, body))
        current = self.objects[key]
        try:
            if content_type == JSON_PATCH:
                patched = apply_json_patch(current, body)
            elif content_type == MERGE_PATCH:
                patched = apply_merge_patch(current, body)
            else:
                return _status(415, "UnsupportedMediaType", "strategic merge not implemented")
        except (PatchError, LookupError, ValueError, AttributeError) as exc:
            return _status(422, "Invalid", str(exc))
        if subresource == "status":
            updated = copy.deepcopy(current)
            if "status" in patched:
                updated["status"] = patched["status"]
            else:
                updated.pop("status", None)
        else:
            updated = patched
            if "status" in current:
                updated["status"] = copy.deepcopy(current["status"])
            else:
                updated.pop("status", None)
            if updated.get("spec") != current.get("spec"):
                meta = updated["metadata"]
                meta["generation"] = int(meta.get("generation", 1)) + 1
        self._resource_version += 1
        updated["metadata"]["resourceVersion"] = str(self._resource_version)
        self.objects[key] = updated
        return web.json_response(updated)
