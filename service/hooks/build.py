"""Builds the configured hooks and the dispatcher from the ``hooks:`` settings."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from service.hooks.actions import Hook
from service.hooks.argo_rollouts import ArgoRolloutsHook
from service.hooks.dispatcher import ConfiguredHook, HookDispatcher
from service.hooks.exec_hook import ExecHook
from service.hooks.fallback import FallbackHook, UpstreamSwitch
from service.hooks.kserve import KServeHook
from service.hooks.kube_api import KubernetesApi
from service.hooks.kube_http import HttpKubernetesApi
from service.hooks.kube_official import OfficialKubernetesApi
from service.hooks.kubernetes_deployment import KubernetesDeploymentHook
from service.hooks.recorder import ActionRecorder
from service.hooks.secret_source import read_secret
from service.hooks.settings import (
    ArgoRolloutsHookSettings,
    ExecHookSettings,
    FallbackHookSettings,
    HookSettings,
    HooksSettings,
    KServeHookSettings,
    KubernetesConnection,
    KubernetesDeploymentHookSettings,
    WebhookHookSettings,
)
from service.hooks.webhook import WebhookHook

KubernetesApiFactory = Callable[[KubernetesConnection], KubernetesApi]


class HookConfigError(ValueError):
    """The hooks cannot be built as configured (names the hook)."""


def kubernetes_api_for(connection: KubernetesConnection) -> KubernetesApi:
    """The built-in HTTP client when ``api_url`` is set, else the official client."""
    if connection.api_url is not None:
        token = (
            functools.partial(read_secret, connection.token)
            if connection.token is not None
            else None
        )
        return HttpKubernetesApi(
            connection.api_url,
            token=token,
            ca_file=connection.ca_file,
            verify_tls=connection.verify_tls,
            timeout_seconds=connection.timeout_seconds,
        )
    return OfficialKubernetesApi.from_environment(
        kubeconfig=connection.kubeconfig,
        context=connection.context,
        timeout_seconds=connection.timeout_seconds,
    )


def build_hook(
    settings: HookSettings,
    *,
    upstream_switch: UpstreamSwitch | None,
    kubernetes_api: KubernetesApiFactory = kubernetes_api_for,
    rng: random.Random | None = None,
) -> Hook:
    """One hook object for one hook's settings."""
    if isinstance(settings, WebhookHookSettings):
        return WebhookHook(settings, rng=rng)
    if isinstance(settings, KubernetesDeploymentHookSettings):
        return KubernetesDeploymentHook(settings, kubernetes_api(settings.connection))
    if isinstance(settings, ArgoRolloutsHookSettings):
        return ArgoRolloutsHook(settings, kubernetes_api(settings.connection))
    if isinstance(settings, KServeHookSettings):
        return KServeHook(settings, kubernetes_api(settings.connection))
    if isinstance(settings, ExecHookSettings):
        return ExecHook(settings)
    if isinstance(settings, FallbackHookSettings):
        if upstream_switch is None:
            raise HookConfigError(
                f"hook {settings.name!r}: type 'fallback' needs a fallback upstream configured "
                "on the relay"
            )
        return FallbackHook(settings, upstream_switch)
    raise HookConfigError(f"hook {settings.name!r}: unknown type")  # pragma: no cover


def build_dispatcher(
    settings: HooksSettings,
    *,
    recorder: ActionRecorder,
    registry: CollectorRegistry,
    upstream_switch: UpstreamSwitch | None = None,
    kubernetes_api: KubernetesApiFactory = kubernetes_api_for,
) -> HookDispatcher:
    """The dispatcher with every configured hook and its safety rules."""
    configured = []
    for hook_settings in settings.hooks:
        try:
            hook = build_hook(
                hook_settings, upstream_switch=upstream_switch, kubernetes_api=kubernetes_api
            )
        except ImportError as exc:
            raise HookConfigError(f"hook {hook_settings.name!r}: {exc}") from exc
        configured.append(
            ConfiguredHook(
                hook=hook,
                match=hook_settings.match,
                dry_run=hook_settings.dry_run,
                cooldown_seconds=hook_settings.cooldown_seconds,
                max_actions=hook_settings.max_actions,
                window_seconds=hook_settings.window_seconds,
            )
        )
    return HookDispatcher(
        configured, recorder=recorder, registry=registry, queue_size=settings.queue_size
    )
