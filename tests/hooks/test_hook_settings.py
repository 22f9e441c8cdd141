"""The hooks: config section: discriminated union, unknown keys refused, builder errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from service.hooks.build import HookConfigError, build_dispatcher
from service.hooks.recorder import InMemoryActionRecorder
from service.hooks.settings import (
    ExecHookSettings,
    HooksSettings,
    KubernetesDeploymentHookSettings,
    WebhookHookSettings,
)

CONFIG = {
    "hooks": [
        {"name": "pager", "type": "webhook", "url": "https://hooks.example/outrider",
         "match": {"severities": ["critical", "warning"]},
         "signing_secret": {"env": "PAGER_KEY"}},
        {"name": "undo", "type": "kubernetes-deployment", "namespace": "models",
         "deployment": "digits", "match": {"alerts": ["InputDrift"]}, "dry_run": True,
         "cooldown_seconds": 900, "max_actions": 1, "window_seconds": 86400},
        {"name": "notify", "type": "exec", "argv": ["/usr/local/bin/notify", "--channel", "ml"]},
    ],
    "inbound": {"token": {"file": "/var/run/secrets/outrider/token"}},
}


def test_valid_config_parses_into_typed_hooks() -> None:
    settings = HooksSettings.model_validate(CONFIG)
    pager, undo, notify = settings.hooks
    assert isinstance(pager, WebhookHookSettings)
    assert isinstance(undo, KubernetesDeploymentHookSettings)
    assert isinstance(notify, ExecHookSettings)
    assert (undo.dry_run, undo.cooldown_seconds, undo.max_actions) == (True, 900, 1)
    assert pager.max_retries == 3


def _errors(document: dict[str, object]) -> list[tuple[tuple[object, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        HooksSettings.model_validate(document)
    return [(error["loc"], error["type"]) for error in caught.value.errors()]


def test_unknown_keys_are_errors_named_by_path() -> None:
    errors = _errors({"hooks": [{"name": "x", "type": "exec", "argv": ["a"], "shell": True}]})
    assert errors == [(("hooks", 0, "exec", "shell"), "extra_forbidden")]


def test_unknown_type_is_an_error() -> None:
    errors = _errors({"hooks": [{"name": "x", "type": "pagerduty"}]})
    assert errors == [(("hooks", 0), "union_tag_invalid")]


def test_secret_source_needs_exactly_one_of_env_or_file() -> None:
    errors = _errors({"inbound": {"token": {"env": "A", "file": "/b"}}})
    assert errors == [(("inbound", "token"), "value_error")]


def test_duplicate_hook_names_are_an_error() -> None:
    hook = {"name": "x", "type": "exec", "argv": ["a"]}
    errors = _errors({"hooks": [hook, hook]})
    assert errors == [((), "value_error")]


def test_every_field_is_described() -> None:
    from service.hooks import settings as module

    for model in (module.HooksSettings, module.InboundSettings, module.HookMatch,
                  module.SecretSource, module.KubernetesConnection, module.WebhookHookSettings,
                  module.KubernetesDeploymentHookSettings, module.ArgoRolloutsHookSettings,
                  module.KServeHookSettings, module.ExecHookSettings,
                  module.FallbackHookSettings):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


def test_fallback_without_relay_switch_is_a_config_error() -> None:
    settings = HooksSettings.model_validate({"hooks": [{"name": "lkg", "type": "fallback"}]})
    with pytest.raises(HookConfigError, match="'lkg': type 'fallback' needs a fallback"):
        build_dispatcher(settings, recorder=InMemoryActionRecorder(),
                         registry=CollectorRegistry())


def test_builder_wires_every_hook() -> None:
    settings = HooksSettings.model_validate(
        {"hooks": [CONFIG["hooks"][0], CONFIG["hooks"][2],  # type: ignore[index]
                   {"name": "undo", "type": "kubernetes-deployment", "namespace": "m",
                    "deployment": "d", "connection": {"api_url": "https://10.0.0.1:6443"}}]}
    )
    dispatcher = build_dispatcher(settings, recorder=InMemoryActionRecorder(),
                                  registry=CollectorRegistry())
    assert dispatcher.hook_names == ["pager", "notify", "undo"]


def test_missing_kubernetes_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "kubernetes", None)  # makes `import kubernetes` fail
    settings = HooksSettings.model_validate(
        {"hooks": [{"name": "undo", "type": "kubernetes-deployment", "namespace": "m",
                    "deployment": "d"}]}
    )
    with pytest.raises(HookConfigError) as caught:
        build_dispatcher(settings, recorder=InMemoryActionRecorder(),
                         registry=CollectorRegistry())
    assert str(caught.value).startswith(
        "hook 'undo': the kubernetes hooks need the official client: install it with "
        "pip install 'outrider[k8s]'"
    )


def test_official_client_reads_the_named_kubeconfig(tmp_path: Path) -> None:
    pytest.importorskip("kubernetes", reason="extra outrider[k8s] not installed")
    from service.hooks.kube_official import OfficialKubernetesApi

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
        "users: [{name: u, user: {token: abc}}]\n"
        "contexts: [{name: test, context: {cluster: c, user: u}}]\n"
    )
    api = OfficialKubernetesApi.from_environment(kubeconfig=kubeconfig)
    assert api._api_client.configuration.host == "https://127.0.0.1:6443"
    assert api._auth_headers() == {"authorization": "Bearer abc"}


def test_documented_example_is_a_valid_config() -> None:
    import textwrap

    import yaml

    import service.hooks

    doc = service.hooks.__doc__ or ""
    lines = []
    for line in doc.split("::", 1)[1].splitlines()[1:]:
        if line and not line.startswith(" "):
            break
        lines.append(line)
    example = yaml.safe_load(textwrap.dedent("\n".join(lines)))
    settings = HooksSettings.model_validate(example["hooks"])
    assert [h.name for h in settings.hooks] == ["pager", "undo-digits", "last-known-good"]
