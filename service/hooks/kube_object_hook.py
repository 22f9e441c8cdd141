"""What the Kubernetes-object hooks share: their settings and API, and applying one patch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar

from service.alerting.events import AlertEvent
from service.hooks.actions import HookResult
from service.hooks.kube_api import KubernetesApi, KubernetesApiError


class NamedHookSettings(Protocol):
    """Any hook's settings: all that this base needs is the configured name."""

    @property
    def name(self) -> str:
        """The configured hook name."""
        ...


SettingsT = TypeVar("SettingsT", bound=NamedHookSettings)


class KubernetesObjectHook(Generic[SettingsT]):
    """A hook that patches one Kubernetes object when an alert fires, never on resolve."""

    def __init__(self, settings: SettingsT, api: KubernetesApi) -> None:
        self.settings = settings
        self._api = api

    @property
    def name(self) -> str:
        """The configured hook name."""
        return self.settings.name

    async def resolve(self, event: AlertEvent, *, dry_run: bool) -> HookResult | None:
        """Nothing: undoing a rollback (rolling forward, retrying, promoting) is for a human."""
        return None

    async def _apply_patch(
        self,
        path: str,
        patch: Any,
        *,
        content_type: str,
        action: str,
        detail: Mapping[str, Any],
        dry_run: bool,
    ) -> HookResult:
        """Send ``patch`` to ``path`` (only report it when dry); an API error is a failed run."""
        if dry_run:
            return HookResult("dry_run", action, {**detail, "patch": patch})
        try:
            await self._api.patch(path, patch, content_type=content_type)
        except KubernetesApiError as exc:
            return HookResult("failed", action, {**detail, "error": str(exc)})
        return HookResult("success", action, detail)
