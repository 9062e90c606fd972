"""A stage's ``pod`` overrides rendered into its Deployment's pod template (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from streamvane_operator.api.pipeline import PipelineSpec
from streamvane_operator.render.labels import CONFIG_HASH_ANNOTATION, Owner, stage_labels
from streamvane_operator.render.pipeline import render_pipeline
from streamvane_operator.render.worker import WorkerDefaults

OWNER = Owner("streamvane.io/v1alpha1", "Pipeline", "cu", "media", "uid-1")
GPU_POD = {
    "nodeSelector": {"cloud.example.com/accelerator": "nvidia-l4"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"streamvane.io/stage": "embed"}},
                    },
                }
            ]
        }
    },
    "priorityClassName": "streaming-high",
    "serviceAccountName": "embed-workload-identity",
    "imagePullSecrets": [{"name": "registry-creds"}],
    "labels": {"team": "ml-infra", "cost-center": "cu-42"},
    "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
}


def spec(pod: dict[str, Any] | None) -> dict[str, Any]:
    stage: dict[str, Any] = {"name": "embed", "type": "passthrough", "input": {"topic": "items"}}
    if pod is not None:
        stage["pod"] = pod
    return {"pulsar": {"namespace": "content"}, "stages": [stage]}


def template(raw: dict[str, Any]) -> dict[str, Any]:
    rendered = render_pipeline(OWNER, PipelineSpec.model_validate(raw), {}, WorkerDefaults("w:1"))
    (deployment,) = [o for o in rendered.objects if o["kind"] == "Deployment"]
    return dict(deployment["spec"]["template"])


def test_render_pod_overrides_schedule_workers_on_tainted_gpu_nodes_when_set() -> None:
    pod = template(spec(GPU_POD))["spec"]

    assert pod["nodeSelector"] == GPU_POD["nodeSelector"]
    assert pod["tolerations"] == GPU_POD["tolerations"]
    assert pod["affinity"] == GPU_POD["affinity"]
    assert pod["priorityClassName"] == "streaming-high"
    assert pod["serviceAccountName"] == "embed-workload-identity"
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    # Workers never call Kubernetes, whichever account they run as.
    assert pod["automountServiceAccountToken"] is False


def test_render_pod_overrides_add_labels_and_annotations_next_to_the_operators_when_set() -> None:
    meta = template(spec(GPU_POD))["metadata"]

    assert meta["labels"] == {
        "team": "ml-infra",
        "cost-center": "cu-42",
        **stage_labels("cu", "embed"),
    }
    assert meta["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    assert CONFIG_HASH_ANNOTATION in meta["annotations"]


def test_render_pod_overrides_render_no_fields_when_pod_is_absent_or_empty() -> None:
    for raw in (spec(None), spec({})):
        pod = template(raw)["spec"]
        assert not pod.keys() & {
            "nodeSelector",
            "tolerations",
            "affinity",
            "priorityClassName",
            "serviceAccountName",
            "imagePullSecrets",
        }


@pytest.mark.parametrize(
    "labels",
    [
        {"streamvane.io/stage": "other"},
        {"streamvane.io/pipeline": "other"},
        {"app.kubernetes.io/component": "other"},
    ],
)
def test_pod_overrides_are_refused_when_labels_would_replace_the_operators(
    labels: dict[str, str],
) -> None:
    with pytest.raises(ValidationError, match="is set by the operator"):
        PipelineSpec.model_validate(spec({"labels": labels}))


@pytest.mark.parametrize(
    "pod",
    [
        {"labels": {"bad key!": "x"}},
        {"labels": {"team": "not a label value"}},
        {"annotations": {"streamvane.io/config-hash": "0"}},
        {"serviceAccountName": "Not_A_Name"},
        {"nodeselector": {"a": "b"}},
    ],
)
def test_pod_overrides_are_refused_when_a_field_is_invalid(pod: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PipelineSpec.model_validate(spec(pod))
