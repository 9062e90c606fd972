"""Pipeline life cycle end to end: kubectl apply -> operator (real process) -> Pulsar topics
and subscriptions -> worker Deployments run by the process runner -> messages flow; edits
roll workers, invalid edits harm nothing, restarts converge, deletion follows the policy.

Passthrough stages keep these fast; test_content_understanding.py runs the model stages.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from process_runner.fixtures import Cluster, cluster_fixture  # noqa: F401  (the cluster fixture)
from streamvane_worker.config import WorkerConfig

pytestmark = pytest.mark.e2e

RELAY = "pipeline-passthrough.yaml"


def publish(cluster: Cluster, topic: str, ids: list[str]) -> None:
    cluster.publish(topic, ({"id": item_id, "title": item_id} for item_id in ids))


def consume(cluster: Cluster, topic: str, count: int, timeout_s: float = 60) -> list[str]:
    """The ids of ``count`` messages of ``topic``, read from its beginning."""
    return [doc["id"] for doc in cluster.consume(topic, count, timeout_s)]


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(n)]


def worker_config(cluster: Cluster, stage: str, pipeline: str = "relay") -> WorkerConfig:
    config_map = cluster.get("configmap", f"{pipeline}-{stage}")
    assert config_map is not None
    return WorkerConfig.model_validate_json(config_map["data"]["worker.json"])


def test_applied_pipeline_creates_topics_then_workers_and_delivers_every_message(
    cluster: Cluster,
) -> None:
    assert cluster.apply(cluster.sample(RELAY)).returncode == 0

    pipeline = cluster.wait_ready("relay")

    assert pipeline["status"]["stagesReady"] == "2/2"
    topics = cluster.pulsar_topics()
    assert {"relay-in", "relay-mid", "relay-out", "relay-first-dlq", "relay-second-dlq"} <= set(
        topics
    )
    assert cluster.subscriptions("relay-in") == [f"{cluster.namespace}.relay-first"]
    assert cluster.subscriptions("relay-mid") == [f"{cluster.namespace}.relay-second"]
    deployments = cluster.items("deployments", "streamvane.io/pipeline=relay")
    assert set(deployments) == {"relay-first", "relay-second"}
    first = worker_config(cluster, "first")
    assert first.input.topic == cluster.topic("relay-in")
    assert first.outputs == [cluster.topic("relay-mid")]
    sent = ids("a", 500)
    publish(cluster, "relay-in", sent)
    assert sorted(consume(cluster, "relay-out", len(sent))) == sent


def test_edited_pipeline_rolls_workers_and_new_stage_reads_earlier_messages(
    cluster: Cluster,
) -> None:
    doc = cluster.sample(RELAY)
    assert cluster.apply(doc).returncode == 0
    cluster.wait_ready("relay")
    before = cluster.items("deployments")["relay-first"]
    earlier = ids("before", 50)
    publish(cluster, "relay-in", earlier)
    assert sorted(consume(cluster, "relay-out", 50)) == earlier

    doc["spec"]["stages"][0]["batching"] = {"maxBatchSize": 8}
    doc["spec"]["stages"].append(
        {
            "name": "third",
            "type": "passthrough",
            "input": {"topic": "relay-out"},
            "outputs": ["relay-final"],
        }
    )
    assert cluster.apply(doc).returncode == 0
    pipeline = cluster.wait_ready("relay")

    assert pipeline["metadata"]["generation"] == 2
    assert pipeline["status"]["stagesReady"] == "3/3"
    after = cluster.items("deployments")["relay-first"]
    annotation = "streamvane.io/config-hash"
    old_hash = before["spec"]["template"]["metadata"]["annotations"][annotation]
    assert after["spec"]["template"]["metadata"]["annotations"][annotation] != old_hash
    assert worker_config(cluster, "first").batching.max_batch_size == 8
    assert "replaced by a new template" in cluster.runner.tail(400)
    # The new stage's subscription started at the earliest message: it sees what was
    # published before it existed.
    assert sorted(consume(cluster, "relay-final", 50)) == earlier


def test_removed_stage_stops_and_its_subscription_is_deleted_when_policy_is_delete(
    cluster: Cluster,
) -> None:
    doc = cluster.sample(RELAY)
    assert cluster.apply(doc).returncode == 0
    cluster.wait_ready("relay")
    assert cluster.subscriptions("relay-mid") == [f"{cluster.namespace}.relay-second"]

    doc["spec"]["stages"].pop()
    assert cluster.apply(doc).returncode == 0

    def retired() -> bool:
        status = (cluster.get("pipelines", "relay") or {}).get("status") or {}
        return not status.get("retiringSubscriptions") and not cluster.subscriptions("relay-mid")

    cluster.wait("subscription of the removed stage deleted", retired, 60)
    assert sorted(cluster.items("deployments")) == ["relay-first"]
    assert cluster.subscriptions("relay-in") == [f"{cluster.namespace}.relay-first"]


def test_invalid_pipelines_are_refused_or_reported_and_running_workers_are_unharmed(
    cluster: Cluster,
) -> None:
    doc = cluster.sample(RELAY)
    assert cluster.apply(doc).returncode == 0
    cluster.wait_ready("relay")
    versions = {
        n: d["metadata"]["resourceVersion"] for n, d in cluster.items("deployments").items()
    }

    bad_type = json.loads(json.dumps(doc))
    bad_type["spec"]["stages"][0]["type"] = "translate"
    refused = cluster.apply(bad_type)
    assert refused.returncode != 0 and 'Unsupported value: "translate"' in refused.stderr

    cyclic = json.loads(json.dumps(doc))
    cyclic["spec"]["stages"][1]["outputs"] = ["relay-in"]
    assert cluster.apply(cyclic).returncode == 0

    def degraded() -> dict[str, Any] | None:
        cond = cluster.condition("relay", "Degraded")
        return (
            cond if cond and cond["status"] == "True" and cond["observedGeneration"] == 2 else None
        )

    cond: Any = cluster.wait("Degraded reported", degraded, 30)
    assert cond["reason"] == "InvalidSpec"
    assert "cycle (first -> second -> first)" in cond["message"]
    assert "keep running" in cond["message"]
    # Ready says False while the spec that runs is not the one applied (the workers still run).
    assert (cluster.condition("relay", "Ready") or {}).get("status") == "False"
    time.sleep(3)  # a resync and any worker events have passed: still nothing touched
    assert {
        n: d["metadata"]["resourceVersion"] for n, d in cluster.items("deployments").items()
    } == versions
    sent = ids("still", 20)
    publish(cluster, "relay-in", sent)
    assert sorted(consume(cluster, "relay-out", 20)) == sent

    assert cluster.apply(doc).returncode == 0
    cluster.wait_ready("relay")
    assert (cluster.condition("relay", "Degraded") or {}).get("status") == "False"


def test_operator_restarted_mid_reconcile_converges(cluster: Cluster) -> None:
    cluster.operator.stop()
    assert cluster.apply(cluster.sample(RELAY)).returncode == 0

    cluster.operator.start()
    cluster.wait(
        "reconcile started", lambda: cluster.pulsar_topics() or cluster.items("configmaps"), 30
    )
    cluster.operator.kill()
    cluster.operator.start()

    cluster.wait_ready("relay")
    assert set(cluster.items("deployments")) == {"relay-first", "relay-second"}
    assert set(cluster.items("configmaps", "streamvane.io/pipeline=relay")) == {
        "relay-first",
        "relay-second",
    }
    sent = ids("restart", 30)
    publish(cluster, "relay-in", sent)
    assert sorted(consume(cluster, "relay-out", 30)) == sent


def test_deleted_pipelines_stop_workers_and_follow_deletion_policy(cluster: Cluster) -> None:
    removed = cluster.sample(RELAY)
    kept = cluster.sample(RELAY)
    kept["metadata"]["name"] = "keep"
    kept["spec"]["deletionPolicy"] = "Retain"
    for stage in kept["spec"]["stages"]:
        stage["input"]["topic"] = stage["input"]["topic"].replace("relay", "keep")
        stage["outputs"] = [t.replace("relay", "keep") for t in stage["outputs"]]
    assert cluster.apply(removed).returncode == 0
    assert cluster.apply(kept).returncode == 0
    cluster.wait_ready("relay")
    cluster.wait_ready("keep")

    assert cluster.kubectl("delete", "pipeline", "relay", "keep", "--timeout=60s").returncode == 0

    assert (
        cluster.items("deployments") == {}
        and cluster.items("configmaps", "app.kubernetes.io/managed-by=streamvane") == {}
    )
    cluster.wait(
        "workers stopped", lambda: cluster.runner.tail(400).count("replica_stopped") >= 4, 30
    )
    topics = set(cluster.pulsar_topics())
    assert {"keep-in", "keep-mid", "keep-out"} <= topics
    assert not {t for t in topics if t.startswith("relay")}


def test_unreachable_pulsar_is_retried_and_reported_then_converges(cluster: Cluster) -> None:
    doc = cluster.sample(RELAY)
    doc["spec"]["pulsar"]["adminUrl"] = "http://127.0.0.1:9"
    assert cluster.apply(doc).returncode == 0

    def unreachable() -> dict[str, Any] | None:
        cond = cluster.condition("relay", "Degraded")
        return cond if cond and cond["reason"] == "PulsarUnavailable" else None

    cond = cluster.wait("Pulsar outage reported", unreachable, 60)
    assert cond is not None and "127.0.0.1:9" in cond["message"]
    assert (cluster.condition("relay", "Progressing") or {}).get("reason") == "Retrying"
    assert cluster.items("deployments") == {}

    doc["spec"]["pulsar"]["adminUrl"] = cluster.pulsar_admin_url
    assert cluster.apply(doc).returncode == 0
    cluster.wait_ready("relay")


def test_deleted_or_edited_worker_deployment_is_repaired(cluster: Cluster) -> None:
    assert cluster.apply(cluster.sample(RELAY)).returncode == 0
    cluster.wait_ready("relay")

    assert cluster.kubectl("delete", "deployment", "relay-first").returncode == 0
    assert cluster.kubectl("scale", "deployment", "relay-second", "--replicas=3").returncode == 0

    def repaired() -> bool:
        deployments = cluster.items("deployments")
        return "relay-first" in deployments and deployments["relay-second"]["spec"]["replicas"] == 1

    cluster.wait("drift repaired", repaired, 30)
    cluster.wait_ready("relay")
