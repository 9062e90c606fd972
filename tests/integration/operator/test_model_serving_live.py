"""Against the real kube-apiserver and Pulsar, with the operator running at its default
``--pulsar-recheck-seconds`` (1 h): a Pipeline whose ranking stage follows model versions
reports the newest announcement on its model-versions topic as its ModelServing condition
within a few ``--model-serving-seconds``, with a warning Event once when a version is kept out
or rolled back, and at rest the timer reads the topic but writes nothing."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pulsar
import pytest
from test_reconcile_unchanged_live import create, mark_ready

from process_runner.harness import Background, operator, wait_for
from streamvane_operator.api.common import API_VERSION
from streamvane_operator.kube.client import KubeClient, ObjectRef
from streamvane_worker.stages.model_version import ModelVersion

pytestmark = pytest.mark.integration

MODEL = "recs-ranker"
MODEL_SERVING_S = 1
FEW_TICKS_S = 15 * MODEL_SERVING_S
"""How soon the condition follows an announcement: a tick, the shared read's half-interval
lifetime, and room for a busy machine."""
STARTED_S = 60
"""The operator's start and its first reconcile of the Pipeline."""
EXAMINE = "examinemessage"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Operator:
    """``python -m streamvane_operator`` on the test namespace; its /metrics."""

    def __init__(self, process: Background, metrics_port: int) -> None:
        self.process, self.metrics_port = process, metrics_port

    def examined(self) -> float:
        """examinemessage calls so far (0 while /metrics does not answer)."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        except httpx.TransportError:
            return 0.0
        return sum(
            float(line.rpartition(" ")[2])
            for line in text.splitlines()
            if line.startswith("streamvane_operator_pulsar_admin_requests_total")
            and EXAMINE in line
        )


@pytest.fixture
def running(
    stack: Any, namespace: str, pulsar_namespace: tuple[str, str], tmp_path: Path
) -> Iterator[Operator]:
    port = _free_port()
    process = operator(
        stack.kubeconfig,
        [namespace],
        tmp_path / "operator.log",
        model_serving_s=MODEL_SERVING_S,
        extra_args=[
            "--pulsar-recheck-seconds=3600",  # no full Pulsar check in this test's time
            f"--metrics-port={port}",
            "--metrics-host=127.0.0.1",
        ],
    ).start()
    yield Operator(process, port)
    process.stop()
    print(process.tail())  # shown when the test failed


def ranking_spec(stack: Any, tenant: str, namespace: str) -> dict[str, Any]:
    return {
        "pulsar": {
            "serviceUrl": stack.pulsar_url,
            "adminUrl": stack.pulsar_admin_url,
            "tenant": tenant,
            "namespace": namespace,
        },
        "stages": [
            {
                "name": "rank",
                "type": "ranking",
                "input": {"topic": "candidates"},
                "outputs": ["recommendations"],
                "model": {"backend": "triton", "name": MODEL},
                "params": {
                    "catalogueTopic": f"persistent://{tenant}/{namespace}/catalogue",
                    "modelVersionsTopic": "model-versions",
                },
            }
        ],
    }


def announce(client: pulsar.Client, topic: str, version: int, serving: int, reason: str) -> None:
    """As the trainer's sink publishes: batched, keyed by the model's name."""
    message = ModelVersion(
        model=MODEL,
        version=version,
        promoted=version == serving,
        serving_version=serving,
        reason=reason,
        announced_at=datetime.now(UTC),
    )
    producer = client.create_producer(topic, batching_enabled=True, batching_max_publish_delay_ms=1)
    producer.send(message.model_dump_json(by_alias=True).encode(), partition_key=MODEL)
    producer.close()


class Watched:
    """The Pipeline and its Events as the API server stores them."""

    def __init__(self, kube: KubeClient, namespace: str, name: str) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self.ref = ObjectRef(API_VERSION, "Pipeline", namespace, name)

    def stored(self) -> dict[str, Any]:
        found = self.kube.get(self.ref)
        assert found is not None
        return found

    def condition(self, type_: str) -> dict[str, Any]:
        conditions = (self.stored().get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), {})

    def serving(self, reason: str, message: str | None = None) -> dict[str, Any] | None:
        """The ModelServing condition once it has ``reason`` (and ``message``)."""
        found = self.condition("ModelServing")
        said = found.get("reason") == reason and message in (None, found.get("message"))
        return found if said else None

    def events(self, reason: str) -> list[str]:
        """Messages of the Pipeline's Events with ``reason``, each post one."""
        return [
            e.get("message", "")
            for e in self.kube.list("v1", "Event", self.namespace)
            if e.get("reason") == reason and e["involvedObject"].get("name") == self.name
        ]


