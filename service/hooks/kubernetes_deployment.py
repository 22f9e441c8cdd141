"""Kubernetes Deployment hook: ``kubectl rollout undo`` through the API (apps/v1)."""

from __future__ import annotations

from typing import Any

from service.alerting.events import AlertEvent
from service.hooks.actions import HookResult
from service.hooks.deployment_rollback import RollbackPlanError, plan_rollback
from service.hooks.kube_api import (
    JSON_PATCH,
    KubernetesApiError,
    deployment_path,
    label_selector_string,
    replicasets_path,
)
from service.hooks.kube_object_hook import KubernetesObjectHook
from service.hooks.settings import KubernetesDeploymentHookSettings


class KubernetesDeploymentHook(KubernetesObjectHook[KubernetesDeploymentHookSettings]):
    """Roll the configured Deployment back to its previous revision when an alert fires.

    Nothing on resolve: rolling forward again is a human decision.
    """

    async def fire(self, event: AlertEvent, *, dry_run: bool) -> HookResult:
        """Plan the rollback from live objects and apply it (or only report it when dry)."""
        namespace, deployment_name = self.settings.namespace, self.settings.deployment
        target = f"deployment {namespace}/{deployment_name}"
        detail: dict[str, Any] = {"namespace": namespace, "deployment": deployment_name}
        path = deployment_path(namespace, deployment_name)
        try:
            deployment = await self._api.get(path)
            selector = label_selector_string((deployment.get("spec") or {}).get("selector") or {})
            replicasets = await self._api.list(
                replicasets_path(namespace), label_selector=selector or None
            )
            plan = plan_rollback(
                deployment, replicasets, allow_repeat=self.settings.allow_repeat_rollback
            )
        except (KubernetesApiError, RollbackPlanError, ValueError) as exc:
            return HookResult("failed", f"roll back {target}", {**detail, "error": str(exc)})
        detail.update(
            from_revision=plan.from_revision,
            to_revision=plan.to_revision,
            to_replicaset=plan.to_replicaset,
            reason=plan.reason,
        )
        action = f"roll back {target} to revision {plan.to_revision}"
        if plan.kind == "refused":
            return HookResult("refused", action, detail)
        if plan.kind == "noop":
            return HookResult("noop", action, detail)
        return await self._apply_patch(
            path,
            plan.patch,
            content_type=JSON_PATCH,
            action=action,
            detail=detail,
            dry_run=dry_run,
        )
