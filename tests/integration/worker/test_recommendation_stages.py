"""user-profile and candidate-retrieval workers against the real Pulsar of the local stack."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pulsar
import pytest

from streamvane_worker.config import UserProfileParams
from streamvane_worker.stages.recommendation import Engagement
from streamvane_worker.stages.user_profile import EMPTY, apply

from .pipeline import Collector, WorkerProcess

pytestmark = pytest.mark.integration

DIM = 384
USERS = 12
ITEMS = 24


def _topic(base: str, name: str) -> str:
    return f"{base}-{name}"


def _vector(k: int) -> list[float]:
    v = np.zeros(DIM, dtype=np.float32)
    v[k % DIM] = 1.0
    v[(k * 7 + 1) % DIM] = 0.5
    return (v / np.linalg.norm(v)).round(7).tolist()


def _item(k: int, decision: str = "allow") -> dict[str, Any]:
    return {
        "id": f"item-{k}",
        "title": f"clip {k}",
        "embedding": {"vector": _vector(k), "model": "m", "modelVersion": "1"},
        "safety": {"decision": decision, "scores": {}, "flagged": []},
    }


def _send_keyed(client: pulsar.Client, topic: str, messages: list[tuple[str, bytes]]) -> None:
    producer = client.create_producer(topic, batching_enabled=False, block_if_queue_full=True)
    for key, payload in messages:
        producer.send(payload, partition_key=key)
    producer.close()


def _config(stack: Any, base: str, stage_type: str, **overrides: Any) -> dict[str, Any]:
    return {
        "pipeline": "it",
        "stage": stage_type,
        "stageType": stage_type,
        "pulsar": {"serviceUrl": stack.pulsar_url},
        "input": {"topic": _topic(base, "in"), "subscription": "workers"},
        "outputs": [_topic(base, "out")],
        "batching": {"maxBatchSize": 32, "maxDelayMs": 10},
        "delivery": {"deadLetterTopic": _topic(base, "dlq"), "negativeAckDelayMs": 200},
        "healthPort": 0,
        "startupTimeoutS": 20,
        **overrides,
    }


def _compact(stack: Any, topic: str) -> None:
    path = topic.replace("persistent://", "persistent/")
    httpx.put(f"{stack.pulsar_admin_url}/admin/v2/{path}/compaction", timeout=10).raise_for_status()


@dataclass(frozen=True)
class ProfileRun:
    """A user-profile worker config over a fresh catalogue, its input producer and output."""

    config: dict[str, Any]
    params: dict[str, Any]
    state: str
    out: Collector
    producer: pulsar.Producer


def _profile_run(stack: Any, client: pulsar.Client) -> ProfileRun:
    base = f"persistent://public/default/it-profile-{uuid.uuid4().hex[:8]}"
    catalogue, state = _topic(base, "catalogue"), _topic(base, "state")
    _send_keyed(
        client, catalogue, [(f"item-{k}", json.dumps(_item(k)).encode()) for k in range(ITEMS)]
    )
    params = {"catalogueTopic": catalogue, "halfLifeS": 600}
    config = _config(
        stack,
        base,
        "user-profile",
        input={
            "topic": _topic(base, "in"),
            "subscription": "workers",
            "subscriptionType": "Key_Shared",
        },
        state={"topic": state},
        params=params,
    )
    out = Collector(client, _topic(base, "out"))
    producer = client.create_producer(_topic(base, "in"), batching_enabled=False)
    return ProfileRun(config, params, state, out, producer)


KINDS = ["view", "like", "share", "skip", "impression"]


def _engagement(n: int, t0: float) -> dict[str, Any]:
    return {
        "userId": f"user-{n % USERS}",
        "itemId": f"item-{(n * 5) % ITEMS}",
        "eventType": KINDS[n % len(KINDS)],
        "dwellMs": (n * 997) % 40_000,
        "requestId": f"req-{n}",
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + n)) + "Z",
    }


def _assert_every_update_applied_once(run: ProfileRun, events: list[dict[str, Any]]) -> None:
    """Each user's newest profile has one version per engagement (a lost update shows as a
    lower version, a double one higher) and is exactly the state of every engagement applied
    once."""
    per_user: dict[str, int] = {}
    for event in events:
        per_user[event["userId"]] = per_user.get(event["userId"], 0) + 1
    latest: dict[str, dict[str, Any]] = {}
    read = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and any(
        latest.get(u, {}).get("version") != n for u, n in per_user.items()
    ):
        run.out.until(len(run.out.messages) + 1, timeout=1)
        for message in run.out.messages[read:]:
            profile = json.loads(message.data())
            if profile["version"] > latest.get(profile["userId"], {}).get("version", -1):
                latest[profile["userId"]] = profile
        read = len(run.out.messages)
    versions = {u: p["version"] for u, p in latest.items()}
    assert versions == per_user, "a lost update shows as a lower version, a double one higher"

    typed = UserProfileParams.model_validate(run.params)
    for user, profile in latest.items():
        expected = EMPTY
        for event in (e for e in events if e["userId"] == user):
            item = int(event["itemId"].split("-")[1])
            vector = np.asarray(_vector(item), dtype=np.float32)
            expected = apply(expected, Engagement.model_validate(event), vector, typed) or expected
        unit = expected.total / np.linalg.norm(expected.total)
        logged = np.frombuffer(base64.b64decode(profile["vector"]), dtype="<f4")
        np.testing.assert_allclose(logged, unit, atol=1e-5)
        assert profile["recentItems"] == [item for item, _ in expected.recent]


def test_user_profile_loses_no_update_and_applies_none_twice_when_its_worker_is_sigkilled(
    stack: Any, pulsar_client: pulsar.Client, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    run = _profile_run(stack, pulsar_client)
    worker = WorkerProcess(run.config, tmp_path).start()
    workers.append(worker)
    worker.wait_started(timeout=180)

    t0 = time.time()
    events = [_engagement(n, t0) for n in range(600)]
    first_half = threading.Event()

    def publish() -> None:
        for n, event in enumerate(events):
            run.producer.send(json.dumps(event).encode(), partition_key=event["userId"])
            if n == len(events) // 2:
                first_half.set()
            time.sleep(0.005)

    publisher = threading.Thread(target=publish)
    publisher.start()
    assert first_half.wait(60)
    run.out.until(50, timeout=60)
    assert publisher.is_alive(), "the kill must come mid-stream"
    worker.kill()  # SIGKILL: no drain, whatever was received and not acked is redelivered
    _compact(stack, run.state)
    restarted = WorkerProcess(run.config, tmp_path).start()
    workers.append(restarted)
    restarted.wait_started(timeout=180)
    publisher.join(60)
    run.producer.close()

    _assert_every_update_applied_once(run, events)
    assert restarted.events("state_rebuilt")[0]["keys"] > 0
    assert restarted.terminate() == 0


KILLS = 10


def test_user_profile_loses_no_update_across_ten_sigkills_of_two_key_shared_replicas(
    stack: Any, pulsar_client: pulsar.Client, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    """Two replicas share the users (Key_Shared); one of them is SIGKILLed and replaced ten
    times while engagements keep arriving, so keys move between replicas at every kill."""
    run = _profile_run(stack, pulsar_client)
    replicas = [WorkerProcess(run.config, tmp_path).start() for _ in range(2)]
    workers.extend(replicas)
    for replica in replicas:
        replica.wait_started(timeout=180)

    t0 = time.time()
    events: list[dict[str, Any]] = []
    done = threading.Event()

    def publish() -> None:
        while not done.is_set():
            event = _engagement(len(events), t0)
            run.producer.send(json.dumps(event).encode(), partition_key=event["userId"])
            events.append(event)
            time.sleep(0.01)

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        for kill in range(KILLS):
            produced = len(run.out.messages)
            run.out.until(produced + 20, timeout=60)  # both replicas' work flows before each kill
            victim = replicas[kill % 2]
            victim.kill()
            replicas[kill % 2] = WorkerProcess(run.config, tmp_path).start()
            workers.append(replicas[kill % 2])
            replicas[kill % 2].wait_started(timeout=180)
    finally:
        done.set()
        publisher.join(60)
    run.producer.close()

    assert len(events) > 100
    _assert_every_update_applied_once(run, events)
    for replica in replicas:
        assert replica.terminate() == 0


def _profile(user: str, vector: list[float], recent: list[str]) -> bytes:
    return json.dumps(
        {
            "userId": user,
            "vector": vector,
            "strength": 1.0,
            "recentItems": recent,
            "eventCount": 1,
            "version": 1,
            "updatedAt": "2026-01-01T00:00:00Z",
        }
    ).encode()


def _candidates_for(
    client: pulsar.Client, topic: str, out: Collector, vector: list[float], recent: list[str]
) -> list[str]:
    user = f"user-{uuid.uuid4().hex[:6]}"
    _send_keyed(client, topic, [(user, _profile(user, vector, recent))])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for message in out.until(len(out.messages) + 1, timeout=1):
            candidates = json.loads(message.data())
            if candidates["userId"] == user:
                return [c["itemId"] for c in candidates["items"]]
    raise AssertionError(f"no candidates for {user}")


def test_candidate_retrieval_excludes_blocked_seen_and_deleted_items_and_resumes_from_its_snapshot(
    stack: Any, pulsar_client: pulsar.Client, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    base = f"persistent://public/default/it-retrieval-{uuid.uuid4().hex[:8]}"
    catalogue = _topic(base, "catalogue")
    _send_keyed(
        pulsar_client,
        catalogue,
        [
            (f"item-{k}", json.dumps(_item(k, "block" if k == 0 else "allow")).encode())
            for k in range(ITEMS)
        ],
    )
    params = {"catalogueTopic": catalogue, "topK": 5, "snapshotDir": str(tmp_path / "snapshot")}
    config = _config(stack, base, "candidate-retrieval", params=params)
    out = Collector(pulsar_client, _topic(base, "out"))
    worker = WorkerProcess(config, tmp_path).start()
    workers.append(worker)
    worker.wait_started(timeout=180)
    query = _vector(0)  # nearest to the blocked item-0
    profiles = _topic(base, "in")

    found = _candidates_for(pulsar_client, profiles, out, query, recent=["item-1"])
    assert len(found) == 5 and not {"item-0", "item-1"} & set(found)
    deleted = found[0]
    _send_keyed(pulsar_client, catalogue, [(deleted, b"")])  # a tombstone deletes the item
    deadline = time.monotonic() + 30
    while deleted in _candidates_for(pulsar_client, profiles, out, query, recent=[]):
        assert time.monotonic() < deadline, f"{deleted} still retrieved after its deletion"

    assert worker.terminate() == 0
    restarted = WorkerProcess(config, tmp_path).start()
    workers.append(restarted)
    restarted.wait_started(timeout=180)
    (indexed,) = restarted.events("catalogue_indexed")
    assert indexed["from_snapshot"] and indexed["records_read"] == 0
    after = _candidates_for(pulsar_client, profiles, out, query, recent=[])
    assert deleted not in after and "item-0" not in after and indexed["items"] == ITEMS - 2
    assert restarted.terminate() == 0
