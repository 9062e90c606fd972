"""online-training workers against the real Pulsar and Triton of the local stack.

The trainer runs on a model of its own (a copy of the built recs-ranker under a unique name,
loaded through Triton's repository API), so the other tests' ranker is never touched. Examples
come from a synthetic taste (users like items of their own cluster): the trainer exports a
candidate, judges it on the examples after it, writes the promoted version into the stack's
model repository and Triton serves it, with the earlier version still loaded; a candidate
trained on inverted labels is kept out and never written; a trainer killed with SIGKILL
resumes from its checkpoint (examples already learned, version numbers) instead of starting
over."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pulsar
import pytest

from streamvane_stack.models import model_copy
from streamvane_worker.inference.ranker import DENSE_FEATURES
from streamvane_worker.stages.model_version import ModelVersion

from .pipeline import CLUSTERS, Collector, Tastes, WorkerProcess, trainer_config

pytestmark = pytest.mark.integration

BUILT = "recs-ranker"
WAIT_S = 180.0
EXPORT_EVERY = 400
EVALUATION = 200
SLACK = 32
"""Two batches (of at most 16): a candidate is exported, and judged, at the end of the batch
that reaches its count, so the counts the tests send allow for it."""


@dataclass(frozen=True)
class TrainerModel:
    """A model of the trainer's own in the stack's repository and Triton."""

    name: str
    folder: Path
    http: str

    def ready(self, version: int) -> bool:
        url = f"{self.http}/v2/models/{self.name}/versions/{version}/ready"
        return httpx.get(url, timeout=10).status_code == 200

    def infer(self, version: int, feeds: dict[str, np.ndarray]) -> list[float]:
        body = {
            "inputs": [
                {"name": n, "shape": list(a.shape), "datatype": "FP32", "data": a.ravel().tolist()}
                for n, a in feeds.items()
            ]
        }
        url = f"{self.http}/v2/models/{self.name}/versions/{version}/infer"
        response = httpx.post(url, json=body, timeout=30)
        assert response.status_code == 200, response.text
        return [float(v) for v in response.json()["outputs"][0]["data"]]


@pytest.fixture
def model(stack: Any) -> Iterator[TrainerModel]:
    name = f"trainer-it-{uuid.uuid4().hex[:8]}"
    with model_copy(stack, BUILT, name) as folder:
        yield TrainerModel(name, folder, f"http://{stack.triton_http}")


@dataclass
class TrainerRun:
    config: dict[str, Any]
    producer: pulsar.Producer
    versions: Collector
    tastes: Tastes
    sent: int = 0

    def send(self, n: int, *, inverted: bool = False) -> None:
        for payload in self.tastes.examples(n, self.sent, inverted=inverted):
            self.producer.send(payload)
        self.sent += n

    def announced(self, count: int) -> list[ModelVersion]:
        messages = self.versions.until(count, timeout=WAIT_S)
        assert len(messages) >= count, f"{len(messages)} announcements, wanted {count}"
        return [ModelVersion.model_validate_json(m.data()) for m in messages]


@pytest.fixture
def run(stack: Any, pulsar_client: pulsar.Client, model: TrainerModel) -> TrainerRun:
    base = f"persistent://public/default/it-train-{uuid.uuid4().hex[:8]}"
    config = trainer_config(
        stack,
        base,
        model.name,
        16,
        exportEveryExamples=EXPORT_EVERY,
        evaluationExamples=EVALUATION,
        learningRate=0.01,
    )
    return TrainerRun(
        config,
        pulsar_client.create_producer(f"{base}-examples", batching_enabled=True),
        Collector(pulsar_client, f"{base}-versions"),
        Tastes(seed=3),
    )


def _feeds(tastes: Tastes, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    return {
        "user": tastes.centres[rng.integers(CLUSTERS, size=n)].astype(np.float32),
        "item": tastes.centres[rng.integers(CLUSTERS, size=n)].astype(np.float32),
        "dense": rng.random((n, len(DENSE_FEATURES))).astype(np.float32),
    }


def test_the_trainer_promotes_a_version_triton_serves_and_keeps_out_one_trained_on_inverted_labels(
    run: TrainerRun, model: TrainerModel, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    trainer = WorkerProcess(run.config, tmp_path).start()
    workers.append(trainer)
    trainer.wait_started()

    run.send(EXPORT_EVERY + EVALUATION + SLACK)
    (first,) = run.announced(1)
    assert (first.version, first.promoted, first.serving_version) == (2, True, 2), first
    assert first.auc is not None and first.serving_auc is not None
    assert first.auc > first.serving_auc, first  # learned the tastes the built one never saw
    assert first.window >= EVALUATION and first.examples_learned >= EXPORT_EVERY
    assert model.ready(2) and model.ready(1)  # the one before stays loaded for fall-backs
    feeds = _feeds(run.tastes, 8)
    session = ort.InferenceSession(str(model.folder / "2" / "model.onnx"))
    (expected,) = session.run(["score"], feeds)
    np.testing.assert_allclose(model.infer(2, feeds), expected.ravel(), rtol=1e-4, atol=1e-5)

    # Inverted labels until the next candidate is exported (after 2 * EXPORT_EVERY examples),
    # clean ones to judge it on: it learned the opposite of what serving knows.
    run.send(EXPORT_EVERY - EVALUATION - SLACK, inverted=True)
    run.send(EVALUATION + 2 * SLACK)
    second = run.announced(2)[1]
    assert (second.version, second.promoted, second.serving_version) == (3, False, 2), second
    assert "worse than serving" in second.reason, second
    assert second.auc is not None and second.serving_auc is not None
    assert second.auc < second.serving_auc - 0.01, second
    assert not (model.folder / "3").exists()  # never written: nothing can serve it
    assert model.ready(2)


def test_a_trainer_killed_mid_stream_resumes_from_its_checkpoint(
    run: TrainerRun, model: TrainerModel, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    trainer = WorkerProcess(run.config, tmp_path).start()
    workers.append(trainer)
    trainer.wait_started()
    run.send(EXPORT_EVERY + EVALUATION + SLACK)
    (first,) = run.announced(1)
    assert first.promoted and first.version == 2

    run.send(EXPORT_EVERY // 2)
    trainer.kill()  # SIGKILL: no drain, nothing flushed
    again = WorkerProcess(run.config, tmp_path).start()
    workers.append(again)
    again.wait_started()
    (resumed,) = again.events("trainer_resumed")
    assert resumed["serving"] == 2 and resumed["examples_seen"] >= first.examples_learned

    run.send(EXPORT_EVERY + EVALUATION + SLACK)
    second = run.announced(2)[1]
    assert second.version == 3, second  # numbers go on, not over
    # It learned from every example once at least: the ones before the kill were not lost.
    assert second.examples_learned >= 2 * EXPORT_EVERY, second
