"""The Pipeline reconciler against an in-memory API server and an in-memory Pulsar."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from streamvane_operator.api.common import API_VERSION
from streamvane_operator.kube.client import ObjectRef
from streamvane_operator.kube.testing import FakeKube
from streamvane_operator.pulsar.admin import PulsarAdmin
from streamvane_operator.pulsar.testing import FakePulsar
from streamvane_operator.reconcile.common import Deps, RetryLater
from streamvane_operator.reconcile.pipeline import delete_pipeline, owner_of, reconcile_pipeline
from streamvane_operator.reconcile.status import Failure
from streamvane_operator.render.topology import STATE_COMPACTION_THRESHOLD_BYTES
from streamvane_operator.render.worker import WorkerDefaults
from streamvane_worker.config import WorkerConfig

OWNER = owner_of("cu", "media", "uid-1")
TOPIC = "persistent://streamvane/content/{}"
BACKEND = {
    "apiVersion": API_VERSION,
    "kind": "InferenceBackend",
    "metadata": {"name": "triton", "namespace": "media"},
    "spec": {"endpoint": {"url": "127.0.0.1:8001"}},
}


def embed_stage() -> dict[str, Any]:
    return {
        "name": "embed",
        "type": "text-embedding",
        "input": {"topic": "items"},
        "outputs": ["embedded"],
        "model": {"backend": "triton", "name": "all-minilm-l6-v2"},
    }


def relay_stage() -> dict[str, Any]:
    return {
        "name": "relay",
        "type": "passthrough",
        "input": {"topic": "embedded"},
        "outputs": ["out"],
    }


def pipeline_spec(*stages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"pulsar": {"namespace": "content"}, "stages": list(stages), **extra}


class World:
    def __init__(self) -> None:
        self.kube = FakeKube([copy.deepcopy(BACKEND)])
        self.pulsar = FakePulsar()
        self.admins: dict[str, PulsarAdmin] = {}
        self.deps = Deps(
            kube=self.kube,
            pulsar=lambda url, token: self.pulsar.admin(url),
            defaults=WorkerDefaults(image="worker:test"),
            clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        )

    def reconcile(self, spec: dict[str, Any], generation: int = 1, status: Any = None) -> Any:
        return reconcile_pipeline(self.deps, OWNER, spec, generation, status)

    def deployments(self) -> dict[str, dict[str, Any]]:
        return {ref.name: obj for ref, obj in self.kube.objects.items() if ref.kind == "Deployment"}

    def mark_ready(self) -> None:
        for ref, obj in list(self.kube.objects.items()):
            if ref.kind == "Deployment":
                replicas = obj["spec"]["replicas"]
                self.kube.set_status(
                    ref,
                    {
                        "observedGeneration": obj["metadata"]["generation"],
                        "replicas": replicas,
                        "updatedReplicas": replicas,
                        "readyReplicas": replicas,
                    },
                )


@pytest.fixture
def world() -> World:
    return World()


def test_reconcile_creates_topics_and_subscriptions_before_workloads(world: World) -> None:
    subscribed_at_apply: list[bool] = []
    apply = world.kube.apply

    def checking_apply(obj: dict[str, Any]) -> dict[str, Any]:
        if obj["kind"] == "Deployment":
            subs = world.pulsar.subscriptions.get(TOPIC.format("items"), set())
            subscribed_at_apply.append("cu-embed" in subs)
        return apply(obj)

    world.kube.apply = checking_apply  # type: ignore[method-assign]

    outcome = world.reconcile(pipeline_spec(embed_stage()))

    assert outcome.problem is None
    assert subscribed_at_apply == [True]
    assert set(world.pulsar.topics) == {
        TOPIC.format("items"),
        TOPIC.format("embedded"),
        TOPIC.format("cu-embed-dlq"),
    }
    assert world.pulsar.retention[TOPIC.format("items")] == {
        "retentionTimeInMinutes": 1440,
        "retentionSizeInMB": -1,
    }
    kinds = sorted(ref.kind for ref in world.kube.applied)
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]
    assert any(e.reason == "PulsarResourceCreated" for e in outcome.events.items)


def test_reconcile_changes_nothing_when_run_again(world: World) -> None:
    world.reconcile(pipeline_spec(embed_stage()))
    applied, calls = len(world.kube.applied), len(world.pulsar.calls)

    outcome = world.reconcile(pipeline_spec(embed_stage()))

    assert len(world.kube.applied) == applied
    writes = [c for c in world.pulsar.calls[calls:] if not c.startswith("GET")]
    assert writes == []
    assert outcome.events.items == []


def test_reconcile_reports_ready_with_backlog_when_workers_are_ready(world: World) -> None:
    world.reconcile(pipeline_spec(embed_stage()))
    world.mark_ready()
    world.pulsar.backlog[(TOPIC.format("items"), "cu-embed")] = 42

    outcome = world.reconcile(pipeline_spec(embed_stage()))

    ready = next(c for c in outcome.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("True", "AllStagesReady")
    assert outcome.status.backlog == 42
    (stage,) = outcome.status.stages
    assert (stage.desired_replicas, stage.ready_replicas, stage.backlog) == (1, 1, 42)
    assert stage.subscription == TOPIC.format("items") + "#cu-embed"


def test_reconcile_creates_nothing_when_backend_is_unknown(world: World) -> None:
    stage = embed_stage() | {"model": {"backend": "missing", "name": "m"}}

    outcome = world.reconcile(pipeline_spec(stage))

    assert outcome.problem is not None and outcome.problem.failure is Failure.INVALID_SPEC
    assert "InferenceBackend 'missing' does not exist" in outcome.problem.message
    assert outcome.retry_after_s is None
    assert world.kube.applied == [] and world.pulsar.calls == []
    degraded = next(c for c in outcome.status.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "InvalidSpec")


def test_reconcile_leaves_running_workers_alone_when_update_is_invalid(world: World) -> None:
    world.reconcile(pipeline_spec(embed_stage()))
    world.mark_ready()
    before = copy.deepcopy(world.kube.objects)
    cyclic = relay_stage() | {"outputs": ["items"]}

    outcome = world.reconcile(pipeline_spec(embed_stage(), cyclic), generation=2)

    assert world.kube.objects == before
    assert outcome.problem is not None and "cycle" in outcome.problem.message
    conditions = {c.type: c for c in outcome.status.conditions}
    assert conditions["Ready"].status == "True"
    assert "keep running" in conditions["Degraded"].message
    assert outcome.status.observed_generation == 2


def test_reconcile_retries_and_creates_no_workload_when_pulsar_is_unreachable(world: World) -> None:
    world.pulsar.unavailable = True

    outcome = world.reconcile(pipeline_spec(embed_stage()))

    assert outcome.problem is not None
    assert outcome.problem.failure is Failure.PULSAR_UNAVAILABLE
    assert outcome.retry_after_s == world.deps.retry_transient_s
    assert world.kube.applied == []
    progressing = next(c for c in outcome.status.conditions if c.type == "Progressing")
    assert (progressing.status, progressing.reason) == ("True", "Retrying")


def test_reconcile_deletes_stage_objects_when_stage_is_removed(world: World) -> None:
    world.reconcile(pipeline_spec(embed_stage(), relay_stage()))

    world.reconcile(pipeline_spec(embed_stage()), generation=2)

    assert sorted(world.deployments()) == ["cu-embed"]
    assert {ref.name for ref in world.kube.deleted} == {"cu-relay"}


def status_dump(outcome: Any) -> dict[str, Any]:
    """The status as the handler stores it (what the next reconcile reads back)."""
    return dict(outcome.status.model_dump(by_alias=True, mode="json"))


RELAY_SUBSCRIPTION = TOPIC.format("embedded") + "#cu-relay"


def test_reconcile_deletes_a_removed_stages_subscription_once_its_workers_disconnect(
    world: World,
) -> None:
    delete = {"deletionPolicy": "Delete"}
    first = world.reconcile(pipeline_spec(embed_stage(), relay_stage(), **delete))
    draining = (TOPIC.format("embedded"), "cu-relay")
    world.pulsar.consumers[draining] = 1

    pending = world.reconcile(
        pipeline_spec(embed_stage(), **delete), generation=2, status=status_dump(first)
    )

    assert pending.status.retiring_subscriptions == [RELAY_SUBSCRIPTION]
    assert "cu-relay" in world.pulsar.subscriptions[TOPIC.format("embedded")]
    world.pulsar.consumers[draining] = 0

    done = world.reconcile(
        pipeline_spec(embed_stage(), **delete), generation=2, status=status_dump(pending)
    )

    assert done.status.retiring_subscriptions == []
    assert world.pulsar.subscriptions[TOPIC.format("embedded")] == set()
    (event,) = [e for e in done.events.items if e.reason == "SubscriptionDeleted"]
    assert RELAY_SUBSCRIPTION in event.message


def test_reconcile_keeps_a_removed_stages_subscription_and_warns_when_policy_is_retain(
    world: World,
) -> None:
    first = world.reconcile(pipeline_spec(embed_stage(), relay_stage()))

    outcome = world.reconcile(pipeline_spec(embed_stage()), generation=2, status=status_dump(first))

    assert world.pulsar.subscriptions[TOPIC.format("embedded")] == {"cu-relay"}
    assert outcome.status.retiring_subscriptions == []
    (event,) = [e for e in outcome.events.items if e.reason == "SubscriptionsRetained"]
    assert event.warning and RELAY_SUBSCRIPTION in event.message


def test_reconcile_recreates_workload_when_deployment_was_deleted(world: World) -> None:
    world.reconcile(pipeline_spec(embed_stage()))
    world.kube.objects.pop(ObjectRef("apps/v1", "Deployment", "media", "cu-embed"))

    outcome = world.reconcile(pipeline_spec(embed_stage()))

    assert "cu-embed" in world.deployments()
    assert any("applied Deployment cu-embed" in e.message for e in outcome.events.items)


def test_reconcile_reports_kubernetes_unavailable_when_api_server_is_down(world: World) -> None:
    world.kube.unavailable = True

    outcome = world.reconcile(pipeline_spec(embed_stage()))

    assert outcome.problem is not None and outcome.problem.failure is Failure.KUBE_UNAVAILABLE
    assert outcome.retry_after_s == world.deps.retry_transient_s


def test_delete_pipeline_keeps_topics_when_policy_is_retain(world: World) -> None:
    world.reconcile(pipeline_spec(embed_stage()))

    events = delete_pipeline(world.deps, OWNER, pipeline_spec(embed_stage()))

    assert world.deployments() == {}
    assert TOPIC.format("items") in world.pulsar.topics
    assert [e.reason for e in events.items] == ["TopicsRetained"]


def test_delete_pipeline_removes_topics_when_policy_is_delete(world: World) -> None:
    spec = pipeline_spec(embed_stage(), deletionPolicy="Delete")
    world.reconcile(spec)

    delete_pipeline(world.deps, OWNER, spec)

    assert world.pulsar.topics == {}
    assert world.kube.list("v1", "ConfigMap", "media") == []


def test_delete_pipeline_asks_to_retry_when_pulsar_is_down_and_policy_is_delete(
    world: World,
) -> None:
    spec = pipeline_spec(embed_stage(), deletionPolicy="Delete")
    world.reconcile(spec)
    world.pulsar.unavailable = True

    with pytest.raises(RetryLater) as raised:
        delete_pipeline(world.deps, OWNER, spec)

    assert raised.value.delay_s == world.deps.retry_transient_s
    assert world.deployments() == {}


def test_delete_pipeline_waits_for_workers_to_disconnect_before_deleting_topics(
    world: World,
) -> None:
    spec = pipeline_spec(embed_stage(), deletionPolicy="Delete")
    world.reconcile(spec)
    world.pulsar.consumers[(TOPIC.format("items"), "cu-embed")] = 1
    world.pulsar.publishers[TOPIC.format("embedded")] = 1

    with pytest.raises(RetryLater, match="2 Pulsar connections") as raised:
        delete_pipeline(world.deps, OWNER, spec)

    assert raised.value.delay_s == world.deps.retry_workers_s
    assert world.deployments() == {}
    assert TOPIC.format("items") in world.pulsar.topics
    world.pulsar.consumers.clear()
    world.pulsar.publishers.clear()
    delete_pipeline(world.deps, OWNER, spec)
    assert world.pulsar.topics == {}


def profile_stage() -> dict[str, Any]:
    return {
        "name": "profiles",
        "type": "user-profile",
        "input": {"topic": "engagements", "subscriptionType": "Key_Shared"},
        "outputs": ["user-profiles"],
        "params": {"catalogueTopic": TOPIC.format("content-enriched")},
    }


def test_reconcile_creates_a_compacted_state_topic_kept_forever_when_a_stage_is_stateful(
    world: World,
) -> None:
    outcome = world.reconcile(pipeline_spec(profile_stage()))

    assert outcome.problem is None
    state = TOPIC.format("cu-profiles-state")
    assert world.pulsar.topics[state] == 0
    assert world.pulsar.compaction_threshold[state] == STATE_COMPACTION_THRESHOLD_BYTES
    assert world.pulsar.retention[state] == {"retentionTimeInMinutes": -1, "retentionSizeInMB": -1}
    (config_map,) = [o for r, o in world.kube.objects.items() if r.kind == "ConfigMap"]
    config = WorkerConfig.model_validate_json(next(iter(config_map["data"].values())))
    assert config.state is not None and config.state.topic == state
    again = len(world.pulsar.calls)
    world.reconcile(pipeline_spec(profile_stage()))
    assert [c for c in world.pulsar.calls[again:] if not c.startswith("GET")] == []
