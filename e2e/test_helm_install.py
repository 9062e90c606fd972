"""`helm install` into the local kube-apiserver, RBAC as the operator's ServiceAccount sees it,
and `helm uninstall` leaving nothing of the operator behind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from process_runner import harness
from process_runner.fixtures import TENANT, Cluster
from process_runner.harness import Background
from streamvane_stack import Endpoints
from test_pipeline_lifecycle import consume, ids, publish
from tools.chart import CHART, helm, run_helm
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
        if (
            run_helm("status", name, "--namespace", system, kubeconfig=stack.kubeconfig).returncode
            == 0
        ):
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


CONTENT = "pipeline-content-understanding.yaml"
BACKEND = "inferencebackend-triton-local.yaml"
OPERATOR_PORT_ENV = "STREAMVANE_OPERATOR_LIVENESS_PORT"


def _operator_ready(release: Release) -> bool:
    deployments = json.loads(
        kubectl(
            release.kubeconfig,
            "get",
            "deployments",
            "-n",
            release.namespace,
            "-l",
            f"app.kubernetes.io/instance={release.name}",
            "-o",
            "json",
        )  # fmt: skip
    )["items"]
    return bool(deployments) and deployments[0].get("status", {}).get("readyReplicas") == 1


def _wait_for_operator(cluster: Cluster, release: Release) -> None:
    cluster.wait("the chart's operator Deployment ready", lambda: _operator_ready(release), 120)


def _runners(release: Release, stack: Endpoints, logs: Path) -> tuple[Background, Background]:
    """The process runner twice, as kubelet: for the chart's operator and for the workers.

    The operator's process authenticates as its ServiceAccount, so the chart's RBAC is what
    lets it work; its liveness port is the runner's, handed over in the env var the chart's
    args reference.
    """
    operator = harness.runner(
        stack.kubeconfig, [release.namespace], logs / "operator-runner.log", logs / "replicas",
        selector=f"app.kubernetes.io/instance={release.name},app.kubernetes.io/component=operator",
    )  # fmt: skip
    operator.argv = [*operator.argv, f"--port-env={OPERATOR_PORT_ENV}"]
    operator.env["KUBECONFIG"] = str(release.operator_kubeconfig)
    workers = harness.runner(
        stack.kubeconfig, [release.watched], logs / "worker-runner.log", logs / "replicas"
    )
    return operator, workers


def _remove_pipelines(cluster: Cluster) -> None:
    """After the uninstall no operator is left to finalize Pipelines: clear them by hand."""
    for kind in ("pipelines", "inferencebackends"):
        for obj in cluster.kubectl("get", kind, "-o", "name").stdout.split():
            cluster.kubectl("patch", obj, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    cluster.kubectl("delete", "pipelines,inferencebackends,deployments,configmaps,services,pdb",
                    "--all", "--wait=false")  # fmt: skip
    base = f"{cluster.pulsar_admin_url.rstrip('/')}/admin/v2"
    with httpx.Client(base_url=base, timeout=30) as http:
        for topic in cluster.pulsar_topics():
            http.delete(f"/persistent/{TENANT}/{cluster.pulsar_namespace}/{topic}",
                        params={"force": "true"})  # fmt: skip
        http.delete(f"/namespaces/{TENANT}/{cluster.pulsar_namespace}")


@pytest.mark.parametrize("release", ["namespaced"], indirect=True)
def test_installed_chart_runs_a_pipeline_and_uninstall_keeps_its_data(
    release: Release, stack: Endpoints, tmp_path: Path
) -> None:
    operator, workers = _runners(release, stack, tmp_path / "logs")
    cluster = Cluster(
        stack=stack,
        kubeconfig=stack.kubeconfig,
        namespace=release.watched,
        pulsar_namespace=release.name,
        pulsar_url=stack.pulsar_url,
        pulsar_admin_url=stack.pulsar_admin_url,
        operator=operator,
        runner=workers,
        replica_logs=tmp_path / "logs" / "replicas",
    )
    operator.start()
    workers.start()
    try:
        _wait_for_operator(cluster, release)
        assert cluster.apply(cluster.sample(BACKEND)).returncode == 0
        assert cluster.apply(cluster.sample(CONTENT)).returncode == 0
        cluster.wait_ready("content-understanding", timeout_s=300)

        sent = ids("helm", 100)
        publish(cluster, "content-items", sent)
        assert sorted(consume(cluster, "content-enriched", len(sent), timeout_s=180)) == sent

        helm("uninstall", release.name, "--namespace", release.namespace, "--wait",
             kubeconfig=release.kubeconfig)  # fmt: skip
        cluster.wait("operator objects gone", lambda: not _leftovers(release), 60)
        assert {"content-items", "content-enriched"} <= cluster.pulsar_topics().keys()
        assert cluster.get("pipelines", "content-understanding") is not None
    finally:
        workers.stop()
        operator.stop()
        _remove_pipelines(cluster)
