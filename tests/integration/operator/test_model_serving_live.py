"""Against the real kube-apiserver and Pulsar: a Pipeline whose ranking stage follows model
versions reports the newest announcement on its model-versions topic as its ModelServing
condition (stored by the API server), with a warning Event once when a version is kept out
or rolled back; the announcements are read only at a full Pulsar check."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pulsar
import pytest
from test_reconcile_unchanged_live import create, mark_ready

from streamvane_operator.api.common import API_VERSION
from streamvane_operator.kube.client import KubeClient, ObjectRef
from streamvane_operator.pulsar.admin import AdminPool
from streamvane_operator.reconcile import pipeline
from streamvane_operator.reconcile.common import Deps
from streamvane_operator.reconcile.memory import ReconcileMemory
from streamvane_operator.render.labels import Owner
from streamvane_operator.render.worker import WorkerDefaults
from streamvane_worker.stages.model_version import ModelVersion

pytestmark = pytest.mark.integration

MODEL = "recs-ranker"
EXAMINE = "examinemessage"


@pytest.fixture
def calls() -> collections.Counter[str]:
    return collections.Counter()


@pytest.fixture
def pool(calls: collections.Counter[str]) -> Iterator[AdminPool]:
    found = AdminPool(
        timeout_s=10, attempts=3, observer=lambda method, path, *_: calls.update([path])
    )
    yield found
    found.close()


def deps(kube: KubeClient, pool: AdminPool, recheck_s: float) -> Deps:
    memory = ReconcileMemory(snapshot_ttl_s=0, pulsar_recheck_s=recheck_s)
    return Deps(kube=kube, pulsar=pool, defaults=WorkerDefaults("worker:test"), memory=memory)


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


class Reconciler:
    """Reconciles the Pipeline and stores its status, as the handlers do."""

    def __init__(self, deps: Deps, owner: Owner, spec: dict[str, Any]) -> None:
        self.deps, self.owner, self.spec = deps, owner, spec
        self.status: dict[str, Any] | None = None

    def __call__(self) -> tuple[dict[str, Any], list[tuple[str, str, bool]]]:
        """The ModelServing condition as the API server stored it, and the events."""
        outcome = pipeline.reconcile_pipeline(self.deps, self.owner, self.spec, 1, self.status)
        assert outcome.problem is None, outcome.problem
        self.status = outcome.status.model_dump(by_alias=True, mode="json", exclude_none=True)
        ref = ObjectRef(API_VERSION, "Pipeline", self.owner.namespace, self.owner.name)
        self.deps.kube.patch_status(ref, self.status)
        stored = self.deps.kube.get(ref)
        assert stored is not None
        (serving,) = [c for c in stored["status"]["conditions"] if c["type"] == "ModelServing"]
        return serving, [(e.reason, e.message, e.warning) for e in outcome.events.items]


@pytest.fixture
def pulsar_client(stack: Any) -> Iterator[pulsar.Client]:
    client = pulsar.Client(stack.pulsar_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    yield client
    client.close()


def test_model_serving_condition_and_events_follow_the_newest_announcement_when_published(
    stack: Any,
    kube: KubeClient,
    namespace: str,
    pulsar_namespace: tuple[str, str],
    pool: AdminPool,
    calls: collections.Counter[str],
    pulsar_client: pulsar.Client,
) -> None:
    tenant, ns = pulsar_namespace
    create(kube, "InferenceBackend", namespace, "triton", {"endpoint": {"url": stack.triton_grpc}})
    spec = ranking_spec(stack, tenant, ns)
    owner = create(kube, "Pipeline", namespace, "recs", spec)
    topic = f"persistent://{tenant}/{ns}/model-versions"
    reconcile = Reconciler(deps(kube, pool, recheck_s=0), owner, spec)  # every one a full check

    serving, events = reconcile()
    assert (serving["status"], serving["reason"]) == ("Unknown", "NoVersionAnnounced")
    assert topic in serving["message"]
    mark_ready(kube, owner)

    announce(pulsar_client, topic, 1, 1, "built by make models")
    serving, events = reconcile()
    assert (serving["status"], serving["reason"]) == ("True", "VersionServing")
    assert serving["message"] == f"{MODEL} version 1 serving: built by make models"
    assert events == []

    announce(pulsar_client, topic, 2, 1, "auc 0.52 < 0.70 - 0.01")
    serving, events = reconcile()
    kept = f"{MODEL} version 2 kept out: auc 0.52 < 0.70 - 0.01; version 1 serving"
    assert (serving["reason"], serving["message"]) == ("VersionKeptOut", kept)
    assert events == [("ModelVersionKeptOut", kept, True)]
    serving, events = reconcile()
    assert serving["message"] == kept and events == [], "posted once"

    announce(pulsar_client, topic, 3, 3, "auc 0.74 >= 0.70 - 0.01")
    announce(pulsar_client, topic, 1, 1, "rolled back by hand")
    serving, events = reconcile()
    rolled = f"{MODEL} rolled back to version 1 (from 3): rolled back by hand"
    assert (serving["status"], serving["reason"], serving["message"]) == (
        "True",
        "RolledBack",
        rolled,
    )
    assert events == [("ModelVersionRolledBack", rolled, True)]

    # Read at a full Pulsar check only: with the default recheck, once, then not again.
    calls.clear()
    hourly = Reconciler(deps(kube, pool, recheck_s=3600), owner, spec)
    hourly.status = reconcile.status
    assert hourly()[0]["message"] == rolled
    examined = sum(n for path, n in calls.items() if path.endswith(EXAMINE))
    assert examined == 2, "the newest entry and the one before: two announcements of the model"
    announce(pulsar_client, topic, 4, 4, "auc 0.75")
    calls.clear()
    serving, events = hourly()
    assert serving["message"] == rolled, "kept until the next full check"
    assert not [path for path in calls if path.endswith(EXAMINE)]
