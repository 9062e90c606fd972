"""`helm install` into the local kube-apiserver, RBAC as the operator's ServiceAccount sees it,
and `helm uninstall` leaving nothing of the operator behind."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamvane_stack import Endpoints
from tools.chart import CHART, helm
from tools.cluster import (
    can_i,
    kubectl,
    namespaces,
    service_account_kubeconfig,
    unique_name,
)

pytestmark = pytest.mark.e2e

CHART_KINDS = "deployments,services,serviceaccounts,roles,rolebindings,configmaps,pods"
CLUSTER_KINDS = "clusterroles,clusterrolebindings"


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    watched: str
    other: str
    kubeconfig: Path
    operator_kubeconfig: Path
    """Authenticates as the operator's ServiceAccount: RBAC applies as in a pod."""


def _leftovers(release: Release) -> list[str]:
    selector = f"app.kubernetes.io/instance={release.name}"
    found = kubectl(release.kubeconfig, "get", CLUSTER_KINDS, "-l", selector, "-o", "name")
    for namespace in (release.namespace, release.watched):
        found += kubectl(
            release.kubeconfig, "get", CHART_KINDS, "-n", namespace, "-l", selector, "-o", "name"
        )
    return found.split()


@pytest.fixture(params=["namespaced", "cluster"])
def release(request: pytest.FixtureRequest, stack: Endpoints, tmp_path: Path) -> Iterator[Release]:
    """The chart installed as users install it; uninstalled (and checked clean) afterwards."""
    name = unique_name("sv")
    system, watched, other = (f"{name}-system", f"{name}-apps", f"{name}-other")
    with namespaces(stack.kubeconfig, system, watched, other):
        helm(
            "install", name, str(CHART), "--namespace", system,
            "--set", f"watch.mode={request.param}",
            *(["--set", f"watch.namespaces={{{watched}}}"] if request.param == "namespaced" else []),
            kubeconfig=stack.kubeconfig,
        )  # fmt: skip
        account = kubectl(
            stack.kubeconfig, "get", "serviceaccounts", "-n", system,
            "-l", f"app.kubernetes.io/instance={name}", "-o", "jsonpath={.items[0].metadata.name}",
        )  # fmt: skip
        operator = service_account_kubeconfig(
            stack.kubeconfig, system, account, tmp_path / "operator.kubeconfig"
        )
        installed = Release(name, system, watched, other, stack.kubeconfig, operator)
        yield installed
        helm("uninstall", name, "--namespace", system, "--wait", kubeconfig=stack.kubeconfig)
        assert _leftovers(installed) == []


@pytest.mark.parametrize("release", ["namespaced"], indirect=True)
def test_operator_account_is_confined_to_watched_namespaces_when_namespaced(
    release: Release,
) -> None:
    me = release.operator_kubeconfig
    assert can_i(me, "watch", "pipelines.streamvane.io", release.watched)
    assert can_i(me, "patch", "pipelines.streamvane.io/status", release.watched)
    assert can_i(me, "create", "deployments.apps", release.watched)
    assert can_i(me, "get", "secrets", release.watched)
    assert not can_i(me, "list", "secrets", release.watched)
    for namespace in (release.other, release.namespace, None):
        assert not can_i(me, "get", "secrets", namespace)
        assert not can_i(me, "list", "pipelines.streamvane.io", namespace)
        assert not can_i(me, "create", "deployments.apps", namespace)


@pytest.mark.parametrize("release", ["cluster"], indirect=True)
def test_operator_account_reaches_every_namespace_when_cluster_mode(release: Release) -> None:
    me = release.operator_kubeconfig
    for namespace in (release.watched, release.other, None):
        assert can_i(me, "watch", "pipelines.streamvane.io", namespace)
        assert can_i(me, "patch", "deployments.apps", namespace)
    assert can_i(me, "list", "customresourcedefinitions.apiextensions.k8s.io", None)
    assert not can_i(me, "list", "secrets", release.other)
    assert not can_i(me, "delete", "namespaces", None)
