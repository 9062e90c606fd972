"""``engine: KEDA`` stages render a ScaledObject (and a TriggerAuthentication for the Pulsar
token) that KEDA's own CRD schemas accept: kubeconform (strict) against schemas the local
kube-apiserver serves once KEDA's CRDs from its Go module are installed, and a server-side
dry-run apply. The local stack has no KEDA operator nor HPA controller, so nothing scales
here: the Builtin engine is what the e2e tests exercise."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from process_runner.harness import wait_for
from streamvane_operator.api.pipeline import PipelineSpec
from streamvane_operator.render.labels import Owner
from streamvane_operator.render.pipeline import render_pipeline
from streamvane_operator.render.worker import WorkerDefaults
from streamvane_stack import Endpoints
from tools.chart import REPO, tool
from tools.cluster import kubectl, namespaces, openapi_documents, unique_name
from tools.kubeschemas import resource_schemas, schema_location, write_schemas

pytestmark = pytest.mark.integration

KEDA_KINDS = {
    ("keda.sh", "v1alpha1", "ScaledObject"),
    ("keda.sh", "v1alpha1", "TriggerAuthentication"),
}


@pytest.fixture(scope="module")
def schema_dir(stack: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Path:
    script = REPO / "e2e" / "tools" / "keda-crds.sh"
    paths = subprocess.run([str(script)], check=True, capture_output=True, text=True).stdout
    for path in paths.split():
        kubectl(stack.kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", path)
    for crd in ("scaledobjects.keda.sh", "triggerauthentications.keda.sh"):
        kubectl(stack.kubeconfig, "wait", "--for=condition=Established", f"crd/{crd}")

    def served() -> dict[tuple[str, str, str], object] | None:
        schemas = resource_schemas(openapi_documents(stack.kubeconfig))
        return schemas if schemas.keys() >= KEDA_KINDS else None

    schemas = wait_for("KEDA's schemas in the server's OpenAPI", served, timeout_s=60)
    assert isinstance(schemas, dict)
    directory = tmp_path_factory.mktemp("keda-schemas")
    write_schemas(schemas, directory)
    return directory


def keda_objects(namespace: str, partitions: int = 0) -> str:
    spec = PipelineSpec.model_validate(
        {
            "pulsar": {
                "namespace": "content",
                "adminUrl": "http://127.0.0.1:8080",
                "authSecretRef": {"name": "pulsar-jwt"},
            },
            "topics": {"partitions": partitions},
            "stages": [
                {
                    "name": "relay",
                    "type": "passthrough",
                    "input": {"topic": "items"},
                    "scaling": {
                        "minReplicas": 0,
                        "maxReplicas": 4,
                        "targetLagSeconds": 30,
                        "engine": "KEDA",
                    },
                }
            ],
        }
    )
    owner = Owner("v1", "ConfigMap", "cu", namespace, "00000000-0000-0000-0000-000000000000")
    objects = render_pipeline(owner, spec, {}, WorkerDefaults("worker:test")).objects
    keda = [dict(o) for o in objects if o["apiVersion"].startswith("keda.sh/")]
    for obj in keda:
        del obj["metadata"]["ownerReferences"]  # no owner exists for a dry run
    assert {o["kind"] for o in keda} == {"ScaledObject", "TriggerAuthentication"}
    return yaml.safe_dump_all(keda)


@pytest.mark.parametrize("partitions", [0, 4])
def test_keda_objects_pass_kubeconform_when_checked_against_kedas_crds(
    schema_dir: Path, partitions: int
) -> None:
    result = subprocess.run(
        [
            str(tool("kubeconform")),
            "-schema-location",
            schema_location(schema_dir),
            "-strict",
            "-summary",
            "-output",
            "json",
        ],
        input=keda_objects("default", partitions),
        capture_output=True,
        text=True,
    )
    report = json.loads(result.stdout)
    assert result.returncode == 0, json.dumps(report["resources"], indent=2)
    summary = report["summary"]
    assert summary["valid"] == 2 and summary["invalid"] == summary["errors"] == 0


def test_keda_objects_are_accepted_when_applied_with_server_dry_run(
    stack: Endpoints, schema_dir: Path
) -> None:
    with namespaces(stack.kubeconfig, unique_name("keda")) as (namespace,):
        output = kubectl(
            stack.kubeconfig,
            "apply",
            "--server-side",
            "--dry-run=server",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=keda_objects(namespace),
        )
    assert output.count("(server dry run)") == 2, output
