"""KServe hook: set the InferenceService canary's traffic to 0 (all to the last good revision)."""

from __future__ import annotations

from typing import Any

from service.alerting.events import AlertEvent
from service.hooks.actions import HookResult
from service.hooks.kube_api import (
    MERGE_PATCH,
    KubernetesApiError,
    inference_service_path,
)
from service.hooks.kube_object_hook import KubernetesObjectHook
from service.hooks.settings import KServeHookSettings

#: Merge patch that routes all traffic to the previously rolled-out revision.
CANARY_OFF_PATCH: dict[str, Any] = {"spec": {"predictor": {"canaryTrafficPercent": 0}}}


class KServeHook(KubernetesObjectHook[KServeHookSettings]):
    """Send the canary's share of traffic to 0 when an alert fires; no-op when already 0.

    Nothing on resolve: promoting the canary again is a human decision.
    """

    async def fire(self, event: AlertEvent, *, dry_run: bool) -> HookResult:
        """Merge-patch ``spec.predictor.canaryTrafficPercent: 0``."""
        namespace, name = self.settings.namespace, self.settings.inference_service
        action = f"set canaryTrafficPercent=0 on inferenceservice {namespace}/{name}"
        detail: dict[str, Any] = {"namespace": namespace, "inference_service": name}
        path = inference_service_path(namespace, name)
        try:
            current = await self._api.get(path)
        except KubernetesApiError as exc:
            return HookResult("failed", action, {**detail, "error": str(exc)})
        predictor = (current.get("spec") or {}).get("predictor") or {}
        detail["previous_canary_traffic_percent"] = predictor.get("canaryTrafficPercent")
        if predictor.get("canaryTrafficPercent") == 0:
            return HookResult("noop", action, {**detail, "reason": "canary traffic already 0"})
        return await self._apply_patch(
            path,
            CANARY_OFF_PATCH,
            content_type=MERGE_PATCH,
            action=action,
            detail=detail,
            dry_run=dry_run,
        )
