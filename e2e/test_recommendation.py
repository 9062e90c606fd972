"""The recommendation sample end to end, chained to the content-understanding sample: the demo
items are enriched on the real Triton and become the catalogue; engagements produce profiles
and candidates; a safety-blocked item is never a candidate; a deleted item stops appearing."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pulsar
import pytest

from process_runner.fixtures import Cluster, cluster_fixture  # noqa: F401  (the cluster fixture)

pytestmark = pytest.mark.e2e

DEMO_ITEMS = Path(__file__).parent / "streamvane_demo" / "content_items.jsonl"


def _engagement(user: str, item: str, event: str, n: int) -> dict[str, Any]:
    return {
        "userId": user,
        "itemId": item,
        "eventType": event,
        "dwellMs": 20_000,
        "requestId": f"req-{n}",
        "eventTime": f"2026-12-01T10:00:{n:02d}Z",
    }


class Candidates:
    """Reads the candidates topic from its start; the newest candidates per user."""

    def __init__(self, cluster: Cluster) -> None:
        self._client = pulsar.Client(cluster.pulsar_url)
        self._consumer = self._client.subscribe(
            cluster.topic("candidates"),
            f"e2e-{uuid.uuid4().hex[:6]}",
            initial_position=pulsar.InitialPosition.Earliest,
        )
        self.latest: dict[str, dict[str, Any]] = {}
        self.every_item: set[str] = set()

    def until(self, user: str, version: int, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while self.latest.get(user, {}).get("profile", {}).get("version", 0) < version:
            assert time.monotonic() < deadline, f"no candidates for {user} v{version}"
            try:
                message = self._consumer.receive(timeout_millis=1000)
            except pulsar.Timeout:
                continue
            self._consumer.acknowledge(message)
            doc = json.loads(message.data())
            self.every_item |= {c["itemId"] for c in doc["items"]}
            seen = self.latest.get(doc["userId"], {}).get("profile", {}).get("version", 0)
            if doc["profile"]["version"] > seen:
                self.latest[doc["userId"]] = doc
        return self.latest[user]

    def close(self) -> None:
        self._client.close()


def _nearest(
    profile: dict[str, Any], enriched: dict[str, dict[str, Any]], blocked: set[str]
) -> list[str]:
    """Exact nearest neighbours of the profile among the retrievable, unseen items."""
    allowed = [i for i in enriched if i not in blocked and i not in profile["recentItems"]]
    vectors = np.asarray([enriched[i]["embedding"]["vector"] for i in allowed])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = vectors @ np.asarray(profile["vector"])
    return [allowed[j] for j in np.argsort(-scores)]


def _send_keyed(cluster: Cluster, local: str, key: str, payload: bytes) -> None:
    client = pulsar.Client(cluster.pulsar_url)
    try:
        producer = client.create_producer(cluster.topic(local), batching_enabled=False)
        producer.send(payload, partition_key=key)
    finally:
        client.close()


def test_recommendation_pipeline_recommends_from_the_catalogue_without_blocked_or_deleted_items(
    cluster: Cluster,
) -> None:
    assert cluster.apply(cluster.sample("inferencebackend-triton-local.yaml")).returncode == 0
    assert cluster.apply(cluster.sample("pipeline-content-understanding.yaml")).returncode == 0
    recs = cluster.sample("pipeline-recommendation.yaml")
    for stage in recs["spec"]["stages"]:
        stage["params"]["catalogueTopic"] = cluster.topic("content-enriched")
    assert cluster.apply(recs).returncode == 0
    cluster.wait_ready("content-understanding", timeout_s=240)
    ready = cluster.wait_ready("recommendation", timeout_s=240)
    assert ready["status"]["stagesReady"] == "2/2"
    assert "recommendation-profiles-state" in cluster.pulsar_topics()

    items = [json.loads(line) for line in DEMO_ITEMS.read_text().splitlines() if line.strip()]
    cluster.publish("content-items", items)
    enriched = {d["id"]: d for d in cluster.consume("content-enriched", len(items), 180)}
    assert len(enriched) == len(items)
    blocked = {i for i, d in enriched.items() if d["safety"]["decision"] == "block"}
    violent = [i["id"] for i in items if i.get("category") == "violence"]
    assert blocked and set(violent) <= blocked, "the sample's safety stage blocks violence"

    # A user who liked a violent clip: the items nearest their profile are the other blocked
    # ones, which must never be candidates.
    candidates = Candidates(cluster)
    try:
        user = f"user-{uuid.uuid4().hex[:6]}"
        cooking = [i["id"] for i in items if i.get("category") == "cooking"]
        events = [
            _engagement(user, violent[0], "like", 0),
            _engagement(user, cooking[0], "view", 1),
        ]
        for n, event in enumerate(events, start=1):
            _send_keyed(cluster, "engagements", user, json.dumps(event).encode())
            latest = candidates.until(user, n, timeout_s=60)
        profile = latest["profile"]
        assert profile["recentItems"] == [cooking[0], violent[0]]
        found = [c["itemId"] for c in latest["items"]]
        assert len(found) == 20 and not set(found) & blocked
        assert found[:3] == _nearest(profile, enriched, blocked)[:3], "exact top 3 of 48 items"

        deleted = found[0]
        _send_keyed(cluster, "content-enriched", deleted, b"")  # tombstone: item deleted
        for n in range(3, 30):
            event = _engagement(user, cooking[1], "view", n)
            _send_keyed(cluster, "engagements", user, json.dumps(event).encode())
            latest = candidates.until(user, n, timeout_s=60)
            if deleted not in [c["itemId"] for c in latest["items"]]:
                break
        else:
            raise AssertionError(f"{deleted} still a candidate after its deletion")
        assert not candidates.every_item & blocked
    finally:
        candidates.close()
