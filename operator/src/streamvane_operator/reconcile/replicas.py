"""Replicas of autoscaled stages belong to the autoscaler, not to the operator's apply.

Rendered Deployments of autoscaled stages leave ``replicas`` out; a new one is created at
minReplicas, and ``hand_over_replicas`` makes the autoscaler's field manager own the field
(server-side apply through the scale subresource) before the operator's apply stops setting
it, so the apply never resets it (a field nobody owns any more is reset to its default).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from streamvane_operator.api.common import Manifest
from streamvane_operator.api.pipeline import PipelineSpec, ScalingEngine, StageSpec
from streamvane_operator.kube.client import Kube, ObjectRef
from streamvane_operator.reconcile.status import stage_of
from streamvane_operator.render.labels import AUTOSCALER_FIELD_MANAGER


def builtin_autoscaled(spec: PipelineSpec) -> list[StageSpec]:
    """The stages whose replicas the operator's own loop decides."""
    return [
        s for s in spec.stages if s.scaling.autoscaled and s.scaling.engine is ScalingEngine.BUILTIN
    ]


def with_initial_replicas(
    spec: PipelineSpec, objects: Sequence[Manifest], observed: Sequence[Manifest]
) -> list[Manifest]:
    """A Deployment of an autoscaled stage that does not exist yet starts at minReplicas
    (its manifest leaves replicas out, which would mean 1)."""
    existing = {ObjectRef.of(o) for o in observed}
    minimum = {s.name: s.scaling.min_replicas for s in spec.stages if s.scaling.autoscaled}
    result = []
    for obj in objects:
        stage = stage_of(obj)
        if obj["kind"] == "Deployment" and stage in minimum and ObjectRef.of(obj) not in existing:
            obj = {**obj, "spec": {**obj["spec"], "replicas": minimum[stage]}}
        result.append(obj)
    return result


def hand_over_replicas(kube: Kube, spec: PipelineSpec, deployments: Iterable[Manifest]) -> None:
    """Make the autoscaler's field manager own spec.replicas of each Builtin-autoscaled
    stage's Deployment (keeping the count, within minReplicas..maxReplicas)."""
    scaling = {s.name: s.scaling for s in builtin_autoscaled(spec)}
    for deployment in deployments:
        stage = scaling.get(stage_of(deployment))
        if deployment["kind"] != "Deployment" or stage is None:
            continue
        if _owns_replicas(deployment, AUTOSCALER_FIELD_MANAGER):
            continue
        current = int(deployment["spec"].get("replicas", 1))
        replicas = min(max(current, stage.min_replicas), stage.max_replicas)
        kube.scale(ObjectRef.of(deployment), replicas, AUTOSCALER_FIELD_MANAGER)


def _owns_replicas(obj: Manifest, manager: str) -> bool:
    for entry in obj["metadata"].get("managedFields") or []:
        fields = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if entry.get("manager") == manager and "f:replicas" in fields:
            return True
    return False
