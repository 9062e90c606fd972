"""Status tells the truth, end to end (operator, process runner, Pulsar and Triton real):
an edit to a model Triton does not serve is refused before anything rolls; workers that
crash say why in the Pipeline's status; InferenceBackend changes reach Pipelines at once;
a stage at zero replicas says so."""

from __future__ import annotations

import time
from typing import Any

import pytest

from process_runner import harness
from process_runner.fixtures import Cluster, cluster_fixture  # noqa: F401  (the cluster fixture)

pytestmark = pytest.mark.e2e

PIPELINE = "content-understanding"
BACKEND = "inferencebackend-triton-local.yaml"


def embed_only(cluster: Cluster, model: str = "all-minilm-l6-v2") -> dict[str, Any]:
    """The content-understanding sample with its embed stage only."""
    doc = cluster.sample(f"pipeline-{PIPELINE}.yaml")
    doc["spec"]["stages"] = doc["spec"]["stages"][:1]
    doc["spec"]["stages"][0]["model"]["name"] = model
    return doc


def degraded(cluster: Cluster, reason: str) -> dict[str, Any] | None:
    cond = cluster.condition(PIPELINE, "Degraded")
    return cond if cond and cond["status"] == "True" and cond["reason"] == reason else None


def test_edit_to_an_unserved_model_keeps_running_workers_and_is_degraded_naming_it(
    cluster: Cluster,
) -> None:
    assert cluster.apply(cluster.sample(BACKEND)).returncode == 0
    assert cluster.apply(embed_only(cluster)).returncode == 0
    cluster.wait_ready(PIPELINE)
    deployment = cluster.items("deployments")[f"{PIPELINE}-embed"]
    config_map = cluster.get("configmap", f"{PIPELINE}-embed")
    pods = set(cluster.items("pods"))

    assert cluster.apply(embed_only(cluster, model="no-such-model")).returncode == 0

    cond = cluster.wait(
        "PreflightFailed", lambda: degraded(cluster, "PreflightFailed"), timeout_s=30
    )
    assert "does not serve model 'no-such-model'" in cond["message"]
    assert "keep running" in cond["message"]
    assert cluster.condition(PIPELINE, "Ready")["status"] == "False"  # type: ignore[index]
    after = cluster.items("deployments")[f"{PIPELINE}-embed"]
    assert after["metadata"]["generation"] == deployment["metadata"]["generation"]
    assert cluster.get("configmap", f"{PIPELINE}-embed")["data"] == config_map["data"]  # type: ignore[index]
    assert set(cluster.items("pods")) == pods
    # kubectl get pipelines: Degraded and its reason come first.
    table = cluster.kubectl("get", "pipelines").stdout.splitlines()
    assert table[0].split()[:4] == ["NAME", "DEGRADED", "REASON", "READY"]
    assert table[1].split()[1:4] == ["True", "PreflightFailed", "False"]


def test_workers_that_crash_at_startup_make_the_pipeline_degraded_in_their_own_words(
    cluster: Cluster,
) -> None:
    assert cluster.apply(cluster.sample(BACKEND)).returncode == 0
    # A new Pipeline is not held back by the preflight: its workers start and fail.
    assert cluster.apply(embed_only(cluster, model="no-such-model")).returncode == 0

    cond = cluster.wait(
        "WorkerCrashLoop", lambda: degraded(cluster, "WorkerCrashLoop"), timeout_s=90
    )

    assert cond["message"].startswith(f"stage embed: worker {PIPELINE}-embed-")
    assert "exited with code 3" in cond["message"]
    assert "no-such-model" in cond["message"]  # the worker's own termination message
    (stage,) = cluster.get("pipelines", PIPELINE)["status"]["stages"]  # type: ignore[index]
    assert stage["phase"] == "Failing" and "no-such-model" in stage["message"]
    (pod,) = cluster.items("pods").values()
    (container,) = pod["status"]["containerStatuses"]
    # As kubelet reports a crash: ended now, or waiting to restart with how it ended.
    ended = container["state"].get("terminated") or container["lastState"].get("terminated")
    assert ended and ended["exitCode"] == 3, container


def test_deleting_and_recreating_the_backend_reaches_the_pipeline_within_seconds(
    cluster: Cluster,
) -> None:
    # A resync far longer than the waits below: only the backend handlers can be this quick.
    cluster.operator.stop()
    cluster.operator = harness.operator(
        cluster.kubeconfig, [cluster.namespace], cluster.operator.log, resync_s=300
    ).start()
    assert cluster.apply(cluster.sample(BACKEND)).returncode == 0
    assert cluster.apply(embed_only(cluster)).returncode == 0
    cluster.wait_ready(PIPELINE)

    started = time.monotonic()
    assert cluster.kubectl("delete", "inferencebackend", "triton-local").returncode == 0
    cond = cluster.wait("InvalidSpec", lambda: degraded(cluster, "InvalidSpec"), timeout_s=10)
    deleted_s = time.monotonic() - started
    assert "InferenceBackend 'triton-local' does not exist" in cond["message"]
    assert f"{PIPELINE}-embed" in cluster.items("deployments")  # the workers keep running

    started = time.monotonic()
    assert cluster.apply(cluster.sample(BACKEND)).returncode == 0

    def recovered() -> bool:
        cond = cluster.condition(PIPELINE, "Degraded")
        return bool(cond and cond["status"] == "False")

    cluster.wait("Degraded=False again", recovered, timeout_s=10)
    recreated_s = time.monotonic() - started
    print(f"backend deleted -> Pipeline {deleted_s:.1f}s; re-created -> {recreated_s:.1f}s")


def test_a_stage_at_zero_replicas_says_so_instead_of_ready(cluster: Cluster) -> None:
    doc = cluster.sample("pipeline-passthrough.yaml")
    doc["spec"]["stages"][1]["scaling"] = {"minReplicas": 0, "maxReplicas": 1}
    assert cluster.apply(doc).returncode == 0

    pipeline = cluster.wait_ready("relay")

    phases = {s["name"]: (s["phase"], s["message"]) for s in pipeline["status"]["stages"]}
    assert phases["first"][0] == "Ready"
    assert phases["second"][0] == "ScaledToZero"
    assert "0 replicas desired" in phases["second"][1]
    ready = next(c for c in pipeline["status"]["conditions"] if c["type"] == "Ready")
    assert ready["message"] == "2/2 stages ready (second scaled to zero)"
