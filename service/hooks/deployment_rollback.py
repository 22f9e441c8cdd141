"""Plans a Deployment rollback the way ``kubectl rollout undo`` does, without any I/O.

Facts followed (kubectl's Deployment rollbacker): the ReplicaSets considered are those the
Deployment controls; the target is the one with the second-highest
``deployment.kubernetes.io/revision``; a paused Deployment is refused; when the target's pod
template equals the Deployment's (ignoring ``pod-template-hash``) nothing is done; otherwise
one JSON patch replaces ``/spec/template`` (the target template minus ``pod-template-hash``)
and ``/metadata/annotations`` (the Deployment's own bookkeeping annotations kept, every other
annotation taken from the target ReplicaSet).

One guard kubectl does not have, on by default: when the Deployment runs a ReplicaSet that the
controller re-used for an earlier template (it then carries
``deployment.kubernetes.io/revision-history``), a rollback is already in place and undoing
again would flip back to the revision that was rolled away from; that is a no-op here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
#: Annotations that stay as the Deployment has them instead of being copied from the ReplicaSet.
ANNOTATIONS_KEPT_FROM_DEPLOYMENT = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        "deployment.kubernetes.io/revision",
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


class RollbackPlanError(ValueError):
    """The objects do not allow a rollback (no history, malformed objects)."""


@dataclass(frozen=True)
class RollbackPlan:
    """What to do: ``patch`` the Deployment, nothing (``noop``), or nothing (``refused``)."""

    kind: Literal["patch", "noop", "refused"]
    reason: str
    to_revision: int
    to_replicaset: str
    from_revision: int | None = None
    patch: list[dict[str, Any]] = field(default_factory=list)


def revision_of(replicaset: dict[str, Any]) -> int | None:
    """The ReplicaSet's revision annotation as an int, or None if absent or unparsable."""
    annotations = (replicaset.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(REVISION_ANNOTATION)
    if not isinstance(value, str):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def controlled_by(replicaset: dict[str, Any], deployment: dict[str, Any]) -> bool:
    """Whether the Deployment is the ReplicaSet's controller (owner reference with its uid)."""
    uid = (deployment.get("metadata") or {}).get("uid")
    owners = (replicaset.get("metadata") or {}).get("ownerReferences") or []
    return any(owner.get("controller") is True and owner.get("uid") == uid for owner in owners)


def _semantic(value: Any) -> Any:
    """Drop empty values so that absent, null and empty compare equal, like apimachinery."""
    if isinstance(value, dict):
        cleaned = {k: _semantic(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_semantic(v) for v in value]
    return value


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(template)
    labels = (stripped.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return stripped


def templates_equal_ignoring_hash(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether two pod templates are equal once ``pod-template-hash`` labels are removed."""
    return bool(_semantic(_without_hash(first)) == _semantic(_without_hash(second)))


def previous_replicaset(
    deployment: dict[str, Any], replicasets: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any], int, int]:
    """The ReplicaSets at the latest and one revision back, and their revisions:
    (previous, latest, previous revision, latest revision)."""
    latest: tuple[int, dict[str, Any] | None] = (-1, None)
    previous: tuple[int, dict[str, Any] | None] = (-1, None)
    for replicaset in replicasets:
        if not controlled_by(replicaset, deployment):
            continue
        revision = revision_of(replicaset)
        if revision is None:
            continue
        if revision > latest[0]:
            previous = latest
            latest = (revision, replicaset)
        elif revision > previous[0]:
            previous = (revision, replicaset)
    if previous[1] is None or latest[1] is None:
        name = (deployment.get("metadata") or {}).get("name", "?")
        raise RollbackPlanError(f"no rollout history found for deployment {name!r}")
    return previous[1], latest[1], previous[0], latest[0]


def rollback_patch(
    deployment: dict[str, Any], replicaset: dict[str, Any]
) -> list[dict[str, Any]]:
    """The JSON patch (RFC 6902) that restores ``replicaset``'s template into ``deployment``."""
    template = _without_hash((replicaset.get("spec") or {}).get("template") or {})
    deployment_annotations = (deployment.get("metadata") or {}).get("annotations") or {}
    replicaset_annotations = (replicaset.get("metadata") or {}).get("annotations") or {}
    annotations = {
        key: value
        for key, value in deployment_annotations.items()
        if key in ANNOTATIONS_KEPT_FROM_DEPLOYMENT
    }
    for key, value in replicaset_annotations.items():
        if key not in ANNOTATIONS_KEPT_FROM_DEPLOYMENT:
            annotations[key] = value
    return [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]


def plan_rollback(
    deployment: dict[str, Any],
    replicasets: list[dict[str, Any]],
    *,
    allow_repeat: bool = False,
) -> RollbackPlan:
    """Decide what ``kubectl rollout undo`` would do for these objects.

    With ``allow_repeat`` false, a Deployment already running a re-used earlier revision
    (a rollback in place) is a no-op. Raises RollbackPlanError when there is no previous
    revision.
    """
    target, latest, to_revision, latest_revision = previous_replicaset(deployment, replicasets)
    target_name = str((target.get("metadata") or {}).get("name", ""))
    current_revision = latest_revision if latest_revision >= 0 else None
    spec = deployment.get("spec") or {}
    if spec.get("paused"):
        name = (deployment.get("metadata") or {}).get("name", "?")
        return RollbackPlan(
            "refused",
            f"deployment {name!r} is paused; resume it before rolling back",
            to_revision,
            target_name,
            current_revision,
        )
    target_template = (target.get("spec") or {}).get("template") or {}
    if templates_equal_ignoring_hash(target_template, spec.get("template") or {}):
        return RollbackPlan(
            "noop",
            f"current template already matches revision {to_revision}",
            to_revision,
            target_name,
            current_revision,
        )
    latest_annotations = (latest.get("metadata") or {}).get("annotations") or {}
    restored = latest_annotations.get(REVISION_HISTORY_ANNOTATION)
    latest_template = (latest.get("spec") or {}).get("template") or {}
    if (
        not allow_repeat
        and restored
        and templates_equal_ignoring_hash(latest_template, spec.get("template") or {})
    ):
        return RollbackPlan(
            "noop",
            f"revision {latest_revision} already restores revision {restored}: "
            "a rollback is in place",
            to_revision,
            target_name,
            current_revision,
        )
    return RollbackPlan(
        "patch",
        f"roll back to revision {to_revision}",
        to_revision,
        target_name,
        current_revision,
        rollback_patch(deployment, target),
    )
