"""Fixtures for operator integration tests: a unique Pulsar namespace, a unique Kubernetes
namespace with the Streamvane CRDs installed, and the clients to reach them."""

from __future__ import annotations

import functools
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from process_runner.kubectl import kubectl as run_kubectl
from streamvane_operator.kube.client import KubeClient, api_client
from streamvane_operator.pulsar.admin import PulsarAdmin
from streamvane_operator.render.labels import FIELD_MANAGER

ROOT = Path(__file__).resolve().parents[3]
KINDS = "pipelines,inferencebackends,deployments,configmaps,services,pdb,secrets"


Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def kubectl(stack: Any) -> Kubectl:
    """``kubectl(*args, stdin=None)`` against the local kube-apiserver."""
    return functools.partial(run_kubectl, stack.kubeconfig)


@pytest.fixture(scope="session")
def crds(kubectl: Kubectl) -> None:
    """The generated CRDs, installed and served."""
    result = kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    assert result.returncode == 0, result.stderr
    for plural in ("pipelines", "inferencebackends"):
        assert kubectl("get", f"{plural}.streamvane.io", "-A").returncode == 0


@pytest.fixture
def namespace(kubectl: Kubectl, crds: None) -> Iterator[str]:
    name = f"it-{uuid.uuid4().hex[:8]}"
    assert kubectl("create", "namespace", name).returncode == 0
    yield name
    # No operator runs here to remove finalizers, and no namespace controller deletes
    # contents: clear finalizers, delete what the test made, then the namespace.
    for kind in ("pipelines", "inferencebackends"):
        for obj in kubectl("get", kind, "-n", name, "-o", "name").stdout.split():
            kubectl(
                "patch", obj, "-n", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
            )
    kubectl("delete", KINDS, "--all", "-n", name, "--wait=false")
    kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def kube(stack: Any) -> KubeClient:
    return KubeClient(api_client(stack.kubeconfig), FIELD_MANAGER)


@pytest.fixture
def pulsar_namespace(stack: Any) -> Iterator[tuple[str, str]]:
    """(tenant, namespace), unique per test; topics and namespace are removed afterwards."""
    tenant, ns = "streamvane-it", f"ns-{uuid.uuid4().hex[:8]}"
    yield tenant, ns
    base = stack.pulsar_admin_url.rstrip("/")
    with httpx.Client(base_url=base, timeout=30) as http:
        for kind in ("partitioned", ""):
            listing = http.get(f"/admin/v2/persistent/{tenant}/{ns}/{kind}".rstrip("/"))
            for topic in listing.json() if listing.is_success else []:
                path = topic.removeprefix("persistent://")
                suffix = "/partitions" if kind else ""
                http.delete(f"/admin/v2/persistent/{path}{suffix}", params={"force": "true"})
        http.delete(f"/admin/v2/namespaces/{tenant}/{ns}")


@pytest.fixture
def admin(stack: Any) -> Iterator[PulsarAdmin]:
    client = PulsarAdmin(stack.pulsar_admin_url)
    yield client
    client.close()
