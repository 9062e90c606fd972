"""The ranking stage follows model-version announcements against the real Pulsar and Triton:
a second recs-ranker version is written into the stack's model repository and loaded beside
the first (repository API, explicit model control), announced, and the recommendations switch
to it (their scores are that version's); an announced version Triton does not serve falls
back to the one serving; a rollback switches back. Messages flow throughout: none fails."""

from __future__ import annotations

import base64
import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pulsar
import pytest
from models import ranker as ranker_model

from streamvane_worker.inference.ranker import DENSE_FEATURES
from streamvane_worker.stages.model_version import ModelVersion
from streamvane_worker.training.export import ranker_graph
from streamvane_worker.training.mlp import Weights

from .pipeline import Collector, WorkerProcess

pytestmark = pytest.mark.integration

MODEL = ranker_model.RANKER_NAME
DIM = ranker_model.DIM
ITEMS = 12


def _unit(rng: np.random.Generator) -> list[float]:
    v = rng.standard_normal(DIM).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


def _candidates(n: int, user: list[float]) -> bytes:
    return json.dumps(
        {
            "userId": f"user-{n}",
            "profile": {
                "userId": f"user-{n}",
                "vector": user,
                "strength": 2.0,
                "recentItems": [],
                "eventCount": 3,
                "version": 1,
                "updatedAt": datetime.now(UTC).isoformat(),
            },
            "items": [{"itemId": f"item-{k}", "score": 0.5} for k in range(ITEMS)],
            "indexSize": ITEMS,
            "retrievedAt": datetime.now(UTC).isoformat(),
        }
    ).encode()


def announce(client: pulsar.Client, topic: str, version: int, serving: int, reason: str) -> None:
    """Publish a ModelVersion as the trainer does: keyed by the model's name."""
    message = ModelVersion(
        model=MODEL,
        version=version,
        promoted=version == serving,
        serving_version=serving,
        reason=reason,
        announced_at=datetime.now(UTC),
    )
    producer = client.create_producer(topic, batching_enabled=False)
    producer.send(message.model_dump_json(by_alias=True).encode(), partition_key=MODEL)
    producer.close()


@dataclass(frozen=True)
class Versions:
    """recs-ranker in the stack's Triton: its repository folder and the HTTP endpoint."""

    folder: Path
    http: str

    def onnx(self, version: int) -> Path:
        return self.folder / str(version) / "model.onnx"

    def load(self, versions: list[int]) -> None:
        """Load the model with its full config and ``version_policy specific versions``
        (a partial config would lose ``backend: python``)."""
        config = httpx.get(f"{self.http}/v2/models/{MODEL}/config", timeout=30).json()
        config["version_policy"] = {"specific": {"versions": versions}}
        body = {"parameters": {"config": json.dumps(config)}}
        response = httpx.post(
            f"{self.http}/v2/repository/models/{MODEL}/load", json=body, timeout=120
        )
        assert response.status_code == 200, response.text
        for version in versions:
            ready = httpx.get(f"{self.http}/v2/models/{MODEL}/versions/{version}/ready", timeout=10)
            assert ready.status_code == 200, f"version {version} not ready"


@pytest.fixture
def versions(stack: Any) -> Iterator[Versions]:
    """A version 2 of recs-ranker (random weights, seed 2) beside the built version 1; Triton
    is back on version 1 alone afterwards."""
    folder = stack.model_repository / MODEL
    second = folder / "2"
    second.mkdir(exist_ok=True)
    shutil.copyfile(folder / "1" / "model.py", second / "model.py")
    weights = Weights.initial(
        DIM + len(DENSE_FEATURES), ranker_model.HIDDEN, np.random.default_rng(2)
    )
    onnx.save_model(ranker_graph(weights, MODEL), second / "model.onnx")
    found = Versions(folder, f"http://{stack.triton_http}")
    yield found
    found.load([1])
    shutil.rmtree(second)


def _decode(vector: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(vector), dtype="<f4")


def rescored(session: ort.InferenceSession, recommendations: dict[str, Any]) -> list[float]:
    """The scores ``session`` gives the rows a Recommendations message logged."""
    user = _decode(recommendations["userFeatures"])
    items = recommendations["items"]
    feeds = {
        "user": np.stack([user] * len(items)),
        "item": np.stack([_decode(i["features"]["item"]) for i in items]),
        "dense": np.asarray(
            [[i["features"]["dense"][f] for f in DENSE_FEATURES] for i in items],
            dtype=np.float32,
        ),
    }
    (scores,) = session.run(["score"], feeds)
    return [float(s) for s in scores.reshape(-1)]


class Stream:
    """Candidates published at a steady pace from a thread until stopped."""

    def __init__(self, client: pulsar.Client, topic: str, interval_s: float = 0.05) -> None:
        self._producer = client.create_producer(topic, batching_enabled=False)
        self._stop = threading.Event()
        self.sent = 0
        rng = np.random.default_rng(7)
        self._users = [_unit(rng) for _ in range(8)]
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)
        self._thread.start()

    def _run(self, interval_s: float) -> None:
        while not self._stop.is_set():
            self._producer.send(_candidates(self.sent, self._users[self.sent % 8]))
            self.sent += 1
            self._stop.wait(interval_s)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self._producer.close()
        return self.sent


