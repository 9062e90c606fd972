"""A Pipeline whose InferenceBackend speaks TLS: the operator mounts the CA Secret into the
workers, which verify a TLS-only tritonserver's certificate and embed every item."""

from __future__ import annotations

from typing import Any

import pytest

from process_runner.fixtures import Cluster, cluster_fixture  # noqa: F401  (the cluster fixture)

pytestmark = pytest.mark.e2e

ITEMS = 200


def embedding_pipeline(cluster: Cluster) -> dict[str, Any]:
    pipeline = cluster.sample("pipeline-content-understanding.yaml")
    embed = pipeline["spec"]["stages"][0]
    embed["model"]["backend"] = "triton-tls"
    pipeline["spec"]["stages"] = [embed]
    return pipeline


def test_workers_embed_through_a_tls_backend_when_its_ca_secret_is_mounted(
    cluster: Cluster, tls_triton: Any
) -> None:
    backend = cluster.sample("inferencebackend-triton-tls.yaml")
    backend["spec"]["endpoint"]["url"] = f"127.0.0.1:{tls_triton.settings.triton_grpc_port}"
    created = cluster.kubectl(
        "create", "secret", "generic", "triton-ca", f"--from-file=ca.crt={tls_triton.tls.ca_cert}"
    )
    assert created.returncode == 0, created.stderr
    assert cluster.apply(backend).returncode == 0
    pipeline = embedding_pipeline(cluster)
    assert cluster.apply(pipeline).returncode == 0
    name = pipeline["metadata"]["name"]
    assert cluster.wait_ready(name, timeout_s=120)["status"]["stagesReady"] == "1/1"

    embed = pipeline["spec"]["stages"][0]
    sent = [
        {"id": f"tls-{i:04d}", "title": "clip", "description": "a cat on a piano"}
        for i in range(ITEMS)
    ]
    cluster.publish(embed["input"]["topic"], sent)
    vectors = {
        doc["id"]: doc["embedding"]["vector"]
        for doc in cluster.consume(embed["outputs"][0], ITEMS, timeout_s=120)
    }

    assert sorted(vectors) == [f"tls-{i:04d}" for i in range(ITEMS)], f"{len(vectors)}/{ITEMS}"
    assert all(len(v) == 384 for v in vectors.values())
