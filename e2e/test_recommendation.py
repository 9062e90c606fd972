"""The recommendation sample end to end, chained to the content-understanding sample: the demo
items are enriched on the real Triton and become the catalogue; engagements produce profiles,
candidates and recommendations ranked by the ranker on the real Triton, with the features it
scored; a safety-blocked item is never a candidate nor recommended; a deleted item stops
appearing in both."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pulsar
import pytest

from process_runner import harness
from process_runner.fixtures import Cluster, cluster_fixture  # noqa: F401  (the cluster fixture)
from streamvane_worker.stages.training_examples import example_id

pytestmark = pytest.mark.e2e

DEMO_ITEMS = Path(__file__).parent / "streamvane_demo" / "content_items.jsonl"
WAIT_S = 90
"""Per awaited message; every wait ends as soon as its condition holds."""


def _engagement(user: str, item: str, event: str, n: int) -> dict[str, Any]:
    return {
        "userId": user,
        "itemId": item,
        "eventType": event,
        "dwellMs": 20_000,
        "requestId": f"req-{n}",
        "eventTime": f"2026-12-01T10:{n // 60:02d}:{n % 60:02d}Z",
    }


class Latest:
    """Reads a topic from its start; per user, the newest message by profile version."""

    def __init__(self, client: pulsar.Client, topic: str, version: str) -> None:
        self._consumer = client.subscribe(
            topic, f"e2e-{uuid.uuid4().hex[:6]}", initial_position=pulsar.InitialPosition.Earliest
        )
        self._version = version
        self.latest: dict[str, dict[str, Any]] = {}
        self.every_item: set[str] = set()

    def version(self, doc: dict[str, Any]) -> int:
        return int(doc["profile"]["version"] if self._version == "profile" else doc[self._version])

    def until(self, user: str, version: int, timeout_s: float = WAIT_S) -> dict[str, Any]:
        """The user's message for ``version`` (or later) once it arrived."""
        deadline = time.monotonic() + timeout_s
        while user not in self.latest or self.version(self.latest[user]) < version:
            assert time.monotonic() < deadline, f"nothing for {user} v{version} in {timeout_s}s"
            try:
                message = self._consumer.receive(timeout_millis=1000)
            except pulsar.Timeout:
                continue
            self._consumer.acknowledge(message)
            doc = json.loads(message.data())
            self.every_item |= {c["itemId"] for c in doc["items"]}
            newest = self.latest.get(doc["userId"])
            if newest is None or self.version(doc) > self.version(newest):
                self.latest[doc["userId"]] = doc
        return self.latest[user]


class Engagements:
    def __init__(self, client: pulsar.Client, cluster: Cluster) -> None:
        self._producer = client.create_producer(
            cluster.topic("engagements"), batching_enabled=False
        )
        self.sent: dict[str, int] = {}

    def send(self, user: str, item: str, event: str) -> int:
        """Publishes one engagement keyed by user; returns the profile version it makes."""
        n = self.sent.get(user, 0) + 1
        self.sent[user] = n
        self._producer.send(
            json.dumps(_engagement(user, item, event, n)).encode(), partition_key=user
        )
        return n


def _float32(wire: str) -> np.ndarray:
    """A vector field of a recommendation message: base64 of little-endian float32."""
    return np.frombuffer(base64.b64decode(wire), dtype="<f4")


def _unit(vector: list[float]) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32)
    return v / float(np.linalg.norm(v))


def _nearest(
    profile: dict[str, Any], enriched: dict[str, dict[str, Any]], blocked: set[str]
) -> list[str]:
    """Exact nearest neighbours of the profile among the retrievable, unseen items."""
    allowed = [i for i in enriched if i not in blocked and i not in profile["recentItems"]]
    vectors = np.stack([_unit(enriched[i]["embedding"]["vector"]) for i in allowed])
    scores = vectors @ _float32(profile["vector"])
    return [allowed[j] for j in np.argsort(-scores)]


