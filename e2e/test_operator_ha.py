"""Two operators with leader election (kopf peering) against the local stack: only the one
with the higher priority reconciles; when it is killed, the other takes over. Their
/metrics show who works, and the stage gauges read from the real Pulsar."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from process_runner import harness
from process_runner.fixtures import ROOT, Cluster, teardown
from process_runner.kubectl import kubectl
from streamvane_stack import Endpoints

pytestmark = pytest.mark.e2e

PEERING = "streamvane-e2e"
LIFETIME_S = 15
"""Peering lifetime: a killed leader counts as gone this long after its last keep-alive. kopf
sends one every lifetime minus 5-10 s (at least every 1 s): with 5 s the margin was 4 s, and on
a busy machine a late keep-alive made the standby count the leader as gone and reconcile too."""
RECONCILES = 'streamvane_operator_reconciles_total{kind="Pipeline",result="success"}'


@dataclass
class Replica:
    operator: harness.Background
    metrics_port: int

    def _scrape(self) -> str | None:
        """This replica's /metrics text; None while it does not answer."""
        try:
            response = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5)
        except httpx.TransportError:
            return None
        return response.text if response.status_code == httpx.codes.OK else None

    def serves_metrics(self) -> bool:
        """True once /metrics answers (it has no samples before the first reconcile)."""
        return self._scrape() is not None

    def metrics(self) -> dict[str, float]:
        """Series -> value of this replica's /metrics (empty while it does not answer)."""
        series: dict[str, float] = {}
        for line in (self._scrape() or "").splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                series[name] = float(value)
        return series

    def reconciles(self) -> float:
        return self.metrics().get(RECONCILES, 0.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _replica(stack: Endpoints, namespace: str, logs: Path, priority: int) -> Replica:
    port = _free_port()
    operator = harness.operator(
        stack.kubeconfig,
        [namespace],
        logs / f"operator-{priority}.log",
        extra_args=[
            f"--peering={PEERING}",
            f"--priority={priority}",
            f"--peering-lifetime={LIFETIME_S}",
            f"--metrics-port={port}",
            "--metrics-host=127.0.0.1",
        ],
    )
    return Replica(operator, port)


def _peer_priorities(stack: Endpoints, namespace: str) -> set[int]:
    """The priorities of the operators the peering object lists (its status: identity -> info)."""
    got = kubectl(stack.kubeconfig, "get", "kopfpeering", PEERING, "-n", namespace, "-o", "json")
    assert got.returncode == 0, got.stderr
    status = json.loads(got.stdout).get("status") or {}
    return {int(peer["priority"]) for peer in status.values()}


@pytest.fixture
def replicas(stack: Endpoints, tmp_path: Path) -> Iterator[tuple[Cluster, Replica, Replica]]:
    namespace = f"e2e-ha-{uuid.uuid4().hex[:8]}"
    applied = kubectl(
        stack.kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds")
    )
    assert applied.returncode == 0, applied.stderr
    assert kubectl(stack.kubeconfig, "create", "namespace", namespace).returncode == 0
    peering = {
        "apiVersion": "kopf.dev/v1",
        "kind": "KopfPeering",
        "metadata": {"name": PEERING, "namespace": namespace},
    }
    created = kubectl(stack.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(peering))
    assert created.returncode == 0, created.stderr
    logs = tmp_path / "logs"
    leader = _replica(stack, namespace, logs, priority=200)
    standby = _replica(stack, namespace, logs, priority=100)
    cluster = Cluster(
        stack=stack,
        kubeconfig=stack.kubeconfig,
        namespace=namespace,
        pulsar_namespace=namespace,
        pulsar_url=stack.pulsar_url,
        pulsar_admin_url=stack.pulsar_admin_url,
        operator=standby.operator,
        runner=harness.runner(
            stack.kubeconfig, [namespace], logs / "runner.log", logs / "replicas"
        ),
        replica_logs=logs / "replicas",
    )
    # The leader first: the standby starts paused (mandatory peering) and its first look at
    # the peering object then already shows a live higher priority, so it never resumes. The
    # other order let the standby, alone for a moment, resume and take the first event.
    leader.operator.start()
    harness.wait_for(
        "the leader's keep-alive", lambda: 200 in _peer_priorities(stack, namespace), 60
    )
    standby.operator.start()
    cluster.runner.start()
    try:
        yield cluster, leader, standby
    finally:
        leader.operator.stop()
        teardown(cluster)


def test_only_the_leader_reconciles_and_the_standby_takes_over_when_it_is_killed(
    replicas: tuple[Cluster, Replica, Replica],
) -> None:
    cluster, leader, standby = replicas
    harness.wait_for(
        "both replicas serve /metrics",
        lambda: leader.serves_metrics() and standby.serves_metrics(),
        60,
    )
    assert cluster.apply(cluster.sample("pipeline-passthrough.yaml")).returncode == 0

    cluster.wait_ready("relay", timeout_s=180)
    harness.wait_for("the leader's resyncs", lambda: leader.reconciles() >= 3, 60)

    assert standby.reconciles() == 0, standby.operator.tail()
    backlog = (
        'streamvane_operator_stage_backlog_messages{{namespace="{}",pipeline="relay",stage="{}"}}'
    )
    for stage in ("first", "second"):
        assert leader.metrics()[backlog.format(cluster.namespace, stage)] == 0
    admin_calls = [
        s
        for s in leader.metrics()
        if s.startswith("streamvane_operator_pulsar_admin_requests_total")
    ]
    assert admin_calls

    leader.operator.kill()
    harness.wait_for("the standby's first reconcile", lambda: standby.reconciles() > 0, 60)
    # The new leader acts on edits: one more replica of the first stage.
    edited = cluster.sample("pipeline-passthrough.yaml")
    edited["spec"]["stages"][0]["scaling"] = {"minReplicas": 2, "maxReplicas": 2}
    assert cluster.apply(edited).returncode == 0
    pipeline = cluster.wait_ready("relay", timeout_s=180)

    first = next(s for s in pipeline["status"]["stages"] if s["name"] == "first")
    assert first["readyReplicas"] == 2
    assert standby.metrics()[backlog.format(cluster.namespace, "first")] == 0
