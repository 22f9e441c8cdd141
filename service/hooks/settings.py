"""The ``hooks:`` section of outrider's config: which levers exist and when they are pulled."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

HOOK_NAME_PATTERN = r"^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HookMatch(_Strict):
    """Which alerts pull a hook; an empty list matches any value of that field."""

    alerts: list[str] = Field(
        default_factory=list,
        description="Alert names that trigger the hook; empty means any alert name.",
    )
    severities: list[str] = Field(
        default_factory=list,
        description="Alert severities (e.g. critical, warning) that trigger the hook; "
        "empty means any severity.",
    )
    models: list[str] = Field(
        default_factory=list,
        description="Model names the alert must concern; empty means any model.",
    )


class SecretSource(_Strict):
    """Where a secret (token, signing key) is read from: an environment variable or a file."""

    env: str | None = Field(
        default=None, description="Name of the environment variable holding the secret."
    )
    file: Path | None = Field(
        default=None,
        description="Path of a file holding the secret (surrounding whitespace is stripped); "
        "read at each use so rotated Kubernetes secrets are picked up.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretSource:
        if (self.env is None) == (self.file is None):
            raise ValueError("set exactly one of 'env' or 'file'")
        return self


class KubernetesConnection(_Strict):
    """How hooks reach the Kubernetes API server."""

    api_url: str | None = Field(
        default=None,
        description="API server URL for the built-in HTTP client (with 'token'); when unset "
        "the official kubernetes client (extra 'outrider[k8s]') is used, in-cluster if "
        "running in a pod, else from the kubeconfig.",
    )
    token: SecretSource | None = Field(
        default=None, description="Bearer token for 'api_url' (env var or file)."
    )
    ca_file: Path | None = Field(
        default=None, description="CA bundle that signs the API server certificate ('api_url')."
    )
    verify_tls: bool = Field(
        default=True,
        description="Verify the API server certificate ('api_url'); turn off only in tests.",
    )
    kubeconfig: Path | None = Field(
        default=None,
        description="Kubeconfig file for the official client outside a cluster; default is "
        "$KUBECONFIG or ~/.kube/config.",
    )
    context: str | None = Field(
        default=None, description="Kubeconfig context to use; default is the current context."
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of one API request, in seconds."
    )


#: The ``connection`` field every Kubernetes-object hook has (same default and description).
KubernetesConnectionField = Annotated[
    KubernetesConnection,
    Field(default_factory=KubernetesConnection, description="How to reach the API server."),
]


class _HookBase(_Strict):
    name: str = Field(
        pattern=HOOK_NAME_PATTERN,
        description="Unique hook name, used in metrics, records and POST /rollback.",
    )
    match: HookMatch = Field(
        default_factory=HookMatch, description="Which alerts pull this hook."
    )
    dry_run: bool = Field(
        default=False,
        description="Record what the hook would do without doing it.",
    )
    cooldown_seconds: float = Field(
        default=300.0,
        ge=0,
        description="Minimum time between two actions of this hook on the same model, in seconds "
        "(dry runs do not count).",
    )
    max_actions: int = Field(
        default=3,
        ge=1,
        description="Maximum actions of this hook within 'window_seconds'.",
    )
    window_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="Length of the sliding window that 'max_actions' counts in, in seconds.",
    )


class WebhookHookSettings(_HookBase):
    """POST the alert as JSON to a URL, signed and/or with a bearer token."""

    type: Literal["webhook"] = Field(description="Hook type.")
    url: str = Field(pattern=r"^https?://", description="URL that receives the POST.")
    timeout_seconds: float = Field(
        default=5.0, gt=0, description="Timeout of one delivery attempt, in seconds."
    )
    max_retries: int = Field(
        default=3,
        ge=0,
        le=20,
        description="Retries after the first attempt on 5xx, timeouts and connection "
        "errors (never on 4xx).",
    )
    backoff_initial_seconds: float = Field(
        default=0.5, gt=0, description="Backoff before the first retry, doubled each retry."
    )
    backoff_max_seconds: float = Field(
        default=30.0, gt=0, description="Upper bound of one backoff, in seconds."
    )
    signing_secret: SecretSource | None = Field(
        default=None,
        description="HMAC-SHA256 key; the body's signature is sent as "
        "'X-Outrider-Signature: sha256=<hex>'.",
    )
    bearer_token: SecretSource | None = Field(
        default=None, description="Token sent as 'Authorization: Bearer <token>'."
    )
    send_resolved: bool = Field(
        default=True, description="Also POST when the alert resolves."
    )


class KubernetesDeploymentHookSettings(_HookBase):
    """Roll a Deployment back to its previous revision, as 'kubectl rollout undo' does."""

    type: Literal["kubernetes-deployment"] = Field(description="Hook type.")
    namespace: str = Field(min_length=1, description="Namespace of the Deployment.")
    deployment: str = Field(min_length=1, description="Name of the Deployment.")
    allow_repeat_rollback: bool = Field(
        default=False,
        description="Undo even when the Deployment already runs a re-used earlier revision "
        "(a rollback in place); off so that an alert repeated after a restart cannot flip "
        "the Deployment back to the revision it was rolled away from.",
    )
    connection: KubernetesConnectionField


class ArgoRolloutsHookSettings(_HookBase):
    """Abort an Argo Rollouts Rollout (status.abort: true)."""

    type: Literal["argo-rollouts"] = Field(description="Hook type.")
    namespace: str = Field(min_length=1, description="Namespace of the Rollout.")
    rollout: str = Field(min_length=1, description="Name of the Rollout.")
    connection: KubernetesConnectionField


class KServeHookSettings(_HookBase):
    """Send all traffic back to the last ready revision of a KServe InferenceService."""

    type: Literal["kserve"] = Field(description="Hook type.")
    namespace: str = Field(min_length=1, description="Namespace of the InferenceService.")
    inference_service: str = Field(min_length=1, description="Name of the InferenceService.")
    connection: KubernetesConnectionField


class ExecHookSettings(_HookBase):
    """Run a program (argv list, no shell) with the alert in OUTRIDER_ALERT_* variables."""

    type: Literal["exec"] = Field(description="Hook type.")
    argv: list[str] = Field(
        min_length=1, description="Program and arguments; run directly, never through a shell."
    )
    timeout_seconds: float = Field(
        default=30.0, gt=0, description="Kill the program after this many seconds."
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment variables; the program gets only PATH, HOME, LANG, "
        "these and the OUTRIDER_ALERT_* variables.",
    )
    cwd: Path | None = Field(default=None, description="Working directory of the program.")


class FallbackHookSettings(_HookBase):
    """Send new inference connections to the fallback upstream (in-band, no RPC fails)."""

    type: Literal["fallback"] = Field(description="Hook type.")
    switch_back_on_resolve: bool = Field(
        default=False, description="Return to the primary upstream when the alert resolves."
    )


HookSettings = Annotated[
    WebhookHookSettings
    | KubernetesDeploymentHookSettings
    | ArgoRolloutsHookSettings
    | KServeHookSettings
    | ExecHookSettings
    | FallbackHookSettings,
    Field(discriminator="type"),
]


class InboundSettings(_Strict):
    """Inbound endpoints (Alertmanager, Flagger, Argo, POST /rollback) on the admin server."""

    token: SecretSource | None = Field(
        default=None,
        description="Bearer token that mutating endpoints require when the admin server is "
        "not bound to loopback.",
    )
    dedupe_capacity: int = Field(
        default=10_000,
        ge=1,
        description="How many Alertmanager notifications (fingerprint, startsAt, status) "
        "are remembered for deduplication.",
    )


class HooksSettings(_Strict):
    """Rollback hooks, the dispatcher queue and the inbound endpoints."""

    hooks: list[HookSettings] = Field(
        default_factory=list, description="Hooks, tried in this order for each alert."
    )
    queue_size: int = Field(
        default=1000,
        ge=1,
        description="Alert events waiting for the dispatcher; when full, inbound "
        "notifications get 503 so the sender retries.",
    )
    inbound: InboundSettings = Field(
        default_factory=InboundSettings, description="Inbound endpoint settings."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> HooksSettings:
        seen: set[str] = set()
        for hook in self.hooks:
            if hook.name in seen:
                raise ValueError(f"hook name {hook.name!r} is used more than once")
            seen.add(hook.name)
        return self
