"""training-examples workers against the real Pulsar of the local stack: the join of served
recommendations and engagements read from two topics, one subscription, Key_Shared."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pulsar
import pytest

from streamvane_worker.inference.ranker import DENSE_FEATURES
from streamvane_worker.stages.training_examples import LATE_REASON_PROPERTY, example_id, kept
from streamvane_worker.training.examples import FeatureLayout, TrainingExample

from .pipeline import Collector, WorkerProcess

pytestmark = pytest.mark.integration

DIM = 384
ITEMS = 4


def _vector(k: int) -> list[float]:
    v = np.zeros(DIM, dtype=np.float32)
    v[k % DIM] = 1.0
    v[(k * 7 + 1) % DIM] = 0.5
    return (v / np.linalg.norm(v)).tolist()


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def _recommendations(user: str, request: str, at: float) -> dict[str, Any]:
    return {
        "userId": user,
        "items": [
            {
                "itemId": f"item-{k}",
                "score": 0.5,
                "retrievalScore": 0.1 * k,
                "features": {
                    "item": _vector(k),
                    "dense": {f: round(0.1 * (n + 1) + k, 3) for n, f in enumerate(DENSE_FEATURES)},
                },
            }
            for k in range(ITEMS)
        ],
        "model": {"name": "recs-ranker", "version": "1"},
        "userFeatures": _vector(hash(user) % DIM),
        "profileVersion": 1,
        "requestId": request,
        "candidatesScored": ITEMS,
        "rankedAt": _iso(at),
    }


def _engagement(user: str, request: str | None, item: int, kind: str, at: float) -> dict[str, Any]:
    return {
        "userId": user,
        "itemId": f"item-{item}",
        "eventType": kind,
        "dwellMs": 1000,
        "requestId": request,
        "eventTime": _iso(at),
    }


@dataclass(frozen=True)
class JoinRun:
    config: dict[str, Any]
    recommendations: pulsar.Producer
    engagements: pulsar.Producer
    out: Collector
    late: Collector
    dlq: Collector
    state: str
    engagements_topic: str

    def serve(self, user: str, request: str, at: float) -> None:
        payload = json.dumps(_recommendations(user, request, at)).encode()
        self.recommendations.send(payload, partition_key=user)

    def engage(self, user: str, request: str | None, item: int, kind: str, at: float) -> None:
        payload = json.dumps(_engagement(user, request, item, kind, at)).encode()
        self.engagements.send(payload, partition_key=user)


def _join_run(stack: Any, client: pulsar.Client, name: str = "it-join", **params: Any) -> JoinRun:
    local = f"{name}-{uuid.uuid4().hex[:8]}"
    base = f"persistent://public/default/{local}"
    config = {
        "pipeline": "it",
        "stage": "join",
        "stageType": "training-examples",
        "pulsar": {"serviceUrl": stack.pulsar_url},
        "input": {
            "topic": f"{base}-recs",
            "subscription": "workers",
            "subscriptionType": "Key_Shared",
        },
        "outputs": [f"{base}-out"],
        "batching": {"maxBatchSize": 32, "maxDelayMs": 10},
        "delivery": {"deadLetterTopic": f"{base}-dlq", "negativeAckDelayMs": 200},
        "state": {"topic": f"{base}-state"},
        "params": {
            "engagementsTopic": f"{local}-eng",
            "lateTopic": f"{local}-late",
            "windowSeconds": 3,
            "allowedLatenessSeconds": 0,
            "idleFlushSeconds": 1,
            **params,
        },
        "healthPort": 0,
        "startupTimeoutS": 20,
    }
    return JoinRun(
        config,
        client.create_producer(f"{base}-recs", batching_enabled=False),
        client.create_producer(f"{base}-eng", batching_enabled=False),
        Collector(client, f"{base}-out"),
        Collector(client, f"{base}-late"),
        Collector(client, f"{base}-dlq"),
        f"{base}-state",
        f"{base}-eng",
    )


def _examples(run: JoinRun) -> list[TrainingExample]:
    return [TrainingExample.model_validate_json(m.data()) for m in run.out.messages]


def _late(run: JoinRun) -> list[tuple[str, dict[str, Any]]]:
    return [(m.properties()[LATE_REASON_PROPERTY], json.loads(m.data())) for m in run.late.messages]


def _wait_state(client: pulsar.Client, topic: str, keys: set[str], timeout: float) -> None:
    """Until the state topic holds a checkpoint of every key (the join saw those requests)."""
    state = Collector(client, topic)
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while not keys <= seen:
        assert time.monotonic() < deadline, f"state lacks {sorted(keys - seen)[:5]}"
        seen |= {m.partition_key() for m in state.until(len(state.messages) + 1, timeout=1)}
    state.close()


def test_join_labels_served_items_down_samples_negatives_and_sends_late_events_with_a_reason(
    stack: Any, pulsar_client: pulsar.Client, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    # A closed window's marker stays another window: long enough to see window-closed.
    run = _join_run(stack, pulsar_client, negativeSampleRate=0.5, windowSeconds=5)
    worker = WorkerProcess(run.config, tmp_path).start()
    workers.append(worker)
    worker.wait_started(timeout=180)

    now = time.time()
    requests = [f"req-{n}-{uuid.uuid4().hex[:6]}" for n in range(12)]
    for n, request in enumerate(requests):
        run.serve(f"user-{n % 3}", request, now)
    _wait_state(pulsar_client, run.state, set(requests), timeout=60)
    liked = {(r, n % ITEMS) for n, r in enumerate(requests)}
    for n, request in enumerate(requests):
        user = f"user-{n % 3}"
        run.engage(user, request, n % ITEMS, "like", now + 1)
        run.engage(user, request, (n + 1) % ITEMS, "skip", now + 1)  # not a positive
    run.engage("user-0", "never-served", 0, "like", now + 1)
    run.engagements.send(b"{not json", partition_key="user-0")

    expected = {example_id(r, f"item-{k}") for r in requests for k in range(ITEMS)}
    kept_ids = {
        example_id(r, f"item-{k}")
        for r in requests
        for k in range(ITEMS)
        if (r, k) in liked or kept(example_id(r, f"item-{k}"), 0.5)
    }
    assert 12 < len(kept_ids) < len(expected)
    missing = run.out.until_ids(kept_ids, timeout=60)
    assert not missing, f"{len(missing)} examples never came"
    examples = _examples(run)
    assert {e.id for e in examples} == kept_ids
    for e in examples:
        assert e.request_id is not None and e.item_id is not None
        k = int(e.item_id.split("-")[1])
        assert e.label == int((e.request_id, k) in liked)
        assert e.sample_rate == (1.0 if e.label else 0.5)
        assert e.features["item"] == pytest.approx(_vector(k), abs=0)
        assert e.features["retrievalScore"] == round(0.1 + k, 3)
        assert FeatureLayout.of(e.features).width == DIM + len(DENSE_FEATURES)
        assert e.model_version == "1" and e.user_id and e.user_id.startswith("user-")
    negative = next(e for e in examples if not e.label)
    served_ms = int(datetime.fromisoformat(_iso(now)).timestamp() * 1000)
    assert negative.ts == served_ms + 5000  # the window's end

    # The windows are closed now: an in-window engagement is late, so is one past the window.
    run.engage("user-0", requests[0], 3, "like", now + 2)
    run.engage("user-0", requests[0], 3, "like", now + 6)
    run.late.until(3, timeout=60)
    assert sorted(reason for reason, _ in _late(run)) == [
        "after-window",
        "unknown-request",
        "window-closed",
    ]
    (dead,) = run.dlq.until(1, timeout=60)
    assert dead.properties()["streamvane-error"] == "not-json"
    assert len(run.out.until(len(kept_ids) + 1, timeout=3)) == len(kept_ids)
    assert worker.terminate() == 0


def test_join_with_negatives_shown_labels_only_the_items_users_answered(
    stack: Any, pulsar_client: pulsar.Client, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    run = _join_run(stack, pulsar_client, name="it-join-shown", negatives="shown")
    worker = WorkerProcess(run.config, tmp_path).start()
    workers.append(worker)
    worker.wait_started(timeout=180)

    now = time.time()
    requests = [f"req-{n}-{uuid.uuid4().hex[:6]}" for n in range(4)]
    for request in requests:
        run.serve("user-0", request, now)
    _wait_state(pulsar_client, run.state, set(requests), timeout=60)
    shown = requests[:2]  # the other two lists were computed but never shown
    for request in shown:
        for k in (0, 1):
            run.engage("user-0", request, k, "impression", now + 1)
        run.engage("user-0", request, 0, "like", now + 1)

    labels = {example_id(r, f"item-{k}"): int(k == 0) for r in shown for k in (0, 1)}
    missing = run.out.until_ids(set(labels), timeout=60)
    assert not missing, f"{len(missing)} examples never came"
    # The unshown lists closed with the shown ones (one window, one watermark): no more come.
    examples = run.out.until(len(labels) + 1, timeout=3)
    assert {TrainingExample.model_validate_json(m.data()).id for m in examples} == set(labels)
    assert {e.id: e.label for e in _examples(run)} == labels
    assert worker.terminate() == 0


def _admin_consumers(stack: Any, topic: str, subscription: str) -> list[dict[str, Any]]:
    path = topic.replace("persistent://", "persistent/")
    stats = httpx.get(f"{stack.pulsar_admin_url}/admin/v2/{path}/stats", timeout=10)
    stats.raise_for_status()
    subs = stats.json().get("subscriptions", {})
    return list(subs.get(subscription, {}).get("consumers", []))


def _wait_consumed(stack: Any, topics: list[str], subscription: str) -> None:
    """Until every message of ``topics`` was acked on ``subscription``."""
    deadline = time.monotonic() + 60
    for topic in topics:
        path = topic.replace("persistent://", "persistent/")
        while True:
            stats = httpx.get(f"{stack.pulsar_admin_url}/admin/v2/{path}/stats", timeout=10)
            sub = stats.json()["subscriptions"][subscription]
            if sub["msgBacklog"] == 0 and sub.get("unackedMessages", 0) == 0:
                break
            assert time.monotonic() < deadline, f"{topic}: {sub['msgBacklog']} unacked"
            time.sleep(0.2)


def test_two_replicas_meet_each_users_recommendations_and_engagements_on_one_replica(
    stack: Any, pulsar_client: pulsar.Client, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    """Key_Shared on two topics with the same consumers: a user's engagements reach the
    replica holding the user's requests (else they would be late as unknown requests)."""
    run = _join_run(stack, pulsar_client)
    replicas = [WorkerProcess(run.config, tmp_path).start() for _ in range(2)]
    workers.extend(replicas)
    for replica in replicas:
        replica.wait_started(timeout=180)
    recs_topic = run.config["input"]["topic"]
    for topic in (recs_topic, run.engagements_topic):
        names = {c["consumerName"] for c in _admin_consumers(stack, topic, "workers")}
        assert len(names) == 2, f"{topic}: {names}"

    now = time.time()
    users = [f"user-{uuid.uuid4().hex[:6]}" for _ in range(40)]
    requests = {u: f"req-{u}" for u in users}
    for user in users:
        run.serve(user, requests[user], now)
    _wait_state(pulsar_client, run.state, set(requests.values()), timeout=60)
    for user in users:
        run.engage(user, requests[user], 0, "view", now + 1)

    expected = {example_id(requests[u], f"item-{k}") for u in users for k in range(ITEMS)}
    assert not run.out.until_ids(expected, timeout=60)
    labels = {e.id: e.label for e in _examples(run)}
    assert sum(labels.values()) == len(users)
    assert run.late.until(1, timeout=2) == [], "an engagement missed its user's replica"
    for topic in (recs_topic, run.engagements_topic):
        delivered = [c["msgOutCounter"] for c in _admin_consumers(stack, topic, "workers")]
        assert len(delivered) == 2 and min(delivered) > 0, f"{topic}: {delivered}"
    for replica in replicas:
        assert replica.terminate() == 0