class Outputs:
    """The Recommendations read so far, decoded, in arrival order."""

    def __init__(self, collector: Collector) -> None:
        self._collector = collector
        self.decoded: list[dict[str, Any]] = []

    def until(self, done: Any, timeout: float, what: str) -> dict[str, Any]:
        """Read until a message satisfies ``done``; returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            start = len(self.decoded)
            messages = self._collector.until(start + 1, timeout=1.0)
            self.decoded.extend(json.loads(m.data()) for m in messages[start:])
            for message in self.decoded[start:]:
                if done(message):
                    return message
        raise AssertionError(f"no recommendations {what} within {timeout} s")

    def at_least(self, count: int, timeout: float) -> None:
        if len(self.decoded) < count:
            self.until(lambda m: len(self.decoded) >= count, timeout, f"{count} in all")

    def settled_on(self, more: int = 20, last: int = 10) -> set[str]:
        """Versions of the ``last`` of ``more`` messages read from now: batches scored before
        a switch may still be published just after it."""
        start = len(self.decoded)
        self.at_least(start + more, 60)
        return {m["model"]["version"] for m in self.decoded[start + more - last : start + more]}


def test_ranking_switches_to_an_announced_version_and_back_when_rolled_back_without_failing_a_message(
    stack: Any,
    pulsar_client: pulsar.Client,
    workers: list[WorkerProcess],
    tmp_path: Path,
    versions: Versions,
) -> None:
    base = f"persistent://public/default/it-versions-{uuid.uuid4().hex[:8]}"
    catalogue, announcements = f"{base}-catalogue", f"{base}-model-versions"
    rng = np.random.default_rng(3)
    producer = pulsar_client.create_producer(catalogue, batching_enabled=False)
    for k in range(ITEMS):
        item = {
            "id": f"item-{k}",
            "title": f"clip {k}",
            "embedding": {"vector": _unit(rng), "model": "m", "modelVersion": "1"},
        }
        producer.send(json.dumps(item).encode(), partition_key=f"item-{k}")
    producer.close()
    announce(pulsar_client, announcements, 1, 1, "built by make models")
    config = {
        "pipeline": "it",
        "stage": "rank",
        "stageType": "ranking",
        "pulsar": {"serviceUrl": stack.pulsar_url},
        "input": {"topic": f"{base}-in", "subscription": "workers"},
        "outputs": [f"{base}-out"],
        "batching": {"maxBatchSize": 8, "maxDelayMs": 5},
        "delivery": {"deadLetterTopic": f"{base}-dlq", "negativeAckDelayMs": 200},
        "inference": {"tritonUrl": stack.triton_grpc, "modelName": MODEL},
        "params": {"catalogueTopic": catalogue, "topK": 5, "modelVersionsTopic": announcements},
        "healthPort": 0,
        "startupTimeoutS": 20,
    }
    dead = Collector(pulsar_client, f"{base}-dlq")
    out = Outputs(Collector(pulsar_client, f"{base}-out"))
    worker = WorkerProcess(config, tmp_path).start()
    workers.append(worker)
    worker.wait_started(timeout=180)
    (read,) = worker.events("model_versions_read")
    assert read["version"] == 1
    sessions = {v: ort.InferenceSession(str(versions.onnx(v))) for v in (1, 2)}

    def scored_by(version: int) -> Any:
        def done(message: dict[str, Any]) -> bool:
            if message["model"]["version"] != str(version):
                return False
            scores = [i["score"] for i in message["items"]]
            assert scores == pytest.approx(rescored(sessions[version], message), rel=1e-5)
            return True

        return done

    stream = Stream(pulsar_client, f"{base}-in")
    try:
        out.until(scored_by(1), 60, "from version 1")
        versions.load([1, 2])  # while messages flow: the trainer's step before it announces
        announce(pulsar_client, announcements, 2, 2, "auc 0.71 >= 0.70 - margin")
        out.until(scored_by(2), 60, "from version 2 after its announcement")
        assert out.settled_on() == {"2"}

        announce(pulsar_client, announcements, 3, 3, "announced before this Triton loaded it")
        out.until(lambda m: bool(worker.events("model_version_unserved")), 60, "past version 3")
        assert out.settled_on() == {"2"}, "the version that served, not a failure"
        (unserved, *_) = worker.events("model_version_unserved")
        assert unserved["version"] == 3 and unserved["fallback"] == 2

        announce(pulsar_client, announcements, 1, 1, "rolled back by hand")
        out.until(scored_by(1), 60, "from version 1 after the rollback")
        assert out.settled_on() == {"1"}
    finally:
        sent = stream.stop()
    out.at_least(sent, 60)
    users = {m["userId"] for m in out.decoded}
    assert users == {f"user-{n}" for n in range(sent)}, "every message ranked"
    for message in out.decoded:  # each scored by the version it records
        version = int(message["model"]["version"])
        scores = [i["score"] for i in message["items"]]
        assert scores == pytest.approx(rescored(sessions[version], message), rel=1e-5)
    assert dead.until(1, timeout=2) == [], "nothing dead-lettered"
    assert worker.terminate() == 0
