"""Three real workers chained through Pulsar: text-embedding -> tagging -> safety."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulsar
import pytest

from .pipeline import Collector, Topics, WorkerProcess, publish, worker_config

pytestmark = pytest.mark.integration

LABELS = [
    {"name": "cooking", "description": "cooking recipes, food and kitchen techniques"},
    {"name": "football", "description": "football matches, goals and teams"},
    {"name": "music", "description": "songs, concerts and musical instruments"},
]
CATEGORIES = [
    {
        "name": "violence",
        "description": "graphic violence, fighting, weapons and blood",
        "reviewThreshold": 0.3,
        "blockThreshold": 0.5,
    }
]
TEXTS = {
    "cooking": "How to make fresh pasta dough and a tomato sauce at home",
    "football": "Last minute goal wins the derby for the home team",
    "music": "Live concert: the band plays their new songs on electric guitar",
}


def test_pipeline_enriches_each_item_with_embedding_tags_and_safety_when_stages_are_chained(
    stack: Any, pulsar_client: pulsar.Client, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    embed, tag, safety = (Topics.unique(name) for name in ("embed", "tag", "safety"))
    chain = [
        worker_config(stack, embed, "text-embedding", outputs=[tag.input]),
        worker_config(stack, tag, "tagging", params={"labels": LABELS, "topK": 2}),
        worker_config(stack, safety, "safety", params={"categories": CATEGORIES}),
    ]
    chain[1]["outputs"] = [safety.input]
    sink = Collector(pulsar_client, safety.output)
    for config in chain:
        workers.append(WorkerProcess(config, tmp_path).start())
    for worker in workers:
        worker.wait_started()
    items = [
        {"id": f"{topic}-{i}", "title": text, "language": "en", "creator": "c1"}
        for i in range(20)
        for topic, text in TEXTS.items()
    ]
    items.append({"id": "fight", "title": "Brutal street fight with knives, blood everywhere"})
    publish(pulsar_client, embed.input, items)
    enriched = {
        item["id"]: item
        for item in (json.loads(m.data()) for m in sink.until(len(items), timeout=90))
    }
    assert set(enriched) == {item["id"] for item in items}
    for topic in TEXTS:
        item = enriched[f"{topic}-0"]
        assert len(item["embedding"]["vector"]) == 384
        assert item["tags"][0]["name"] == topic
        assert item["safety"]["decision"] == "allow"
        assert [s["stageType"] for s in item["stages"]] == ["text-embedding", "tagging", "safety"]
        assert all(s["model"] == "all-minilm-l6-v2" for s in item["stages"])
        assert item["creator"] == "c1"
    assert enriched["fight"]["safety"]["decision"] != "allow"
    for worker in workers:
        assert worker.terminate() == 0
