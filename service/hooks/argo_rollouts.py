"""Argo Rollouts hook: abort the Rollout, which sends traffic back to the stable version."""

from __future__ import annotations

from typing import Any

from service.alerting.events import AlertEvent
from service.hooks.actions import HookResult
from service.hooks.kube_api import MERGE_PATCH, KubernetesApiError, rollout_path
from service.hooks.kube_object_hook import KubernetesObjectHook
from service.hooks.settings import ArgoRolloutsHookSettings

#: What ``kubectl argo rollouts abort`` sends: a merge patch on the status subresource.
ABORT_PATCH: dict[str, Any] = {"status": {"abort": True}}


class ArgoRolloutsHook(KubernetesObjectHook[ArgoRolloutsHookSettings]):
    """Abort the configured Rollout when an alert fires; no-op when it is already aborted.

    Nothing on resolve: retrying an aborted rollout is a human decision.
    """

    async def fire(self, event: AlertEvent, *, dry_run: bool) -> HookResult:
        """Merge-patch ``status.abort: true`` on the Rollout's status subresource."""
        namespace, rollout = self.settings.namespace, self.settings.rollout
        action = f"abort rollout {namespace}/{rollout}"
        detail: dict[str, Any] = {"namespace": namespace, "rollout": rollout}
        path = rollout_path(namespace, rollout)
        try:
            current = await self._api.get(path)
        except KubernetesApiError as exc:
            return HookResult("failed", action, {**detail, "error": str(exc)})
        if (current.get("status") or {}).get("abort") is True:
            return HookResult("noop", action, {**detail, "reason": "rollout already aborted"})
        return await self._apply_patch(
            path + "/status",
            ABORT_PATCH,
            content_type=MERGE_PATCH,
            action=action,
            detail=detail,
            dry_run=dry_run,
        )
