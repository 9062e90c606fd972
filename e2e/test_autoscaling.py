"""Autoscaling end to end: the operator's loop reads the real Pulsar's stats and scales worker
Deployments (run by the process runner) from zero on a backlog, up under a burst, down after
the delay and back to zero; freezes on missing signals; survives spec edits. Passthrough
stages with small delays keep it quick (the operator ticks every 2 s here)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from process_runner.fixtures import Cluster, cluster_fixture  # noqa: F401  (the cluster fixture)

pytestmark = pytest.mark.e2e

NAME = "scaled"
DEPLOYMENT = f"{NAME}-relay"


def pipeline(cluster: Cluster, **scaling: Any) -> dict[str, Any]:
    doc = cluster.sample("pipeline-passthrough.yaml")
    doc["metadata"]["name"] = NAME
    doc["spec"]["stages"] = [
        {
            "name": "relay",
            "type": "passthrough",
            "input": {"topic": "scaled-in"},
            "outputs": ["scaled-out"],
            "scaling": {
                "minReplicas": 0,
                "maxReplicas": 3,
                "targetLagSeconds": 10,
                "scaleDownDelaySeconds": 6,
                "idleSecondsBeforeZero": 10,
                **scaling,
            },
        }
    ]
    return doc


def replicas(cluster: Cluster) -> int:
    deployment = cluster.get("deployment", DEPLOYMENT) or {}
    return int((deployment.get("spec") or {}).get("replicas", -1))


def stage(cluster: Cluster) -> dict[str, Any]:
    """The autoscaler's status of the stage."""
    status = (cluster.get("pipelines", NAME) or {}).get("status") or {}
    return next((s for s in status.get("autoscaling") or [] if s["name"] == "relay"), {})


def publish(cluster: Cluster, n: int, prefix: str = "m") -> list[str]:
    ids = [f"{prefix}-{i:05d}" for i in range(n)]
    cluster.publish("scaled-in", ({"id": i, "title": i} for i in ids))
    return ids


def ticks(cluster: Cluster) -> int:
    """Autoscaler ticks so far, as the operator's log (kopf) records them."""
    log = cluster.operator.log.read_text(errors="replace")
    return sum(
        1 for line in log.splitlines() if "pipeline_autoscale" in line and "succeeded" in line
    )


def reasons(cluster: Cluster) -> list[str]:
    events = cluster.items("events")
    return [e["reason"] for e in sorted(events.values(), key=lambda e: e["metadata"]["name"])]


def test_stage_scales_from_zero_up_under_a_burst_then_down_and_back_to_zero(
    cluster: Cluster,
) -> None:
    assert cluster.apply(pipeline(cluster)).returncode == 0
    cluster.wait_ready(NAME)
    assert replicas(cluster) == 0  # created at minReplicas, no backlog

    sent = publish(cluster, 1500)

    cluster.wait("scaled up from zero", lambda: replicas(cluster) >= 2, 30)
    assert stage(cluster)["scalingReason"].startswith("ScaledFromZero")
    assert stage(cluster)["lastScaleTime"]
    received = [d["id"] for d in cluster.consume("scaled-out", len(sent), timeout_s=90)]
    assert sorted(received) == sent
    cluster.wait("scaled back to zero", lambda: replicas(cluster) == 0, 60)
    seen = reasons(cluster)
    assert "ScaledFromZero" in seen and "ScaledToZero" in seen
    assert stage(cluster)["scalingReason"].startswith("ScaledToZero")
    assert cluster.condition(NAME, "ScalingActive")["status"] == "True"  # type: ignore[index]


def test_stage_keeps_its_replicas_when_signals_are_missing_then_scales_when_they_return(
    cluster: Cluster,
) -> None:
    doc = pipeline(cluster)
    assert cluster.apply(doc).returncode == 0
    cluster.wait_ready(NAME)
    admin_url = doc["spec"]["pulsar"]["adminUrl"]
    doc["spec"]["pulsar"]["adminUrl"] = "http://127.0.0.1:1"  # nothing listens there
    assert cluster.apply(doc).returncode == 0
    cluster.wait(
        "ScalingActive=False",
        lambda: (cluster.condition(NAME, "ScalingActive") or {}).get("status") == "False",
        30,
    )
    sent = publish(cluster, 200)

    # A few ticks with a backlog and no signals: frozen at zero, and it says why.
    cluster.wait(
        "ticks without signals",
        lambda: "SignalsMissing" in (stage(cluster).get("scalingReason") or ""),
        20,
    )
    start = ticks(cluster)
    cluster.wait("three more autoscaler ticks", lambda: ticks(cluster) >= start + 3, 30)
    assert replicas(cluster) == 0
    assert "SignalsMissing" in stage(cluster)["scalingReason"]
    condition = cluster.condition(NAME, "ScalingActive") or {}
    assert condition["reason"] == "SignalsMissing"
    assert "Pulsar stats unavailable" in condition["message"]

    doc["spec"]["pulsar"]["adminUrl"] = admin_url
    assert cluster.apply(doc).returncode == 0
    cluster.wait("scaled once signals returned", lambda: replicas(cluster) >= 1, 30)
    received = [d["id"] for d in cluster.consume("scaled-out", len(sent), timeout_s=60)]
    assert sorted(received) == sent


def test_autoscaled_replicas_survive_a_spec_edit_when_the_template_changes(
    cluster: Cluster,
) -> None:
    doc = pipeline(cluster, minReplicas=1, scaleDownDelaySeconds=600)
    assert cluster.apply(doc).returncode == 0
    cluster.wait_ready(NAME)
    # One running worker may drain a fixed burst before the autoscaler acts, so the backlog is
    # topped up until it has scaled; with a 600 s scale-down delay it only goes up from here.
    batches = itertools.count()
    cluster.wait(
        "scaled up",
        lambda: replicas(cluster) >= 2 or not publish(cluster, 1000, f"b{next(batches)}"),
        60,
    )
    before = cluster.get("deployment", DEPLOYMENT) or {}
    scaled = int(before["spec"]["replicas"])
    managers = {
        m["manager"]
        for m in before["metadata"]["managedFields"]
        if "f:replicas" in (m.get("fieldsV1") or {}).get("f:spec", {})
    }
    assert managers == {"streamvane-autoscaler"}

    doc["spec"]["stages"][0]["batching"] = {"maxBatchSize": 8}  # rolls the workers
    assert cluster.apply(doc).returncode == 0

    def rolled() -> bool:
        after = cluster.get("deployment", DEPLOYMENT) or {}
        template = after.get("spec", {}).get("template")
        return template != before["spec"]["template"]

    cluster.wait("the edited template applied", rolled, 30)
    cluster.wait_ready(NAME, timeout_s=60)
    assert replicas(cluster) >= scaled  # not reset to minReplicas by the re-apply
