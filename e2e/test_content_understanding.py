"""The content-understanding sample end to end, with the real model on the real Triton:
kubectl apply -> topics and subscriptions -> embed, tag and safety workers -> 1,000 content
items in, 1,000 enriched items out (ids compared)."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from process_runner.fixtures import Cluster, cluster_fixture  # noqa: F401  (the cluster fixture)
from streamvane_worker.config import STAGES_NEEDING_MODEL, StageType, WorkerConfig

pytestmark = pytest.mark.e2e

PIPELINE = "content-understanding"
ITEMS = 1000
SUBJECTS = [
    ("Late winner in the cup final", "The striker scored in stoppage time after a tense match."),
    ("Sourdough for beginners", "Feed the starter, fold the dough and bake it in a hot oven."),
    ("Hands-on with the new laptop", "Battery life, keyboard and the chip inside, benchmarked."),
    ("Three days in Lisbon", "Trams, viewpoints and where to eat pasteis de nata."),
    ("Index funds explained", "Why low fees and diversification beat picking stocks."),
    ("Speedrun of the classic platformer", "A frame-perfect route through every level."),
    ("Live at the summer festival", "The band played their new album and two encores."),
    ("Ten-minute morning workout", "Bodyweight exercises you can do without equipment."),
    ("Puppy's first day home", "Crate training, feeding times and the first walk."),
    ("Election night recap", "Turnout, the results by region and what comes next."),
]


def content_items(n: int) -> list[dict[str, Any]]:
    subjects = itertools.cycle(SUBJECTS)
    return [
        {
            "id": f"item-{i:05d}",
            "title": title,
            "description": f"{text} Part {i % 7 + 1}.",
            "language": "en",
        }
        for i, (title, text) in zip(range(n), subjects, strict=False)
    ]


def test_content_pipeline_enriches_every_item_when_applied_with_kubectl(cluster: Cluster) -> None:
    pipeline = cluster.sample(f"pipeline-{PIPELINE}.yaml")
    assert cluster.apply(pipeline).returncode == 0

    # The backend does not exist yet: reported, and nothing is created.
    def degraded() -> dict[str, Any] | None:
        cond = cluster.condition(PIPELINE, "Degraded")
        return cond if cond and cond["status"] == "True" else None

    cond = cluster.wait("missing backend reported", degraded, 30)
    assert cond is not None
    assert "InferenceBackend 'triton-local' does not exist" in cond["message"]
    assert cluster.items("deployments") == {} and cluster.pulsar_topics() == {}

    assert cluster.apply(cluster.sample("inferencebackend-triton-local.yaml")).returncode == 0
    ready = cluster.wait_ready(PIPELINE, timeout_s=240)

    assert ready["status"]["stagesReady"] == "3/3"
    topics = cluster.pulsar_topics()
    assert {"content-items", "content-embedded", "content-tagged", "content-enriched"} <= set(
        topics
    )
    assert cluster.subscriptions("content-items") == [f"{cluster.namespace}.{PIPELINE}-embed"]
    for stage in pipeline["spec"]["stages"]:
        config_map = cluster.get("configmap", f"{PIPELINE}-{stage['name']}")
        assert config_map is not None
        config = WorkerConfig.model_validate_json(config_map["data"]["worker.json"])
        assert config.stage_type == StageType(stage["type"])
        assert config.batching.max_batch_size == stage["batching"]["maxBatchSize"]
        if config.stage_type in STAGES_NEEDING_MODEL:
            assert config.inference is not None
            assert (config.inference.triton_url, config.inference.model_name) == (
                cluster.stack.triton_grpc,
                "all-minilm-l6-v2",
            )

    items = content_items(ITEMS)
    started = time.monotonic()
    cluster.publish("content-items", items)
    enriched = {doc["id"]: doc for doc in cluster.consume("content-enriched", ITEMS, 240)}
    elapsed = time.monotonic() - started

    assert sorted(enriched) == [item["id"] for item in items], f"{len(enriched)}/{ITEMS} arrived"
    for doc in enriched.values():
        assert len(doc["embedding"]["vector"]) == 384
        assert doc["tags"], doc["id"]
        assert doc["safety"]["decision"] in ("allow", "review", "block")
        assert [s["stage"] for s in doc["stages"]] == ["embed", "tag", "safety"]
    sports = [d for d in enriched.values() if d["title"].startswith("Late winner")]
    assert all(d["tags"][0]["name"] == "sports" for d in sports)
    print(
        f"\n{ITEMS} items through embed -> tag -> safety in {elapsed:.1f}s ({ITEMS / elapsed:.0f} items/s)"
    )
