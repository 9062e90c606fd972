"""Every CI values file renders objects the local kube-apiserver accepts.

Two independent checks per values file: kubeconform against JSON schemas generated from the
server's own OpenAPI (strict: unknown fields fail), and `kubectl apply --dry-run=server`,
which runs the server's validation and admission without persisting anything.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from process_runner.harness import wait_for
from streamvane_stack import Endpoints
from tools.chart import CHART, CI_VALUES, REPO, template, tool
from tools.cluster import kubectl, namespaces, openapi_documents, unique_name
from tools.kubeschemas import resource_schemas, schema_location, write_schemas

pytestmark = pytest.mark.integration

SERVED_KINDS = {
    ("kopf.dev", "v1", "KopfPeering"),
    ("kopf.dev", "v1", "ClusterKopfPeering"),
    ("monitoring.coreos.com", "v1", "PodMonitor"),
    ("monitoring.coreos.com", "v1", "PrometheusRule"),
}
"""Custom kinds the chart renders objects of; their CRDs must be served before validating."""


@pytest.fixture(scope="module")
def served_crds(stack: Endpoints) -> None:
    """The chart's own CRDs and the prometheus-operator CRDs in the server, so the custom
    resources the chart renders (KopfPeering, PodMonitor, PrometheusRule) validate for real."""
    script = REPO / "e2e" / "tools" / "prometheus-operator-crds.sh"
    paths = subprocess.run([str(script)], check=True, capture_output=True, text=True).stdout
    for path in [str(CHART / "crds"), *paths.split()]:
        kubectl(stack.kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", path)
    kubectl(
        stack.kubeconfig,
        "wait",
        "--for=condition=Established",
        "crd/kopfpeerings.kopf.dev",
        "crd/clusterkopfpeerings.kopf.dev",
        "crd/podmonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    )


@pytest.fixture(scope="module")
def schema_dir(
    stack: Endpoints, served_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    directory = tmp_path_factory.mktemp("kube-schemas")

    def served() -> dict[tuple[str, str, str], Any] | None:
        # The server publishes a new CRD's OpenAPI a moment after it is Established.
        schemas = resource_schemas(openapi_documents(stack.kubeconfig))
        return schemas if schemas.keys() >= SERVED_KINDS else None

    schemas = wait_for("the custom kinds' schemas in the server's OpenAPI", served, timeout_s=60)
    assert isinstance(schemas, dict)
    write_schemas(schemas, directory)
    return directory


def _with_unique_namespaces(values: Path, tmp_path: Path, prefix: str) -> tuple[Path, list[str]]:
    """The values file with its watched namespaces (if any) renamed uniquely for this test."""
    data = yaml.safe_load(values.read_text()) or {}
    watched = data.get("watch", {}).get("namespaces", [])
    renamed = [f"{prefix}-w{i}" for i in range(len(watched))]
    if watched:
        data["watch"]["namespaces"] = renamed
    unique = tmp_path / values.name
    unique.write_text(yaml.safe_dump(data))
    return unique, renamed


@pytest.fixture(params=CI_VALUES, ids=lambda p: p.name)
def rendered(request: pytest.FixtureRequest, stack: Endpoints, tmp_path: Path) -> Iterator[str]:
    """The chart rendered (CRDs and test hook included) into fresh namespaces."""
    release_namespace = unique_name("helm-validate")
    values, watched = _with_unique_namespaces(request.param, tmp_path, release_namespace)
    with namespaces(stack.kubeconfig, release_namespace, *watched):
        yield template(values, namespace=release_namespace, include_crds=True)


def test_rendered_chart_passes_kubeconform_when_schemas_come_from_the_server(
    rendered: str, schema_dir: Path
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
        input=rendered,
        capture_output=True,
        text=True,
    )
    report = json.loads(result.stdout)
    assert result.returncode == 0, json.dumps(report["resources"], indent=2)
    summary = report["summary"]
    assert (
        summary["valid"] > 0 and summary["invalid"] == summary["errors"] == summary["skipped"] == 0
    )


def test_rendered_chart_is_accepted_when_applied_with_server_dry_run(
    rendered: str, stack: Endpoints, served_crds: None
) -> None:
    output = kubectl(
        stack.kubeconfig,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=streamvane-chart-test",
        "--dry-run=server",
        "-f",
        "-",
        stdin=rendered,
    )
    applied = [line for line in output.splitlines() if "(server dry run)" in line]
    assert len(applied) == len([d for d in yaml.safe_load_all(rendered) if d]), output
