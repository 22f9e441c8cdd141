"""Kubernetes hooks against the local fake API server, through both client implementations."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from fake_kube_api import JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, FakeKubeApi
from kube_objects import (
    LAST_APPLIED,
    NAMESPACE,
    deployment,
    history,
    inference_service,
    pod_template,
    replicaset,
    rollout,
)

from service.alerting.events import AlertEvent
from service.hooks.actions import Hook, HookResult
from service.hooks.argo_rollouts import ArgoRolloutsHook
from service.hooks.build import kubernetes_api_for
from service.hooks.kserve import KServeHook
from service.hooks.kube_api import KubernetesApi, KubernetesApiError
from service.hooks.kube_http import HttpKubernetesApi
from service.hooks.kube_official import OfficialKubernetesApi
from service.hooks.kubernetes_deployment import KubernetesDeploymentHook
from service.hooks.settings import (
    ArgoRolloutsHookSettings,
    KServeHookSettings,
    KubernetesConnection,
    KubernetesDeploymentHookSettings,
    SecretSource,
)

TOKEN = "fake-sa-token"
EVENT = AlertEvent(name="InputDrift", severity="critical", status="firing", model="digits")
DEPLOYMENT_PATH = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/digits"

#: What ``kubectl rollout undo deployment/digits`` sends for these objects: revision 2's
#: template without pod-template-hash, and the annotations rebuilt from the Deployment's
#: bookkeeping ones (revision, last-applied) plus every other annotation of revision 2's
#: ReplicaSet ("team" survives only because the ReplicaSet has it too).
EXPECTED_UNDO_PATCH = [
    {"op": "replace", "path": "/spec/template", "value": pod_template("digits:2")},
    {
        "op": "replace",
        "path": "/metadata/annotations",
        "value": {
            "deployment.kubernetes.io/revision": "3",
            "kubectl.kubernetes.io/last-applied-configuration": LAST_APPLIED,
            "kubernetes.io/change-cause": "image digits:2",
            "team": "ml-platform",
            "outrider.dev/validated": "true",
        },
    },
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeKubeApi]:
    server = FakeKubeApi(token=TOKEN)
    server.put(deployment())
    for item in history():
        server.put(item)
    server.put(rollout())
    server.put(inference_service())
    await server.start()
    yield server
    await server.stop()


def http_client(url: str) -> KubernetesApi:
    return HttpKubernetesApi(url, token=TOKEN)


def official_client(url: str) -> KubernetesApi:
    kubernetes = pytest.importorskip("kubernetes", reason="extra outrider[k8s] not installed")
    configuration = kubernetes.client.Configuration(
        host=url,
        api_key={"authorization": TOKEN},
        api_key_prefix={"authorization": "Bearer"},
    )
    return OfficialKubernetesApi(kubernetes.client.ApiClient(configuration))


CLIENTS = [pytest.param(http_client, id="aiohttp"), pytest.param(official_client, id="official")]


async def fire_twice(hook: Hook) -> tuple[HookResult, HookResult]:
    """Fire ``hook`` twice, as a repeated alert does: the second run must find the work done."""
    return await hook.fire(EVENT, dry_run=False), await hook.fire(EVENT, dry_run=False)


def patches_sent(fake: FakeKubeApi) -> list[tuple[str, str, Any]]:
    """Every PATCH the fake API server received, as (path, content type, body)."""
    return [(p.path, p.content_type, p.body) for p in fake.patches]


def deployment_hook(api: KubernetesApi) -> KubernetesDeploymentHook:
    settings = KubernetesDeploymentHookSettings(
        type="kubernetes-deployment", name="undo", namespace=NAMESPACE, deployment="digits"
    )
    return KubernetesDeploymentHook(settings, api)


@pytest.mark.parametrize("make_client", CLIENTS)
async def test_rollback_sends_the_patch_kubectl_sends(
    fake: FakeKubeApi, make_client: Callable[[str], KubernetesApi]
) -> None:
    result = await deployment_hook(make_client(fake.url)).fire(EVENT, dry_run=False)

    assert result.outcome == "success"
    assert result.action == f"roll back deployment {NAMESPACE}/digits to revision 2"
    assert result.detail["from_revision"] == 3
    assert result.detail["to_replicaset"] == "digits-7f9c5d6b4"
    assert len(fake.patches) == 1
    assert fake.patches[0].path == DEPLOYMENT_PATH
    assert fake.patches[0].content_type == JSON_PATCH
    assert fake.patches[0].body == EXPECTED_UNDO_PATCH
    # The selector-based list was used, as kubectl does.
    assert ("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/replicasets?labelSelector=app%3Ddigits"
            ) in fake.requests
    stored = fake.get("apps", "v1", NAMESPACE, "deployments", "digits")
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == "digits:2"
    assert stored["metadata"]["generation"] == 4


@pytest.mark.parametrize("make_client", CLIENTS)
async def test_rollback_already_done_is_a_noop(
    fake: FakeKubeApi, make_client: Callable[[str], KubernetesApi]
) -> None:
    hook = deployment_hook(make_client(fake.url))
    first, second = await fire_twice(hook)

    assert (first.outcome, second.outcome) == ("success", "noop")
    assert second.detail["reason"] == "current template already matches revision 2"
    assert len(fake.patches) == 1


async def test_paused_deployment_is_refused(fake: FakeKubeApi) -> None:
    fake.put(deployment(paused=True))
    result = await deployment_hook(http_client(fake.url)).fire(EVENT, dry_run=False)

    assert result.outcome == "refused"
    assert result.detail["reason"] == (
        "deployment 'digits' is paused; resume it before rolling back"
    )
    assert fake.patches == []


async def test_no_previous_revision_fails_without_patching(fake: FakeKubeApi) -> None:
    for name in ("digits-6d4b7c9f8", "digits-7f9c5d6b4"):
        del fake.objects[("apps", "v1", NAMESPACE, "replicasets", name)]
    result = await deployment_hook(http_client(fake.url)).fire(EVENT, dry_run=False)

    assert result.outcome == "failed"
    assert result.detail["error"] == "no rollout history found for deployment 'digits'"
    assert fake.patches == []


async def test_dry_run_reports_the_patch_and_sends_nothing(fake: FakeKubeApi) -> None:
    result = await deployment_hook(http_client(fake.url)).fire(EVENT, dry_run=True)

    assert result.outcome == "dry_run"
    assert result.detail["patch"] == EXPECTED_UNDO_PATCH
    assert fake.patches == []


async def test_wrong_token_is_a_recorded_failure(fake: FakeKubeApi) -> None:
    api = HttpKubernetesApi(fake.url, token="wrong")
    result = await deployment_hook(api).fire(EVENT, dry_run=False)

    assert result.outcome == "failed"
    assert result.detail["error"] == "401 Unauthorized: Unauthorized"


async def test_unreachable_api_server_is_a_recorded_failure() -> None:
    api = HttpKubernetesApi("http://127.0.0.1:9", token=TOKEN, timeout_seconds=2)
    result = await deployment_hook(api).fire(EVENT, dry_run=False)

    assert result.outcome == "failed"
    assert result.detail["error"].startswith("0 Unreachable: GET http://127.0.0.1:9/apis/apps/")


def argo_hook(api: KubernetesApi) -> ArgoRolloutsHook:
    settings = ArgoRolloutsHookSettings(
        type="argo-rollouts", name="abort", namespace=NAMESPACE, rollout="digits"
    )
    return ArgoRolloutsHook(settings, api)


@pytest.mark.parametrize("make_client", CLIENTS)
async def test_argo_abort_merge_patches_the_status_subresource(
    fake: FakeKubeApi, make_client: Callable[[str], KubernetesApi]
) -> None:
    hook = argo_hook(make_client(fake.url))
    first, second = await fire_twice(hook)

    assert (first.outcome, second.outcome) == ("success", "noop")
    assert patches_sent(fake) == [
        (
            f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/rollouts/digits/status",
            MERGE_PATCH,
            {"status": {"abort": True}},
        )
    ]
    stored = fake.get("argoproj.io", "v1alpha1", NAMESPACE, "rollouts", "digits")
    assert stored["status"] == {
        "phase": "Paused", "currentStepIndex": 1, "stableRS": "7f9c5d6b4", "abort": True
    }


async def test_argo_already_aborted_is_a_noop(fake: FakeKubeApi) -> None:
    fake.put(rollout(aborted=True))
    result = await argo_hook(http_client(fake.url)).fire(EVENT, dry_run=False)

    assert result.outcome == "noop"
    assert fake.patches == []


def kserve_hook(api: KubernetesApi) -> KServeHook:
    settings = KServeHookSettings(
        type="kserve", name="canary-off", namespace=NAMESPACE, inference_service="digits"
    )
    return KServeHook(settings, api)


@pytest.mark.parametrize("make_client", CLIENTS)
async def test_kserve_sets_canary_traffic_to_zero(
    fake: FakeKubeApi, make_client: Callable[[str], KubernetesApi]
) -> None:
    hook = kserve_hook(make_client(fake.url))
    first, second = await fire_twice(hook)

    assert (first.outcome, second.outcome) == ("success", "noop")
    assert first.detail["previous_canary_traffic_percent"] == 10
    assert patches_sent(fake) == [
        (
            f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices/digits",
            MERGE_PATCH,
            {"spec": {"predictor": {"canaryTrafficPercent": 0}}},
        )
    ]
    stored = fake.get("serving.kserve.io", "v1beta1", NAMESPACE, "inferenceservices", "digits")
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert stored["spec"]["predictor"]["model"]["storageUri"] == "s3://models/digits/3"


async def test_missing_object_is_a_recorded_failure(fake: FakeKubeApi) -> None:
    del fake.objects[("serving.kserve.io", "v1beta1", NAMESPACE, "inferenceservices", "digits")]
    result = await kserve_hook(http_client(fake.url)).fire(EVENT, dry_run=False)

    assert result.outcome == "failed"
    assert result.detail["error"] == (
        '404 NotFound: inferenceservices.serving.kserve.io "digits" not found'
    )


def test_connection_with_api_url_uses_the_http_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBE_TOKEN_FOR_TEST", "t0k")
    api = kubernetes_api_for(
        KubernetesConnection(api_url="https://10.0.0.1:6443",
                             token=SecretSource(env="KUBE_TOKEN_FOR_TEST"))
    )
    assert isinstance(api, HttpKubernetesApi)
    assert api._headers()["Authorization"] == "Bearer t0k"


# -- the fake is only useful if it is as strict as the real API server ----------------------


async def _raw_patch(url: str, path: str, body: Any, content_type: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.patch(
        url + path, json=body,
        headers={"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}"},
    ) as response:
        return response.status, await response.json()


async def test_fake_rejects_strategic_merge_on_custom_resources(fake: FakeKubeApi) -> None:
    status, body = await _raw_patch(
        fake.url, f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/rollouts/digits/status",
        {"status": {"abort": True}}, STRATEGIC_MERGE_PATCH,
    )
    assert (status, body["kind"], body["reason"]) == (415, "Status", "UnsupportedMediaType")


async def test_fake_ignores_status_sent_to_the_main_resource(fake: FakeKubeApi) -> None:
    status, body = await _raw_patch(
        fake.url, f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/rollouts/digits",
        {"status": {"abort": True}}, MERGE_PATCH,
    )
    assert status == 200
    assert "abort" not in body["status"]


async def test_fake_fails_json_patch_replace_of_a_missing_path(fake: FakeKubeApi) -> None:
    status, body = await _raw_patch(
        fake.url, DEPLOYMENT_PATH,
        [{"op": "replace", "path": "/spec/nothing", "value": 1}], JSON_PATCH,
    )
    assert (status, body["reason"]) == (422, "Invalid")


async def test_client_raises_typed_error_on_status(fake: FakeKubeApi) -> None:
    api = HttpKubernetesApi(fake.url, token=TOKEN)
    with pytest.raises(KubernetesApiError) as caught:
        await api.patch(DEPLOYMENT_PATH, {"spec": {}}, content_type="application/json")
    assert caught.value.status == 415
    assert caught.value.reason == "UnsupportedMediaType"


def test_look_alike_replicaset_with_unparsable_revision_is_ignored() -> None:
    from service.hooks.deployment_rollback import plan_rollback

    objects = history() + [
        replicaset("digits-bad", revision=0, image="digits:x", pod_hash="bad",
                   extra_annotations={"deployment.kubernetes.io/revision": "not-a-number"})
    ]
    plan = plan_rollback(deployment(), objects)
    assert (plan.kind, plan.to_revision, plan.to_replicaset) == ("patch", 2, "digits-7f9c5d6b4")


# -- the shipped RBAC covers exactly what the hooks do --------------------------------------


def _rbac_rules() -> list[dict[str, Any]]:
    from pathlib import Path

    import yaml

    import service.hooks

    path = Path(service.hooks.__file__).parent / "rbac.yaml"
    role = next(doc for doc in yaml.safe_load_all(path.read_text()) if doc["kind"] == "Role")
    return list(role["rules"])


def _allowed(rules: list[dict[str, Any]], method: str, path: str) -> bool:
    parts = path.split("?")[0].strip("/").split("/")
    # /apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}[/{sub}]]
    group, plural, rest = parts[1], parts[5], parts[6:]
    resource = plural + (f"/{rest[1]}" if len(rest) > 1 else "")
    verb = {"GET": "get" if rest else "list", "PATCH": "patch"}[method]
    name = rest[0] if rest else None
    targets = {"digits": {"DEPLOYMENT", "ROLLOUT", "INFERENCE_SERVICE"}}
    for rule in rules:
        names = rule.get("resourceNames")
        if (group in rule["apiGroups"] and resource in rule["resources"]
                and verb in rule["verbs"]
                and (names is None or (name is not None and set(names) & targets[name]))):
            return True
    return False


async def test_shipped_rbac_allows_every_request_the_hooks_make(fake: FakeKubeApi) -> None:
    api = http_client(fake.url)
    await deployment_hook(api).fire(EVENT, dry_run=False)
    await argo_hook(api).fire(EVENT, dry_run=False)
    await kserve_hook(api).fire(EVENT, dry_run=False)
    rules = _rbac_rules()

    assert len(fake.requests) == 7
    assert [r for r in fake.requests if not _allowed(rules, *r)] == []
    # ... and nothing more: patching a Rollout's spec or reading Secrets stays forbidden.
    assert not _allowed(rules, "PATCH", "/apis/argoproj.io/v1alpha1/namespaces/m/rollouts/digits")
    assert not _allowed(rules, "GET", "/apis/apps/v1/namespaces/m/deployments")


def _after_controller_rolled_back(fake: FakeKubeApi) -> None:
    """What the deployment controller leaves after an undo from 3 to 2: revision 2's
    ReplicaSet re-used as revision 4, with revision-history "2"."""
    reused = replicaset("digits-7f9c5d6b4", revision=4, image="digits:2", pod_hash="7f9c5d6b4",
                        replicas=2,
                        extra_annotations={"deployment.kubernetes.io/revision-history": "2"})
    fake.put(reused)
    fake.put(deployment(image="digits:2", revision=4))


async def test_rollback_in_place_is_a_noop_even_after_a_restart(fake: FakeKubeApi) -> None:
    _after_controller_rolled_back(fake)
    # A fresh hook (a restarted outrider) sees the same incident again.
    result = await deployment_hook(http_client(fake.url)).fire(EVENT, dry_run=False)

    assert result.outcome == "noop"
    assert result.detail["reason"] == (
        "revision 4 already restores revision 2: a rollback is in place"
    )
    assert fake.patches == []


async def test_allow_repeat_rollback_undoes_like_kubectl(fake: FakeKubeApi) -> None:
    _after_controller_rolled_back(fake)
    settings = KubernetesDeploymentHookSettings(
        type="kubernetes-deployment", name="undo", namespace=NAMESPACE, deployment="digits",
        allow_repeat_rollback=True,
    )
    result = await KubernetesDeploymentHook(settings, http_client(fake.url)).fire(
        EVENT, dry_run=False
    )
    # kubectl toggles: the previous revision is now 3, the one rolled away from.
    assert (result.outcome, result.detail["to_revision"]) == ("success", 3)
    assert fake.patches[0].body[0]["value"] == pod_template("digits:3")


async def test_slow_api_server_times_out_as_a_recorded_failure() -> None:
    import asyncio
    import socket

    from aiohttp import web

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/{tail:.*}", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    try:
        api = HttpKubernetesApi(f"http://127.0.0.1:{sock.getsockname()[1]}",
                                timeout_seconds=0.2)
        result = await deployment_hook(api).fire(EVENT, dry_run=False)
    finally:
        await runner.cleanup()
    assert result.outcome == "failed"
    assert result.detail["error"].startswith("0 Unreachable: GET http://127.0.0.1:")


# -- what the three Kubernetes-object hooks share: dry run, a refused PATCH, resolve ----------


class PatchRefusingApi:
    """Reads through ``inner`` but refuses every PATCH, as a denying admission webhook does."""

    def __init__(self, inner: KubernetesApi) -> None:
        self._inner = inner

    async def get(self, path: str) -> dict[str, Any]:
        return await self._inner.get(path)

    async def list(self, path: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        return await self._inner.list(path, label_selector=label_selector)

    async def patch(self, path: str, body: Any, *, content_type: str) -> dict[str, Any]:
        raise KubernetesApiError(403, "Forbidden", "denied by admission webhook")


OBJECT_HOOKS = [
    pytest.param(deployment_hook, f"roll back deployment {NAMESPACE}/digits to revision 2",
                 id="deployment"),
    pytest.param(argo_hook, f"abort rollout {NAMESPACE}/digits", id="argo"),
    pytest.param(kserve_hook,
                 f"set canaryTrafficPercent=0 on inferenceservice {NAMESPACE}/digits",
                 id="kserve"),
]


async def test_argo_and_kserve_dry_runs_report_the_patch_and_send_nothing(
    fake: FakeKubeApi,
) -> None:
    argo = await argo_hook(http_client(fake.url)).fire(EVENT, dry_run=True)
    kserve = await kserve_hook(http_client(fake.url)).fire(EVENT, dry_run=True)

    assert (argo.outcome, dict(argo.detail)) == ("dry_run", {
        "namespace": NAMESPACE, "rollout": "digits", "patch": {"status": {"abort": True}}
    })
    assert (kserve.outcome, dict(kserve.detail)) == ("dry_run", {
        "namespace": NAMESPACE,
        "inference_service": "digits",
        "previous_canary_traffic_percent": 10,
        "patch": {"spec": {"predictor": {"canaryTrafficPercent": 0}}},
    })
    assert fake.patches == []


@pytest.mark.parametrize(("make_hook", "action"), OBJECT_HOOKS)
async def test_refused_patch_is_a_recorded_failure(
    fake: FakeKubeApi, make_hook: Callable[[KubernetesApi], Hook], action: str
) -> None:
    result = await make_hook(PatchRefusingApi(http_client(fake.url))).fire(EVENT, dry_run=False)

    assert (result.outcome, result.action) == ("failed", action)
    assert result.detail["error"] == "403 Forbidden: denied by admission webhook"
    assert fake.patches == []


@pytest.mark.parametrize(("make_hook", "action"), OBJECT_HOOKS)
async def test_kubernetes_hooks_do_nothing_on_resolve(
    fake: FakeKubeApi, make_hook: Callable[[KubernetesApi], Hook], action: str
) -> None:
    hook = make_hook(http_client(fake.url))

    assert await hook.resolve(EVENT, dry_run=False) is None
    assert fake.requests == []
