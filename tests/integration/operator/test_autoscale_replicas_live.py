"""Against the real kube-apiserver: once the autoscaler owns spec.replicas (server-side apply
through the scale subresource), the operator's apply without replicas leaves them alone; and
without that hand-over the same apply would reset them (the control)."""

from __future__ import annotations

from typing import Any

import pytest

from streamvane_operator.api.pipeline import PipelineSpec
from streamvane_operator.kube.client import KubeClient, ObjectRef
from streamvane_operator.reconcile.replicas import hand_over_replicas, with_initial_replicas
from streamvane_operator.render.labels import AUTOSCALER_FIELD_MANAGER, Owner
from streamvane_operator.render.pipeline import render_pipeline
from streamvane_operator.render.worker import WorkerDefaults

pytestmark = pytest.mark.integration


def pipeline(scaling: dict[str, Any], batch: int = 16) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "pulsar": {"namespace": "unused"},
            "stages": [
                {
                    "name": "relay",
                    "type": "passthrough",
                    "input": {"topic": "in"},
                    "batching": {"maxBatchSize": batch},
                    "scaling": scaling,
                }
            ],
        }
    )


def deployment(namespace: str, spec: PipelineSpec) -> dict[str, Any]:
    owner = Owner("v1", "ConfigMap", "cu", namespace, "00000000-0000-0000-0000-000000000000")
    objects = render_pipeline(owner, spec, {}, WorkerDefaults("worker:test")).objects
    (found,) = [o for o in objects if o["kind"] == "Deployment"]
    # No owner object exists here; the API server needs none for this check.
    del found["metadata"]["ownerReferences"]
    return found


def replicas(kube: KubeClient, ref: ObjectRef) -> int:
    obj = kube.get(ref)
    assert obj is not None
    return int(obj["spec"]["replicas"])


AUTOSCALED = {"minReplicas": 0, "maxReplicas": 4, "targetLagSeconds": 30}


def test_apply_without_replicas_keeps_the_autoscalers_count_when_it_owns_the_field(
    kube: KubeClient, namespace: str
) -> None:
    spec = pipeline(AUTOSCALED)
    first = deployment(namespace, spec)
    assert "replicas" not in first["spec"]
    (create,) = with_initial_replicas(spec, [first], [])
    kube.apply(create)
    ref = ObjectRef.of(first)
    hand_over_replicas(kube, spec, [kube.get(ref) or {}])
    assert replicas(kube, ref) == 0
    kube.scale(ref, 3, AUTOSCALER_FIELD_MANAGER)

    edited = deployment(namespace, pipeline(AUTOSCALED, batch=8))  # a new pod template
    kube.apply(edited)

    assert replicas(kube, ref) == 3
    obj = kube.get(ref)
    assert obj is not None
    assert obj["spec"]["template"] == edited["spec"]["template"] | obj["spec"]["template"]


def test_apply_without_replicas_resets_them_when_nobody_else_owns_the_field(
    kube: KubeClient, namespace: str
) -> None:
    fixed = deployment(namespace, pipeline({"minReplicas": 3, "maxReplicas": 3}))
    kube.apply(fixed)
    ref = ObjectRef.of(fixed)
    assert replicas(kube, ref) == 3

    kube.apply(deployment(namespace, pipeline(AUTOSCALED)))

    assert replicas(kube, ref) == 1  # the API server's default: why the hand-over exists