@pytest.fixture
def pulsar_client(stack: Any) -> Iterator[pulsar.Client]:
    client = pulsar.Client(stack.pulsar_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    yield client
    client.close()


def test_model_serving_condition_and_events_follow_each_announcement_within_a_few_ticks(
    stack: Any,
    kube: KubeClient,
    namespace: str,
    pulsar_namespace: tuple[str, str],
    running: Operator,
    pulsar_client: pulsar.Client,
) -> None:
    tenant, ns = pulsar_namespace
    create(kube, "InferenceBackend", namespace, "triton", {"endpoint": {"url": stack.triton_grpc}})
    owner = create(kube, "Pipeline", namespace, "recs", ranking_spec(stack, tenant, ns))
    topic = f"persistent://{tenant}/{ns}/model-versions"
    recs = Watched(kube, namespace, "recs")

    unknown = wait_for(
        "no version announced", lambda: recs.serving("NoVersionAnnounced"), STARTED_S
    )
    assert unknown["status"] == "Unknown" and topic in unknown["message"]
    # Workers ready (no kubelet here): the Pipeline settles, and its resyncs skip it.
    wait_for("the ranking Deployment", lambda: recs.condition("Progressing"), STARTED_S)
    mark_ready(kube, owner)
    wait_for("Ready", lambda: recs.condition("Ready").get("status") == "True", STARTED_S)

    announce(pulsar_client, topic, 1, 1, "built by make models")
    serving = f"{MODEL} version 1 serving: built by make models"
    wait_for("version 1 serving", lambda: recs.serving("VersionServing", serving), FEW_TICKS_S)

    announce(pulsar_client, topic, 2, 1, "auc 0.52 < 0.70 - 0.01")
    kept = f"{MODEL} version 2 kept out: auc 0.52 < 0.70 - 0.01; version 1 serving"
    wait_for("version 2 kept out", lambda: recs.serving("VersionKeptOut", kept), FEW_TICKS_S)
    assert wait_for("its Event", lambda: recs.events("ModelVersionKeptOut"), FEW_TICKS_S) == [kept]

    announce(pulsar_client, topic, 3, 3, "auc 0.74 >= 0.70 - 0.01")
    announce(pulsar_client, topic, 1, 1, "rolled back by hand")
    rolled = f"{MODEL} rolled back to version 1 (from 3): rolled back by hand"
    rolled_back = wait_for("the rollback", lambda: recs.serving("RolledBack", rolled), FEW_TICKS_S)
    assert rolled_back["status"] == "True"
    assert wait_for("its Event", lambda: recs.events("ModelVersionRolledBack"), FEW_TICKS_S) == [
        rolled
    ]
    assert recs.events("ModelVersionKeptOut") == [kept], "posted once, not at every tick"

    # At rest: the timer keeps reading the topic, and writes nothing.
    version = recs.stored()["metadata"]["resourceVersion"]
    examined = running.examined()
    wait_for("three more ticks", lambda: running.examined() >= examined + 6, FEW_TICKS_S)
    assert recs.stored()["metadata"]["resourceVersion"] == version
    assert recs.condition("ModelServing") == rolled_back
    assert recs.events("ModelVersionRolledBack") == [rolled]