def test_recommendation_pipeline_ranks_the_catalogue_without_blocked_or_deleted_items(
    cluster: Cluster,
) -> None:
    ready = cluster.apply_recommendation_samples(timeout_s=300)
    assert ready["status"]["stagesReady"] == "5/5"
    assert "recommendation-profiles-state" in cluster.pulsar_topics()
    # Written by the operator's model-serving timer (every 2 s here), not by the reconcile.
    serving = harness.wait_for(
        "ModelServing", lambda: cluster.condition("recommendation", "ModelServing"), 30
    )
    assert (serving["status"], serving["reason"]) == (
        "Unknown",
        "NoVersionAnnounced",
    ), "the rank stage follows model-versions, where no trainer announced anything"

    items = [json.loads(line) for line in DEMO_ITEMS.read_text().splitlines() if line.strip()]
    cluster.publish("content-items", items)
    enriched = {d["id"]: d for d in cluster.consume("content-enriched", len(items), 300)}
    assert len(enriched) == len(items)
    blocked = {i for i, d in enriched.items() if d["safety"]["decision"] == "block"}
    violent = [i["id"] for i in items if i.get("category") == "violence"]
    assert blocked and set(violent) <= blocked, "the sample's safety stage blocks violence"
    cooking = [i["id"] for i in items if i.get("category") == "cooking"]

    client = pulsar.Client(cluster.pulsar_url)
    try:
        candidates = Latest(client, cluster.topic("candidates"), "profile")
        ranked = Latest(client, cluster.topic("recommendations"), "profileVersion")
        engagements = Engagements(client, cluster)

        # The stages read the catalogue on their own: until both hold all of it, a probe user's
        # every engagement brings candidates and recommendations from what they hold so far.
        probe, retrievable = f"probe-{uuid.uuid4().hex[:6]}", len(enriched) - len(blocked)
        deadline = time.monotonic() + 180
        while True:
            version = engagements.send(probe, cooking[0], "view")
            found, recs_now = candidates.until(probe, version), ranked.until(probe, version)
            caught_up = found["indexSize"] == retrievable
            if caught_up and recs_now["candidatesScored"] == len(found["items"]):
                break
            assert time.monotonic() < deadline, f"catalogue not followed: {found['indexSize']}"

        # A user who liked a violent clip: the items nearest their profile are the other blocked
        # ones, which must never be candidates nor recommended.
        user = f"user-{uuid.uuid4().hex[:6]}"
        engagements.send(user, violent[0], "like")
        version = engagements.send(user, cooking[0], "view")
        latest = candidates.until(user, version)
        profile = latest["profile"]
        assert profile["recentItems"] == [cooking[0], violent[0]]
        found = [c["itemId"] for c in latest["items"]]
        assert len(found) == 20 and not set(found) & blocked
        assert found[:3] == _nearest(profile, enriched, blocked)[:3], "exact top 3 of 48 items"

        recommended = ranked.until(user, version)
        assert recommended["profileVersion"] == version
        assert recommended["model"] == {
            "name": f"recs-ranker-{cluster.namespace}",
            "version": "1",
        }
        assert recommended["candidatesScored"] == 20
        top = recommended["items"]
        assert len(top) == 10 and {r["itemId"] for r in top} <= set(found)
        scores = [r["score"] for r in top]
        assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
        # The logged features are exactly what the ranker was given.
        assert recommended["userFeatures"] == profile["vector"], "the same float32 bytes"
        by_id = {c["itemId"]: c["score"] for c in latest["items"]}
        for r in top:
            logged = _float32(r["features"]["item"])
            np.testing.assert_array_equal(
                logged, _unit(enriched[r["itemId"]]["embedding"]["vector"])
            )
            assert r["features"]["dense"]["retrievalScore"] == pytest.approx(by_id[r["itemId"]])
            assert r["retrievalScore"] == by_id[r["itemId"]]

        deleted = top[0]["itemId"]
        tombstones = client.create_producer(
            cluster.topic("content-enriched"), batching_enabled=False
        )
        tombstones.send(b"", partition_key=deleted)  # an empty message: the item is deleted
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # each round waits for its own new messages
            version = engagements.send(user, cooking[1], "view")
            in_candidates = deleted in [
                c["itemId"] for c in candidates.until(user, version)["items"]
            ]
            in_recs = deleted in [r["itemId"] for r in ranked.until(user, version)["items"]]
            if not in_candidates and not in_recs:
                break
        else:
            raise AssertionError(f"{deleted} still appears after its deletion")
        assert not candidates.every_item & blocked
        assert not ranked.every_item & blocked

        # Liking a served item answers its request: the join emits a positive example with
        # the features the ranker logged, in the replay-file shape.
        liked = top[1]
        served_at = datetime.fromisoformat(recommended["rankedAt"])
        answer = {
            "userId": user,
            "itemId": liked["itemId"],
            "eventType": "like",
            "requestId": recommended["requestId"],
            "eventTime": (served_at + timedelta(seconds=1)).isoformat(),
        }
        client.create_producer(cluster.topic("engagements"), batching_enabled=False).send(
            json.dumps(answer).encode(), partition_key=user
        )
        wanted = example_id(recommended["requestId"], liked["itemId"])
        examples = cluster.consume("training-examples", 1_000, 60)
        (positive,) = [e for e in examples if e["id"] == wanted]
        assert positive["label"] == 1 and positive["modelVersion"] == "1"
        features = positive["features"]
        assert features["user"] == _float32(recommended["userFeatures"]).tolist()
        assert features["item"] == _float32(liked["features"]["item"]).tolist()
        assert {k: features[k] for k in liked["features"]["dense"]} == liked["features"]["dense"]
    finally:
        client.close()
