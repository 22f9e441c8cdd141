"""Recorded objects (shaped as ``kubectl get -o json`` prints them) for the Kubernetes tests."""

from __future__ import annotations

import json
from typing import Any

NAMESPACE = "models"
DEPLOYMENT_UID = "0b8f1f5e-7d0c-4c55-9d0e-3f1d2b6a9c01"
LAST_APPLIED = json.dumps(
    {"apiVersion": "apps/v1", "kind": "Deployment",
     "metadata": {"name": "digits", "namespace": NAMESPACE}},
    separators=(",", ":"),
)


def pod_template(image: str, *, pod_hash: str | None = None) -> dict[str, Any]:
    """A pod template as the API server returns it (creationTimestamp null, defaults filled)."""
    labels = {"app": "digits"}
    if pod_hash is not None:
        labels["pod-template-hash"] = pod_hash
    return {
        "metadata": {"creationTimestamp": None, "labels": labels},
        "spec": {
            "containers": [
                {
                    "name": "server",
                    "image": image,
                    "ports": [{"containerPort": 8001, "protocol": "TCP"}],
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                }
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "securityContext": {},
            "schedulerName": "default-scheduler",
        },
    }


def deployment(
    *, image: str = "digits:3", revision: int = 3, paused: bool = False
) -> dict[str, Any]:
    """The Deployment, currently at ``revision`` running ``image``."""
    spec: dict[str, Any] = {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "digits"}},
        "template": pod_template(image),
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
        },
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
    }
    if paused:
        spec["paused"] = True
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "digits",
            "namespace": NAMESPACE,
            "uid": DEPLOYMENT_UID,
            "resourceVersion": "51234",
            "generation": 3,
            "creationTimestamp": "2026-11-20T09:00:00Z",
            "labels": {"app": "digits"},
            "annotations": {
                "deployment.kubernetes.io/revision": str(revision),
                "kubectl.kubernetes.io/last-applied-configuration": LAST_APPLIED,
                "kubernetes.io/change-cause": f"image {image}",
                "team": "ml-platform",
            },
        },
        "spec": spec,
        "status": {"observedGeneration": 3, "replicas": 2, "readyReplicas": 2},
    }


def replicaset(
    name: str,
    *,
    revision: int,
    image: str,
    pod_hash: str,
    owner_uid: str = DEPLOYMENT_UID,
    owner_name: str = "digits",
    replicas: int = 0,
    extra_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A ReplicaSet owned (controlled) by the Deployment with ``owner_uid``."""
    annotations = {
        "deployment.kubernetes.io/desired-replicas": "2",
        "deployment.kubernetes.io/max-replicas": "3",
        "deployment.kubernetes.io/revision": str(revision),
        "kubernetes.io/change-cause": f"image {image}",
        "team": "ml-platform",
    }
    annotations.update(extra_annotations or {})
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": f"rs-{name}",
            "labels": {"app": "digits", "pod-template-hash": pod_hash},
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": owner_name,
                    "uid": owner_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "digits", "pod-template-hash": pod_hash}},
            "template": pod_template(image, pod_hash=pod_hash),
        },
        "status": {"replicas": replicas},
    }


def history() -> list[dict[str, Any]]:
    """Revisions 1-3 of the Deployment plus two look-alikes it does not control."""
    return [
        replicaset("digits-6d4b7c9f8", revision=1, image="digits:1", pod_hash="6d4b7c9f8"),
        replicaset(
            "digits-7f9c5d6b4",
            revision=2,
            image="digits:2",
            pod_hash="7f9c5d6b4",
            extra_annotations={"outrider.dev/validated": "true"},
        ),
        replicaset("digits-5c8d9f7b6", revision=3, image="digits:3", pod_hash="5c8d9f7b6",
                   replicas=2),
        # Same labels, controlled by another Deployment that was deleted and recreated:
        # kubectl ignores it (controller uid differs) even though its revision is higher.
        replicaset("digits-old-9a8b7c6d5", revision=7, image="digits:0", pod_hash="9a8b7c6d5",
                   owner_uid="deleted-deployment-uid"),
    ]


def rollout(*, aborted: bool = False) -> dict[str, Any]:
    """An Argo Rollouts Rollout mid-canary."""
    status: dict[str, Any] = {"phase": "Paused", "currentStepIndex": 1, "stableRS": "7f9c5d6b4"}
    if aborted:
        status["abort"] = True
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "digits", "namespace": NAMESPACE, "generation": 4},
        "spec": {
            "replicas": 4,
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
        },
        "status": status,
    }


def inference_service(*, canary_percent: int | None = 10) -> dict[str, Any]:
    """A KServe InferenceService with a canary taking ``canary_percent`` of traffic."""
    predictor: dict[str, Any] = {
        "model": {"modelFormat": {"name": "onnx"}, "storageUri": "s3://models/digits/3"}
    }
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "digits", "namespace": NAMESPACE, "generation": 2},
        "spec": {"predictor": predictor},
        "status": {"components": {"predictor": {"latestReadyRevision": "digits-predictor-00002"}}},
    }
