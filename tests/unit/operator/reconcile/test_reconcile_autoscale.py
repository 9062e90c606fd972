"""The autoscaler's tick and the hand-over of replicas, against in-memory Kubernetes and Pulsar."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from streamvane_operator.api.common import API_VERSION
from streamvane_operator.kube.client import ObjectRef
from streamvane_operator.kube.testing import FakeKube
from streamvane_operator.pulsar.testing import FakePulsar
from streamvane_operator.reconcile.autoscale import (
    SCALING_ACTIVE,
    AutoscaleOutcome,
    autoscale_pipeline,
    autoscaling_status,
    conditions_status,
    needs_ticks,
    write_condition,
)
from streamvane_operator.reconcile.common import Deps
from streamvane_operator.reconcile.pipeline import owner_of, reconcile_pipeline
from streamvane_operator.render.labels import AUTOSCALER_FIELD_MANAGER
from streamvane_operator.render.worker import WorkerDefaults
from streamvane_operator.scaling.errors import MetricsUnavailable
from streamvane_operator.scaling.loop import StageMemory
from streamvane_operator.scaling.signals import ModelCounters

OWNER = owner_of("cu", "media", "uid-1")
ITEMS = "persistent://streamvane/content/items"
DEPLOYMENT = ObjectRef("apps/v1", "Deployment", "media", "cu-relay")
BACKEND = {
    "apiVersion": API_VERSION,
    "kind": "InferenceBackend",
    "metadata": {"name": "triton", "namespace": "media"},
    "spec": {"endpoint": {"url": "127.0.0.1:8001", "metricsUrl": "http://127.0.0.1:8002/metrics"}},
}


def spec(**scaling: Any) -> dict[str, Any]:
    return {
        "pulsar": {"namespace": "content"},
        "stages": [
            {
                "name": "relay",
                "type": "passthrough",
                "input": {"topic": "items"},
                "outputs": ["out"],
                "scaling": {"minReplicas": 0, "maxReplicas": 4, "targetLagSeconds": 30, **scaling},
            }
        ],
    }


def embed_spec() -> dict[str, Any]:
    doc = spec()
    doc["stages"][0].update(
        name="embed", type="text-embedding", model={"backend": "triton", "name": "minilm"}
    )
    return doc


class World:
    def __init__(self) -> None:
        self.kube = FakeKube([copy.deepcopy(BACKEND)])
        self.pulsar = FakePulsar()
        self.now = 1000.0
        self.metrics: dict[str, ModelCounters] | None = {"minilm": ModelCounters(0, 0)}
        self.memory: dict[str, StageMemory] = {}
        self.status: dict[str, Any] = {}
        self.deps = Deps(
            kube=self.kube,
            pulsar=lambda url, token, ca=None: self.pulsar.admin(url),
            defaults=WorkerDefaults(image="worker:test"),
            clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
            triton_metrics=self.read_metrics,
            monotonic=lambda: self.now,
        )

    def read_metrics(self, url: str) -> dict[str, ModelCounters]:
        if self.metrics is None:
            raise MetricsUnavailable(f"{url}: refused")
        return self.metrics

    def reconcile(self, doc: dict[str, Any]) -> None:
        outcome = reconcile_pipeline(self.deps, OWNER, doc, 1, self.status)
        # A merge patch of the reconcile's own top-level fields, as the handler writes it.
        self.status.update(outcome.status.model_dump(by_alias=True, mode="json", exclude_none=True))

    def tick(self, doc: dict[str, Any]) -> AutoscaleOutcome:
        outcome = autoscale_pipeline(self.deps, OWNER, doc, self.status, self.memory)
        self.memory = outcome.memory
        own = autoscaling_status(self.status, outcome)
        if own is not None:
            self.status["autoscaling"] = own
        conditions = conditions_status(self.status, outcome, self.deps.clock())
        if conditions is not None:
            self.status["conditions"] = conditions
        self.now += 5
        return outcome

    def replicas(self, name: str = "cu-relay") -> int:
        ref = ObjectRef("apps/v1", "Deployment", "media", name)
        return int(self.kube.objects[ref]["spec"]["replicas"])

    def condition(self) -> dict[str, Any]:
        return next(c for c in self.status["conditions"] if c["type"] == SCALING_ACTIVE)


@pytest.fixture
def world() -> World:
    return World()


def test_reconcile_creates_autoscaled_deployment_at_min_replicas_owned_by_the_autoscaler(
    world: World,
) -> None:
    world.reconcile(spec())

    deployment = world.kube.objects[DEPLOYMENT]
    assert deployment["spec"]["replicas"] == 0
    managers = {m["manager"] for m in deployment["metadata"]["managedFields"]}
    assert AUTOSCALER_FIELD_MANAGER in managers


def test_reconcile_keeps_the_autoscalers_replicas_when_the_spec_is_edited(world: World) -> None:
    world.reconcile(spec())
    world.kube.scale(DEPLOYMENT, 3, AUTOSCALER_FIELD_MANAGER)
    edited = spec()
    edited["stages"][0]["batching"] = {"maxBatchSize": 8}

    world.reconcile(edited)

    assert world.replicas() == 3


def test_autoscale_scales_from_zero_with_an_event_when_the_subscription_has_a_backlog(
    world: World,
) -> None:
    world.reconcile(spec())
    world.pulsar.backlog[(ITEMS, "media.cu-relay")] = 500

    outcome = world.tick(spec())

    assert world.replicas() >= 1
    (event,) = outcome.events.items
    assert event.reason == "ScaledFromZero" and "0 -> " in event.message
    (stage,) = world.status["autoscaling"]
    assert stage["desiredReplicas"] == world.replicas()
    assert stage["scalingReason"].startswith("ScaledFromZero: backlog 500")
    assert stage["lastScaleTime"] == "2026-01-01T00:00:00Z"
    assert world.condition()["status"] == "True"


def test_autoscale_writes_nothing_when_the_decision_does_not_change(world: World) -> None:
    world.reconcile(spec())
    scaled = len(world.kube.scaled)

    outcome = world.tick(spec())

    assert len(world.kube.scaled) == scaled
    assert outcome.events.items == []
    assert world.status["autoscaling"][0]["scalingReason"].startswith("Steady")


def test_autoscale_freezes_replicas_and_says_why_when_pulsar_is_unreachable(
    world: World,
) -> None:
    world.reconcile(spec())
    world.pulsar.backlog[(ITEMS, "media.cu-relay")] = 500
    world.pulsar.unavailable = True
    scaled = len(world.kube.scaled)

    first, second = world.tick(spec()), world.tick(spec())

    assert world.replicas() == 0 and len(world.kube.scaled) == scaled
    assert world.condition()["status"] == "False"
    assert world.condition()["reason"] == "SignalsMissing"
    assert "Pulsar stats unavailable" in world.condition()["message"]
    assert [e.reason for e in first.events.items] == ["ScalingFrozen"]
    assert second.events.items == []  # said once, not every tick
    world.pulsar.unavailable = False
    resumed = world.tick(spec())
    assert world.replicas() >= 1
    assert {e.reason for e in resumed.events.items} == {"ScalingResumed", "ScaledFromZero"}


def test_autoscale_freezes_an_inferring_stage_when_triton_metrics_are_unreadable(
    world: World,
) -> None:
    world.reconcile(embed_spec())
    world.pulsar.backlog[(ITEMS, "media.cu-embed")] = 500
    world.metrics = None

    world.tick(embed_spec())

    assert world.replicas("cu-embed") == 0
    assert "backend metrics unavailable" in world.condition()["message"]


def test_autoscale_holds_replicas_when_the_backend_queues_requests(world: World) -> None:
    world.reconcile(embed_spec())
    world.kube.scale(ObjectRef("apps/v1", "Deployment", "media", "cu-embed"), 1, "test")
    world.tick(embed_spec())
    world.pulsar.backlog[(ITEMS, "media.cu-embed")] = 5000
    world.metrics = {"minilm": ModelCounters(queue_us=100 * 200_000, success=100)}

    world.tick(embed_spec())

    assert world.replicas("cu-embed") == 1
    assert world.status["autoscaling"][0]["scalingReason"].startswith("BackendSaturated")


def test_autoscale_leaves_keda_stages_to_keda_when_engine_is_keda(world: World) -> None:
    doc = spec(engine="KEDA")
    world.reconcile(doc)
    world.pulsar.backlog[(ITEMS, "media.cu-relay")] = 500

    outcome = world.tick(doc)

    assert outcome.stages == {} and outcome.condition is None
    assert all(ref.kind != "Deployment" or n == 0 for ref, n in world.kube.scaled)
    kinds = {ref.kind for ref in world.kube.objects}
    assert {"ScaledObject"} <= kinds


def test_reconcile_keeps_the_scaling_status_when_it_refreshes_the_stages(world: World) -> None:
    world.reconcile(spec())
    world.pulsar.backlog[(ITEMS, "media.cu-relay")] = 500
    world.tick(spec())
    reason = world.status["autoscaling"][0]["scalingReason"]

    world.reconcile(spec())

    assert world.status["autoscaling"][0]["scalingReason"] == reason
    assert world.condition()["status"] == "True"


def test_autoscale_status_is_written_only_when_it_changes(world: World) -> None:
    world.reconcile(spec())
    world.pulsar.backlog[(ITEMS, "media.cu-relay")] = 500
    world.tick(spec())  # scales from zero
    world.tick(spec())  # now steady at that count: a new reason, written once

    outcome = autoscale_pipeline(world.deps, OWNER, spec(), world.status, world.memory)

    assert autoscaling_status(world.status, outcome) is None
    assert conditions_status(world.status, outcome, world.deps.clock()) is None


def test_autoscale_leaves_status_alone_when_the_spec_cannot_be_read(world: World) -> None:
    world.reconcile(spec())
    world.tick(spec())
    broken = spec()
    broken["stages"][0]["type"] = "no-such-stage"

    outcome = autoscale_pipeline(world.deps, OWNER, broken, world.status, world.memory)

    assert outcome.skipped
    assert autoscaling_status(world.status, outcome) is None
    assert conditions_status(world.status, outcome, world.deps.clock()) is None


def test_scaling_condition_is_not_written_over_a_status_changed_since_it_was_read(
    world: World,
) -> None:
    pipeline_ref = ObjectRef(API_VERSION, "Pipeline", "media", "cu")
    world.kube.objects[pipeline_ref] = {
        "apiVersion": API_VERSION,
        "kind": "Pipeline",
        "metadata": {"name": "cu", "namespace": "media", "resourceVersion": "8"},
        "spec": spec(),
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "New"}]},
    }
    world.reconcile(spec())
    outcome = autoscale_pipeline(world.deps, OWNER, spec(), world.status, world.memory)

    stale = write_condition(world.deps, OWNER, world.status, "7", outcome)
    stored = world.kube.objects[pipeline_ref]["status"]["conditions"]
    assert stale is not None and "changed since" in stale
    assert [c["type"] for c in stored] == ["Ready"]

    assert write_condition(world.deps, OWNER, world.status, "8", outcome) is None
    stored = world.kube.objects[pipeline_ref]["status"]["conditions"]
    assert SCALING_ACTIVE in {c["type"] for c in stored}


def test_autoscaler_ticks_only_for_scaled_stages_or_scaling_status_to_clear() -> None:
    fixed = spec(minReplicas=1, maxReplicas=1)
    scaling_condition = {"conditions": [{"type": "ScalingActive", "status": "True"}]}

    assert needs_ticks(spec(), {})
    assert not needs_ticks(fixed, {})
    assert not needs_ticks(spec(engine="KEDA"), None)
    assert needs_ticks(fixed, {"autoscaling": [{"name": "relay", "desiredReplicas": 2}]})
    assert needs_ticks(fixed, scaling_condition)
    assert not needs_ticks({"stages": "not a list"}, {})
