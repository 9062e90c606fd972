"""A tagging head trained online, through the operator and the shipped sample
(crds/samples/pipeline-tagging-head.yaml), on the real stack.

BBC News articles labelled with their topic go to the labelled topic: the trainer promotes a
version of the head (a copy of the untrained label-head of this test's own), Triton serves it
and the tag stage follows it. Then articles labelled wrongly (tagged with every topic but
their own, so every pair's label is inverted) train the next candidate, which correctly
labelled ones judge: it is kept out, the Pipeline's ModelServing condition says so, and held-out articles
are still tagged by the version before it, mostly with their own topic.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from process_runner.fixtures import Cluster, cluster_fixture  # noqa: F401  (the cluster fixture)
from streamvane_demo.corpus import labelled_phases, topic_of

pytestmark = pytest.mark.e2e

WAIT_S = 300
EXPORT_EVERY = 600
EVALUATION = 200
TRAINER_BATCH = 8
"""Small batches: the learner takes one step per batch, and the wrong labels need many."""
LEARNING_RATE = 0.02
LABELS = 5
# Articles per topic (each article is LABELS pairs, 5 topics): a version is exported after
# EXPORT_EVERY pairs and judged on the next EVALUATION (at the end of a batch of at most
# TRAINER_BATCH). The first phase (850 pairs) gets version 2 exported (600-607) and judged
# (<= 814); the wrong labels (pairs 850-1225) are most of what version 3 learns before its
# export (EXPORT_EVERY after version 2's: 1200-1214); the correct ones, sent once it is
# exported, judge it.
PHASES = [34, 15, 10, 8]
"""Correct labels, wrong labels, correct labels, held out."""


def _inverted(items: list[dict[str, Any]], topics: list[str]) -> list[dict[str, Any]]:
    """Each item tagged with every topic but its own: every pair's label is the wrong one."""
    return [
        {**i, "tags": [{"name": t, "score": 1.0} for t in topics if t != topic_of(i)]}
        for i in items
    ]


def _logs(cluster: Cluster, stage: str) -> str:
    """What the stage's replicas logged."""
    pattern = f"{cluster.namespace}_tagging-head-{stage}-*"
    return "".join(
        p.read_text(errors="replace") for p in sorted(cluster.replica_logs.glob(pattern))
    )


def _apply_sample(cluster: Cluster) -> str:
    """The sample on a head of this test's own, with small versions; returns the head."""
    assert cluster.apply(cluster.sample("inferencebackend-triton-local.yaml")).returncode == 0
    doc = cluster.sample("pipeline-tagging-head.yaml")
    head = cluster.own_model("label-head")
    for stage in doc["spec"]["stages"]:
        if stage["type"] == "online-training":
            stage["model"]["name"] = head
            stage["batching"] = {"maxBatchSize": TRAINER_BATCH, "maxDelayMs": 10}
            stage["params"].update(exportEveryExamples=EXPORT_EVERY, evaluationExamples=EVALUATION)
        if stage["type"] == "tagging":
            stage["params"]["headModel"] = head
    assert cluster.apply(doc).returncode == 0
    cluster.wait_ready("tagging-head", timeout_s=WAIT_S)
    return head


def test_a_head_trained_on_the_labelled_topic_serves_and_one_trained_on_wrong_labels_is_kept_out(
    cluster: Cluster,
) -> None:
    head = _apply_sample(cluster)
    clean, wrong, judging, held_out = labelled_phases(PHASES, seed=7)
    topics = sorted({topic_of(i) for i in clean})
    assert len(topics) == LABELS

    cluster.publish("labelled-items", clean)
    (first,) = cluster.wait(
        "the first version announced",
        lambda: cluster.consume("head-versions", 1, 10),
        WAIT_S,
    )
    assert (first["model"], first["version"], first["promoted"]) == (head, 2, True), first

    cluster.publish("labelled-items", _inverted(wrong, topics))
    cluster.wait(
        "version 3 exported",
        lambda: re.search(r"candidate_exported.*version=3", _logs(cluster, "train")),
        WAIT_S,
    )
    cluster.publish("labelled-items", judging)
    second = cluster.wait(
        "the second version judged",
        lambda: (found := cluster.consume("head-versions", 2, 10)) and len(found) == 2 and found,
        WAIT_S,
    )[1]
    assert (second["version"], second["promoted"], second["servingVersion"]) == (3, False, 2), (
        second
    )
    assert "worse than serving" in second["reason"], second
    condition = cluster.wait(
        "ModelServing saying version 3 was kept out",
        lambda: (
            (c := cluster.condition("tagging-head", "ModelServing"))
            and "version 3 kept out" in c["message"]
            and c
        ),
        WAIT_S,
    )
    assert "version 2 serving" in condition["message"], condition

    cluster.publish("items", [{k: v for k, v in i.items() if k != "tags"} for i in held_out])
    tagged = cluster.consume("items-tagged", len(held_out), WAIT_S)
    assert len(tagged) == len(held_out)
    assert {(t["stages"][-1]["model"], t["stages"][-1]["modelVersion"]) for t in tagged} == {
        (head, "2")
    }
    right = sum(bool(t["tags"]) and t["tags"][0]["name"] == topic_of(t) for t in tagged)
    assert right / len(tagged) >= 0.6, [(t["id"], t["tags"]) for t in tagged]