def test_join_loses_no_example_and_repeats_none_but_by_id_when_its_worker_is_sigkilled(
    stack: Any, pulsar_client: pulsar.Client, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    # The lateness covers the two topics' backlogs being read in any order after the restart
    # (their event times span the seconds the worker was down).
    run = _join_run(stack, pulsar_client, windowSeconds=2, allowedLatenessSeconds=20)
    worker = WorkerProcess(run.config, tmp_path).start()
    workers.append(worker)
    worker.wait_started(timeout=180)

    requests: list[tuple[str, str, float]] = []
    liked: set[tuple[str, int]] = set()
    halfway = threading.Event()
    rounds = 300

    def publish() -> None:
        previous: tuple[str, str, float] | None = None
        for n in range(rounds):
            at = time.time()
            user = f"user-{n % 10}"
            request = f"req-{n}-{uuid.uuid4().hex[:6]}"
            run.serve(user, request, at)
            requests.append((user, request, at))
            if previous is not None:  # a round later: engagements follow what was served
                p_user, p_request, p_at = previous
                item = n % ITEMS
                liked.add((p_request, item))
                run.engage(p_user, p_request, item, "like", p_at + 0.5)
            previous = (user, request, at)
            if n == rounds // 2:
                halfway.set()
            time.sleep(0.02)

    publisher = threading.Thread(target=publish)
    publisher.start()
    assert halfway.wait(60)
    run.out.until(5, timeout=60)
    assert publisher.is_alive(), "the kill must come mid-stream"
    worker.kill()  # SIGKILL: no drain; what it held unacked is redelivered
    restarted = WorkerProcess(run.config, tmp_path).start()
    workers.append(restarted)
    restarted.wait_started(timeout=180)
    publisher.join(60)

    expected = {example_id(r, f"item-{k}") for _, r, _ in requests for k in range(ITEMS)}
    missing = run.out.until_ids(expected, timeout=120)
    assert not missing, f"{len(missing)} of {len(expected)} examples lost"
    _wait_consumed(stack, [run.config["input"]["topic"], run.engagements_topic], "workers")
    run.late.until(len(liked), timeout=3)  # late events are persisted before their input's ack
    by_id: dict[str, set[int]] = {}
    for e in _examples(run):
        by_id.setdefault(str(e.id), set()).add(e.label)
    assert set(by_id) == expected
    assert all(len(labels) == 1 for labels in by_id.values()), "a duplicate changed its label"
    assert _late(run) == [], "an engagement read before its list must wait for it"
    for _, request, _ in requests:
        for k in range(ITEMS):
            (label,) = by_id[example_id(request, f"item-{k}")]
            assert label == int((request, k) in liked)
    assert restarted.events("state_rebuilt")[0]["keys"] > 0
    assert restarted.terminate() == 0
