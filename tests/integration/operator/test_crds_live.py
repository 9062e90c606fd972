"""The generated CRDs and the Kubernetes client against the real kube-apiserver."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamvane_operator.api.common import API_VERSION
from streamvane_operator.kube.client import KubeClient, ObjectRef

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[3] / "crds" / "samples"


def sample(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((SAMPLES / name).read_text()))


def dry_run(kubectl: Any, namespace: str, doc: dict[str, Any]) -> Any:
    return kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(doc)
    )


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_api_server_accepts_sample_when_applied(kubectl: Any, namespace: str, path: Path) -> None:
    result = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path))

    assert result.returncode == 0, result.stderr


def test_api_server_refuses_pipeline_when_min_replicas_exceed_max(
    kubectl: Any, namespace: str
) -> None:
    doc = sample("pipeline-content-understanding.yaml")
    doc["spec"]["stages"][0]["scaling"] = {"minReplicas": 5, "maxReplicas": 2}

    result = dry_run(kubectl, namespace, doc)

    assert result.returncode != 0
    assert "minReplicas must be <= maxReplicas" in result.stderr


@pytest.mark.parametrize(
    ("scaling", "message"),
    [
        ({"minReplicas": 2, "maxReplicas": 2, "targetLagSeconds": 30}, "targetLagSeconds needs"),
        ({"minReplicas": 1, "maxReplicas": 1, "engine": "KEDA"}, "engine KEDA needs room"),
    ],
)
def test_api_server_refuses_pipeline_when_scaling_contradicts_itself(
    kubectl: Any, namespace: str, scaling: dict[str, Any], message: str
) -> None:
    doc = sample("pipeline-content-understanding.yaml")
    doc["spec"]["stages"][0]["scaling"] = scaling

    result = dry_run(kubectl, namespace, doc)

    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({}, "needs input.subscriptionType Failover"),
        (
            {"subscriptionType": "Failover", "scaling": {"minReplicas": 1, "maxReplicas": 2}},
            "needs scaling.maxReplicas 1",
        ),
    ],
)
def test_api_server_refuses_effectively_once_when_it_cannot_hold(
    kubectl: Any, namespace: str, stage: dict[str, Any], message: str
) -> None:
    doc = sample("pipeline-content-understanding.yaml")
    first = doc["spec"]["stages"][0]
    first["delivery"] = {"guarantee": "EffectivelyOnce"}
    if "subscriptionType" in stage:
        first["input"]["subscriptionType"] = stage["subscriptionType"]
    first["scaling"] = stage.get("scaling", {"minReplicas": 1, "maxReplicas": 1})

    result = dry_run(kubectl, namespace, doc)

    assert result.returncode != 0
    assert message in result.stderr
    first["input"]["subscriptionType"] = "Failover"
    first["scaling"] = {"minReplicas": 0, "maxReplicas": 1}
    accepted = dry_run(kubectl, namespace, doc)
    assert accepted.returncode == 0, accepted.stderr


def test_api_server_refuses_pipeline_when_stage_names_repeat(kubectl: Any, namespace: str) -> None:
    doc = sample("pipeline-content-understanding.yaml")
    doc["spec"]["stages"][1]["name"] = "embed"

    result = dry_run(kubectl, namespace, doc)

    assert result.returncode != 0
    assert "Duplicate value" in result.stderr


def test_api_server_refuses_pipeline_when_stage_type_is_unknown(
    kubectl: Any, namespace: str
) -> None:
    doc = sample("pipeline-content-understanding.yaml")
    doc["spec"]["stages"][0]["type"] = "translate"

    result = dry_run(kubectl, namespace, doc)

    assert result.returncode != 0
    assert 'Unsupported value: "translate"' in result.stderr


def test_api_server_refuses_backend_when_both_modes_are_set(kubectl: Any, namespace: str) -> None:
    doc = sample("inferencebackend-triton-local.yaml")
    doc["spec"]["managed"] = {"modelRepository": {"uri": "s3://m"}}

    result = dry_run(kubectl, namespace, doc)

    assert result.returncode != 0
    assert "set exactly one of endpoint or managed" in result.stderr


def test_api_server_refuses_backend_when_a_ca_is_set_without_tls(
    kubectl: Any, namespace: str
) -> None:
    doc = sample("inferencebackend-triton-local.yaml")
    doc["spec"]["endpoint"]["tls"] = {"caSecretRef": {"name": "triton-ca"}}

    result = dry_run(kubectl, namespace, doc)

    assert result.returncode != 0
    assert "caSecretRef needs enabled: true" in result.stderr


def test_api_server_fills_defaults_when_pipeline_omits_them(kubectl: Any, namespace: str) -> None:
    doc = sample("pipeline-passthrough.yaml")

    result = kubectl(
        "apply",
        "--dry-run=server",
        "-o",
        "yaml",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=yaml.safe_dump(doc),
    )

    stored = yaml.safe_load(result.stdout)
    stage = stored["spec"]["stages"][0]
    assert stored["spec"]["topics"] == {
        "partitions": 0,
        "retentionMinutes": 1440,
        "retentionSizeMB": -1,
    }
    assert stage["scaling"] == {
        "minReplicas": 1,
        "maxReplicas": 1,
        "scaleDownDelaySeconds": 60,
        "idleSecondsBeforeZero": 120,
        "engine": "Builtin",
    }
    assert stage["input"]["subscriptionType"] == "Shared"


def _apply_passthrough_sample(kubectl: Any, namespace: str) -> None:
    result = kubectl("apply", "-n", namespace, "-f", str(SAMPLES / "pipeline-passthrough.yaml"))
    assert result.returncode == 0, result.stderr


def test_kubectl_get_shows_printer_columns_when_pipelines_are_listed(
    kubectl: Any, namespace: str
) -> None:
    _apply_passthrough_sample(kubectl, namespace)

    result = kubectl("get", "svp", "-n", namespace)

    assert result.stdout.split()[:9] == [
        "NAME",
        "DEGRADED",
        "REASON",
        "READY",
        "STAGES",
        "BACKLOG",
        "REGIONS",
        "ROLLOUT",
        "AGE",
    ]


def test_kube_client_applies_idempotently_when_object_is_unchanged(
    kube: KubeClient, namespace: str
) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "probe",
            "namespace": namespace,
            "labels": {"streamvane.io/pipeline": "p"},
        },
        "data": {"k": "v"},
    }

    first = kube.apply(config_map)
    second = kube.apply(config_map)

    assert first["metadata"]["resourceVersion"] == second["metadata"]["resourceVersion"]
    managers = {m["manager"] for m in second["metadata"]["managedFields"]}
    assert managers == {"streamvane-operator"}
    (listed,) = kube.list("v1", "ConfigMap", namespace, "streamvane.io/pipeline=p")
    assert listed["kind"] == "ConfigMap" and listed["data"] == {"k": "v"}
    kube.delete(ObjectRef.of(config_map))
    kube.delete(ObjectRef.of(config_map))
    assert kube.get(ObjectRef.of(config_map)) is None


def test_kube_client_writes_status_subresource_when_patched(
    kubectl: Any, kube: KubeClient, namespace: str
) -> None:
    _apply_passthrough_sample(kubectl, namespace)
    ref = ObjectRef(API_VERSION, "Pipeline", namespace, "relay")

    kube.patch_status(ref, {"stagesReady": "0/2", "backlog": 3})

    stored = kube.get(ref)
    assert stored is not None
    assert stored["status"] == {"stagesReady": "0/2", "backlog": 3}


def test_kube_client_reads_secret_value_when_key_exists(kube: KubeClient, namespace: str) -> None:
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "pulsar-jwt", "namespace": namespace},
            "data": {"token": base64.b64encode(b"eyJ.token\n").decode()},
        }
    )

    assert kube.secret_value(namespace, "pulsar-jwt", "token") == "eyJ.token"
