"""The training loop on the real stack, through the operator and the shipped samples: simulated
users answer recommendations; the join turns them into training examples with the right labels
and exactly the features the ranker logged; the trainer (on a ranker copy of this test's own)
promotes a version that Triton serves and the ranking stage switches to, visible in its
outputs; a trainer killed with SIGKILL mid-stream is restarted and resumes from its
checkpoint; pinning version 1 rolls serving back, and the Pipeline's ModelServing condition
says so.

Whether a worse version is refused depends on which examples judge it, so that is proven where
the test controls them: through the operator with the same trainer in
e2e/test_tagging_head.py (a head trained on inverted labels, kept out, in the Pipeline's
status), and for the ranker in tests/integration/worker/test_online_training.py."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pulsar
import pytest

from process_runner.fixtures import Cluster, cluster_fixture  # noqa: F401  (the cluster fixture)
from process_runner.harness import wait_for
from streamvane_demo import simulator as sim
from streamvane_demo.recs import recommendable

pytestmark = pytest.mark.e2e

USERS = 8
SEED = 11
WAIT_S = 300
PARAMS = {
    # Windows close within a minute, so negatives come soon after positives.
    "training-examples": {"windowSeconds": 30, "allowedLatenessSeconds": 3, "idleFlushSeconds": 2},
    # Small versions; the guard may not refuse them here (what judges them is not controlled).
    "online-training": {
        "exportEveryExamples": 100,
        "evaluationExamples": 50,
        "promotionMargin": 1,
        "learningRate": 0.01,
    },
}
QUALIFYING = {"view", "like", "share"}


def _float32(vector: str) -> list[float]:
    return np.frombuffer(base64.b64decode(vector), dtype="<f4").tolist()


def _trainer_pid(cluster: Cluster) -> int:
    """The newest trainer replica's process, from the process runner's log."""
    started = re.findall(
        r"replica_started\s.*?pid=(\d+).*?pod=(recommendation-train-\S+)|"
        r"replica_started\s.*?pod=(recommendation-train-\S+).*?pid=(\d+)",
        cluster.runner.log.read_text(),
    )
    assert started, "no trainer replica started"
    last = started[-1]
    return int(last[0] or last[3])


def _trainer_logs(cluster: Cluster) -> str:
    return "".join(
        p.read_text(errors="replace")
        for p in sorted(cluster.replica_logs.glob(f"{cluster.namespace}_recommendation-train-*"))
    )


def test_users_engage_examples_train_versions_that_ranking_serves_and_a_pin_rolls_back(
    cluster: Cluster,
) -> None:
    cluster.apply_recommendation_samples(timeout_s=WAIT_S, params=PARAMS)
    ranker = f"recs-ranker-{cluster.namespace}"
    vectors, categories = recommendable(cluster.enrich_demo_items(WAIT_S))

    client = pulsar.Client(cluster.pulsar_url)
    try:
        topics = tuple(cluster.topic(t) for t in ("engagements", "candidates", "recommendations"))
        sim.wait_catalogue_followed(client, topics, next(iter(vectors)), len(vectors), WAIT_S)
        rng = np.random.default_rng(SEED)
        users = sim.make_users(USERS, vectors, categories, rng)
        live = sim.Users(client, topics[0], topics[2])
        sim.close_loop(users, live, vectors, 2, rng, WAIT_S)

        # Examples: a positive exactly for each served item a qualifying engagement answered.
        engagements = cluster.consume("engagements", sum(live.sent.values()), WAIT_S)
        answered = {
            (e["requestId"], e["itemId"])
            for e in engagements
            if e.get("requestId") and e["eventType"] in QUALIFYING
        }
        assert answered, "the simulated users engaged with no recommendation"
        served = {
            r["requestId"]: r
            for r in cluster.consume("recommendations", 10_000, timeout_s=15)
            if r.get("requestId")
        }
        expected = sum(len(r["items"]) for r in served.values())
        examples = wait_for(
            "an example of every served item",
            lambda: (
                (found := cluster.consume("training-examples", expected, 20))
                and len(found) >= expected
                and found
            ),
            WAIT_S,
        )
        positives = {(x["requestId"], x["itemId"]) for x in examples if x["label"] == 1}
        assert positives == answered & {(x["requestId"], x["itemId"]) for x in examples}, (
            "labels differ from what the users did"
        )
        assert len(examples) - len(positives) > 0
        for example in examples[:50]:
            recs = served[example["requestId"]]
            (item,) = [i for i in recs["items"] if i["itemId"] == example["itemId"]]
            features = example["features"]
            np.testing.assert_array_equal(features["user"], _float32(recs["userFeatures"]))
            np.testing.assert_array_equal(features["item"], _float32(item["features"]["item"]))
            assert {k: features[k] for k in item["features"]["dense"]} == item["features"]["dense"]
            assert example["modelVersion"] == recs["model"]["version"]

        def answer_once() -> dict[str, sim.Served]:
            """Every user answers its newest recommendations (positives and negatives keep
            coming, as in production) and views one more item (once the 43 items are all
            seen, lists are empty: the view still brings new ones, which name the version
            that ranked them); their next recommendations."""
            for u in users:
                live.send(sim.answer(u, live.latest[u.user_id], vectors, rng, sim.now_utc()))
                stray = sim.stray_item(u, vectors, rng)
                live.send([sim.engagement(u.user_id, stray, "view", 1000, None, sim.now_utc())])
            return live.until_answered([u.user_id for u in users], WAIT_S)

        def promoted() -> list[dict[str, Any]]:
            answer_once()
            return [v for v in cluster.consume("model-versions", 100, 5) if v["promoted"]]

        # A version learned from them: promoted, served by Triton, followed by the ranking.
        versions = wait_for("a promoted model version", promoted, WAIT_S)
        version = versions[0]["servingVersion"]
        assert version >= 2 and versions[0]["model"] == ranker
        ready = f"http://{cluster.stack.triton_http}/v2/models/{ranker}/versions/{version}/ready"
        assert httpx.get(ready, timeout=10).status_code == 200

        ranked = client.subscribe(
            topics[2], "e2e-versions", initial_position=pulsar.InitialPosition.Latest
        )

        def scored_by(wanted: Callable[[int], bool]) -> str | None:
            """Users answer once more; the version that scored a recommendation ranked since
            that ``wanted`` accepts, or None."""
            answer_once()
            while True:
                try:
                    message = ranked.receive(timeout_millis=2000)
                except pulsar.Timeout:
                    return None
                ranked.acknowledge(message)
                version = json.loads(message.data())["model"]["version"]
                seen.append(version)
                if wanted(int(version)):
                    return str(version)

        seen: list[str] = []
        """The versions that scored the recommendations read (for a failure's message)."""

        def wait_scored(what: str, wanted: Callable[[int], bool]) -> None:
            try:
                wait_for(what, lambda: scored_by(wanted), WAIT_S)
            except AssertionError as e:
                raise AssertionError(
                    f"{e}; versions that scored the newest: {seen[-20:]}"
                ) from None

        # Newer versions may be promoted meanwhile: the ranking follows the newest.
        wait_scored(f"recommendations by version {version} or newer", lambda v: v >= version)

        # SIGKILL mid-stream: the runner restarts it and it resumes from its checkpoint.
        os.kill(_trainer_pid(cluster), signal.SIGKILL)
        answer_once()
        resumed = wait_for(
            "the restarted trainer resumed",
            lambda: re.search(r"trainer_resumed.*examples_seen=(\d+)", _trainer_logs(cluster)),
            WAIT_S,
        )
        assert int(resumed.group(1)) >= versions[0]["examplesLearned"]

        # Pinning version 1 by hand: a rollback the ranking follows and the status reports.
        pipeline = cluster.get("pipeline", "recommendation")
        assert pipeline is not None
        stages: list[dict[str, Any]] = pipeline["spec"]["stages"]
        for stage in stages:
            if stage["type"] == "online-training":
                stage["params"]["pinnedVersion"] = 1
        patch = json.dumps({"spec": {"stages": stages}})
        assert (
            cluster.kubectl(
                "patch", "pipeline", "recommendation", "--type=merge", "-p", patch
            ).returncode
            == 0
        )
        wait_scored("recommendations by version 1 again", lambda v: v == 1)
        live.close()
        ranked.close()
    finally:
        client.close()
    condition = wait_for(
        "ModelServing RolledBack",
        lambda: (
            (c := cluster.condition("recommendation", "ModelServing"))
            and c["reason"] == "RolledBack"
            and c
        ),
        WAIT_S,
    )
    assert "rolled back to version 1" in condition["message"]
