"""The local kube-apiserver is real: kubectl applies a CRD and an object, the client reads them."""

from __future__ import annotations

import subprocess
import textwrap
import uuid
from collections.abc import Iterator

import kubernetes
import pytest

from process_runner.kubectl import kubectl
from streamvane_stack import Endpoints

GROUP = "probe.streamvane.io"


def _apply(stack: Endpoints, manifest: str) -> subprocess.CompletedProcess[str]:
    return kubectl(stack.kubeconfig, "apply", "-f", "-", stdin=manifest)


@pytest.fixture
def probe_kind(stack: Endpoints) -> Iterator[tuple[str, str]]:
    """A fresh CRD (plural, kind) whose spec.size must be >= 1; deleted afterwards."""
    plural = f"probe{uuid.uuid4().hex[:6]}s"
    kind = plural.capitalize()[:-1]
    crd = textwrap.dedent(f"""\
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {{name: {plural}.{GROUP}}}
        spec:
          group: {GROUP}
          scope: Namespaced
          names: {{plural: {plural}, singular: {plural[:-1]}, kind: {kind}}}
          versions:
            - name: v1
              served: true
              storage: true
              schema:
                openAPIV3Schema:
                  type: object
                  properties:
                    spec:
                      type: object
                      required: [size]
                      properties: {{size: {{type: integer, minimum: 1}}}}
        """)
    assert _apply(stack, crd).returncode == 0
    established = kubectl(
        stack.kubeconfig,
        "wait",
        "--for=condition=Established",
        f"crd/{plural}.{GROUP}",
        "--timeout=30s",
    )
    assert established.returncode == 0, established.stderr
    yield plural, kind
    kubectl(stack.kubeconfig, "delete", "crd", f"{plural}.{GROUP}", "--wait=false")


def _object(kind: str, size: int) -> str:
    return (
        f"apiVersion: {GROUP}/v1\nkind: {kind}\n"
        f"metadata: {{name: one, namespace: default}}\nspec: {{size: {size}}}\n"
    )


def test_apiserver_serves_custom_object_when_applied_with_kubectl(
    stack: Endpoints, probe_kind: tuple[str, str]
) -> None:
    plural, kind = probe_kind
    applied = _apply(stack, _object(kind, 3))
    assert applied.returncode == 0, applied.stderr

    api = kubernetes.client.CustomObjectsApi(
        kubernetes.config.new_client_from_config(config_file=str(stack.kubeconfig))
    )
    obj = api.get_namespaced_custom_object(GROUP, "v1", "default", plural, "one")
    assert obj["spec"] == {"size": 3}


def test_apiserver_rejects_object_when_schema_violated(
    stack: Endpoints, probe_kind: tuple[str, str]
) -> None:
    _, kind = probe_kind
    rejected = _apply(stack, _object(kind, 0))
    assert rejected.returncode != 0
    assert "should be greater than or equal to 1" in rejected.stderr
