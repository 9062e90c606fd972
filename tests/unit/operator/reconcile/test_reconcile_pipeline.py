"""The Pipeline reconciler against an in-memory API server and an in-memory Pulsar."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from streamvane_operator.api.common import API_VERSION
from streamvane_operator.kube.client import ObjectRef
from streamvane_operator.kube.testing import FakeKube
from streamvane_operator.preflight.testing import FakePreflight
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
        self.preflight = FakePreflight()
        self.admins: dict[str, PulsarAdmin] = {}
        self.credentials: list[tuple[str, str | None, str | None]] = []
        self.deps = Deps(
            kube=self.kube,
            pulsar=self.admin,
            defaults=WorkerDefaults(image="worker:test"),
            clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
            preflight=self.preflight,
        )

    def admin(self, url: str, token: str | None, ca: str | None = None) -> PulsarAdmin:
        self.credentials.append((url, token, ca))
        return self.pulsar.admin(url)

    def reconcile(self, spec: dict[str, Any], generation: int = 1, status: Any = None) -> Any:
        return reconcile_pipeline(self.deps, OWNER, spec, generation, status)

    def delete(self, spec: dict[str, Any], outcome: Any = None, annotations: Any = None) -> Any:
        """Delete as the handler does, with the status ``outcome`` left (None: no status)."""
        status = status_dump(outcome) if outcome is not None else None
        return delete_pipeline(self.deps, OWNER, spec, status, annotations or {})

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


def test_first_reconcile_reads_back_no_policy_or_subscription_of_topics_it_created(
    world: World,
) -> None:
    outcome = world.reconcile(pipeline_spec(embed_stage(), relay_stage()))

    assert outcome.problem is None
    reads = [c for c in world.pulsar.calls if c.startswith("GET")]
    assert not [c for c in reads if c.endswith(("/retention", "/subscriptions", "/schema"))]
    assert reads.count("GET /admin/v2/tenants") == 1


def test_reconcile_creates_topics_and_subscriptions_before_workloads(world: World) -> None:
    subscribed_at_apply: list[bool] = []
    apply = world.kube.apply

    def checking_apply(obj: dict[str, Any]) -> dict[str, Any]:
        if obj["kind"] == "Deployment":
            subs = world.pulsar.subscriptions.get(TOPIC.format("items"), set())
            subscribed_at_apply.append("media.cu-embed" in subs)
        return apply(obj)

    world.kube.apply = checking_apply  # type: ignore[method-assign]

    outcome = world.reconcile(pipeline_spec(embed_stage()))

    assert outcome.problem is None
    assert subscribed_at_apply == [True]
    assert set(world.pulsar.topics) == {
        TOPIC.format("items"),
        TOPIC.format("embedded"),
        TOPIC.format("cu-embed-dlq"),
        TOPIC.format("cu-embed-dlq-attempts"),
    }
    assert world.pulsar.retention[TOPIC.format("items")] == {
        "retentionTimeInMinutes": 1440,
        "retentionSizeInMB": -1,
    }
    kinds = sorted(ref.kind for ref in world.kube.applied)
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]
    assert any(e.reason == "PulsarResourceCreated" for e in outcome.events.items)


def test_reconcile_enables_deduplication_on_outputs_of_an_effectively_once_stage(
    world: World,
) -> None:
    eo = relay_stage() | {
        "input": {"topic": "embedded", "subscriptionType": "Failover"},
        "delivery": {"guarantee": "EffectivelyOnce"},
    }
    world.reconcile(pipeline_spec(embed_stage(), eo))

    assert world.pulsar.deduplication == {TOPIC.format("out"): True}
    calls = len(world.pulsar.calls)
    world.reconcile(pipeline_spec(embed_stage(), eo))
    assert not any("deduplicationEnabled" in c and "POST" in c for c in world.pulsar.calls[calls:])


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
    world.pulsar.backlog[(TOPIC.format("items"), "media.cu-embed")] = 42

    outcome = world.reconcile(pipeline_spec(embed_stage()))

    ready = next(c for c in outcome.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("True", "AllStagesReady")
    assert outcome.status.backlog == 42
    (stage,) = outcome.status.stages
    assert (stage.desired_replicas, stage.ready_replicas, stage.backlog) == (1, 1, 42)
    assert stage.subscription == TOPIC.format("items") + "#media.cu-embed"


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
    assert conditions["Ready"].status == "False"
    assert "keep running" in conditions["Degraded"].message
    assert outcome.status.observed_generation == 2


def test_reconcile_keeps_running_workers_and_is_degraded_when_edit_names_an_unserved_model(
    world: World,
) -> None:
    world.reconcile(pipeline_spec(embed_stage()))
    world.mark_ready()
    before = copy.deepcopy(world.kube.objects)
    world.preflight.missing_models.add("nope")
    edited = embed_stage() | {"model": {"backend": "triton", "name": "nope"}}

    outcome = world.reconcile(pipeline_spec(edited), generation=2)

    assert world.kube.objects == before
    assert outcome.problem is not None
    assert outcome.problem.failure is Failure.PREFLIGHT_FAILED
    assert "does not serve model 'nope'" in outcome.problem.message
    assert outcome.retry_after_s == world.deps.retry_transient_s
    conditions = {c.type: c for c in outcome.status.conditions}
    assert (conditions["Degraded"].status, conditions["Degraded"].reason) == (
        "True",
        "PreflightFailed",
    )
    assert conditions["Ready"].status == "False"
    assert "keep running" in conditions["Degraded"].message


def test_reconcile_rolls_once_preflight_passes_when_model_appears_later(world: World) -> None:
    world.reconcile(pipeline_spec(embed_stage()))
    world.preflight.missing_models.add("v2")
    edited = embed_stage() | {"model": {"backend": "triton", "name": "v2"}}
    assert world.reconcile(pipeline_spec(edited), generation=2).problem is not None

    world.preflight.missing_models.clear()
    outcome = world.reconcile(pipeline_spec(edited), generation=2)

    assert outcome.problem is None
    assert (
        "v2"
        in world.kube.objects[ObjectRef("v1", "ConfigMap", "media", "cu-embed")]["data"][
            "worker.json"
        ]
    )


def test_reconcile_checks_the_broker_only_when_an_edit_changes_the_service_url(
    world: World,
) -> None:
    world.reconcile(pipeline_spec(embed_stage()))
    world.reconcile(pipeline_spec(embed_stage()))
    assert world.preflight.checked == []
    world.preflight.down_brokers.add("pulsar://127.0.0.1:1")
    moved = pipeline_spec(embed_stage())
    moved["pulsar"]["serviceUrl"] = "pulsar://127.0.0.1:1"

    outcome = world.reconcile(moved, generation=2)

    assert world.preflight.checked == ["pulsar://127.0.0.1:1"]
    assert outcome.problem is not None
    assert "Pulsar broker at pulsar://127.0.0.1:1 does not answer" in outcome.problem.message


def test_reconcile_is_degraded_with_workers_message_when_their_pods_crash_loop(
    world: World,
) -> None:
    world.reconcile(pipeline_spec(embed_stage()))
    world.kube.objects[ObjectRef("v1", "Pod", "media", "cu-embed-abc")] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "cu-embed-abc",
            "namespace": "media",
            "labels": {"streamvane.io/pipeline": "cu", "streamvane.io/stage": "embed"},
        },
        "status": {
            "containerStatuses": [
                {
                    "name": "worker",
                    "ready": False,
                    "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {"exitCode": 3, "message": "Pulsar at x unreachable"}
                    },
                }
            ]
        },
    }

    outcome = world.reconcile(pipeline_spec(embed_stage()))

    assert outcome.problem is None  # nothing to retry: kubelet restarts the worker
    conditions = {c.type: c for c in outcome.status.conditions}
    assert (conditions["Degraded"].status, conditions["Degraded"].reason) == (
        "True",
        "WorkerCrashLoop",
    )
    assert conditions["Degraded"].message == (
        "stage embed: worker cu-embed-abc exited with code 3 (2 restarts): Pulsar at x unreachable"
    )
    assert outcome.status.stages[0].phase == "Failing"


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


RELAY_SUBSCRIPTION = TOPIC.format("embedded") + "#media.cu-relay"


def test_reconcile_deletes_a_removed_stages_subscription_once_its_workers_disconnect(
    world: World,
) -> None:
    delete = {"deletionPolicy": "Delete"}
    first = world.reconcile(pipeline_spec(embed_stage(), relay_stage(), **delete))
    draining = (TOPIC.format("embedded"), "media.cu-relay")
    world.pulsar.consumers[draining] = 1

    pending = world.reconcile(
        pipeline_spec(embed_stage(), **delete), generation=2, status=status_dump(first)
    )

    assert pending.status.retiring_subscriptions == [RELAY_SUBSCRIPTION]
    assert "media.cu-relay" in world.pulsar.subscriptions[TOPIC.format("embedded")]
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

    assert world.pulsar.subscriptions[TOPIC.format("embedded")] == {"media.cu-relay"}
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
    outcome = world.reconcile(pipeline_spec(embed_stage()))

    events = world.delete(pipeline_spec(embed_stage()), outcome)

    assert world.deployments() == {}
    assert TOPIC.format("items") in world.pulsar.topics
    assert [e.reason for e in events.items] == ["TopicsRetained"]


def test_delete_pipeline_removes_topics_when_policy_is_delete(world: World) -> None:
    spec = pipeline_spec(embed_stage(), deletionPolicy="Delete")
    outcome = world.reconcile(spec)

    world.delete(spec, outcome)

    assert world.pulsar.topics == {}
    assert world.kube.list("v1", "ConfigMap", "media") == []


def test_delete_pipeline_asks_to_retry_when_pulsar_is_down_and_policy_is_delete(
    world: World,
) -> None:
    spec = pipeline_spec(embed_stage(), deletionPolicy="Delete")
    outcome = world.reconcile(spec)
    world.pulsar.unavailable = True

    with pytest.raises(RetryLater, match="skip-pulsar-cleanup=true") as raised:
        world.delete(spec, outcome)

    assert raised.value.delay_s == world.deps.retry_transient_s
    assert world.deployments() == {}


def test_delete_pipeline_waits_for_workers_to_disconnect_before_deleting_topics(
    world: World,
) -> None:
    spec = pipeline_spec(embed_stage(), deletionPolicy="Delete")
    outcome = world.reconcile(spec)
    world.pulsar.consumers[(TOPIC.format("items"), "media.cu-embed")] = 1
    world.pulsar.publishers[TOPIC.format("embedded")] = 1

    with pytest.raises(RetryLater, match="2 Pulsar connections") as raised:
        world.delete(spec, outcome)

    assert raised.value.delay_s == world.deps.retry_workers_s
    assert world.deployments() == {}
    assert TOPIC.format("items") in world.pulsar.topics
    world.pulsar.consumers.clear()
    world.pulsar.publishers.clear()
    world.delete(spec, outcome)
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


def test_reconcile_reports_name_conflict_and_writes_nothing_when_a_config_map_is_someone_elses(
    world: World,
) -> None:
    theirs = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cu-embed", "namespace": "media"},
        "data": {"keep": "me"},
    }
    world.kube.apply(theirs)
    world.kube.applied.clear()

    outcome = world.reconcile(pipeline_spec(embed_stage()))

    assert outcome.problem is not None and outcome.problem.failure is Failure.NAME_CONFLICT
    assert "ConfigMap media/cu-embed already exists" in outcome.problem.message
    assert world.kube.applied == []
    assert [c for c in world.pulsar.calls if not c.startswith("GET")] == []
    stored = world.kube.objects[ObjectRef("v1", "ConfigMap", "media", "cu-embed")]
    assert stored["data"] == {"keep": "me"}
    degraded = next(c for c in outcome.status.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "NameConflict")


@pytest.mark.parametrize("name", ["p" * 70, "dotted.name", "9lives"])
def test_reconcile_calls_no_server_when_pipeline_name_cannot_name_objects(
    world: World, name: str
) -> None:
    world.kube.calls.clear()

    outcome = reconcile_pipeline(
        world.deps, owner_of(name, "media", "uid-x"), pipeline_spec(relay_stage()), 1, None
    )

    assert outcome.problem is not None and outcome.problem.failure is Failure.INVALID_SPEC
    assert f"Pipeline name {name!r} must be" in outcome.problem.message
    assert world.kube.calls == [] and world.pulsar.calls == []


def test_delete_pipeline_calls_no_pulsar_when_it_created_nothing(world: World) -> None:
    spec = pipeline_spec(embed_stage(), deletionPolicy="Delete")
    world.pulsar.unavailable = True
    outcome = world.reconcile(spec)
    assert outcome.status.created_topics == []

    events = world.delete(spec, outcome)

    assert [e.reason for e in events.items] == ["TopicsDeleted"]
    assert "created no topic" in events.items[0].message


def test_delete_pipeline_keeps_pulsar_and_warns_when_cleanup_is_skipped(world: World) -> None:
    spec = pipeline_spec(embed_stage(), deletionPolicy="Delete")
    outcome = world.reconcile(spec)
    world.pulsar.unavailable = True

    events = world.delete(spec, outcome, {"streamvane.io/skip-pulsar-cleanup": "true"})

    (event,) = events.items
    assert event.warning and event.reason == "PulsarCleanupSkipped"
    assert TOPIC.format("items") in event.message
    assert world.deployments() == {}


def test_delete_pipeline_deletes_only_what_it_created_and_keeps_topics_others_read(
    world: World,
) -> None:
    spec = pipeline_spec(embed_stage(), relay_stage(), deletionPolicy="Delete")
    world.pulsar.tenants.add("streamvane")
    world.pulsar.namespaces.add("streamvane/content")
    world.pulsar.topics[TOPIC.format("items")] = 0  # the producers' topic, not the Pipeline's
    outcome = world.reconcile(spec)
    assert TOPIC.format("items") not in outcome.status.created_topics
    world.pulsar.subscriptions[TOPIC.format("out")] = {"recommendation"}

    events = world.delete(spec, outcome)

    assert set(world.pulsar.topics) == {TOPIC.format("items"), TOPIC.format("out")}
    assert world.pulsar.subscriptions[TOPIC.format("items")] == set()
    assert world.pulsar.subscriptions[TOPIC.format("out")] == {"recommendation"}
    (kept,) = [e for e in events.items if e.reason == "TopicsKept"]
    assert "still read by subscriptions recommendation" in kept.message


def test_reconcile_refuses_to_write_into_another_pipelines_topic_unless_shared(
    world: World,
) -> None:
    other = owner_of("other", "shop", "uid-2")
    reconcile_pipeline(world.deps, other, pipeline_spec(relay_stage()), 1, None)
    writes = len([c for c in world.pulsar.calls if not c.startswith("GET")])

    outcome = world.reconcile(pipeline_spec(relay_stage() | {"name": "copy"}))

    assert outcome.problem is not None and outcome.problem.failure is Failure.TOPIC_CONFLICT
    assert f"{TOPIC.format('out')} belongs to Pipeline shop/other" in outcome.problem.message
    assert len([c for c in world.pulsar.calls if not c.startswith("GET")]) == writes
    assert world.deployments() == {"other-relay": world.deployments()["other-relay"]}

    shared = world.reconcile(pipeline_spec(relay_stage() | {"name": "copy"}, sharedOutputs=["out"]))

    assert shared.problem is None
    # Reading the other's topic: a new subscription that does not replay its history.
    assert world.pulsar.positions[(TOPIC.format("embedded"), "media.cu-copy")] == "latest"
    assert world.pulsar.positions[(TOPIC.format("embedded"), "shop.other-relay")] == "earliest"


def test_reconcile_keeps_a_running_stages_subscription_when_status_has_the_old_default_name(
    world: World,
) -> None:
    legacy = {
        "stages": [{"name": "embed", "subscription": TOPIC.format("items") + "#cu-embed"}],
    }

    outcome = world.reconcile(pipeline_spec(embed_stage()), status=legacy)

    assert outcome.problem is None
    assert outcome.status.stages[0].subscription == TOPIC.format("items") + "#cu-embed"
    assert world.pulsar.subscriptions[TOPIC.format("items")] == {"cu-embed"}
    assert outcome.status.created_subscriptions == [TOPIC.format("items") + "#cu-embed"]


def secret(name: str, key: str, value: str) -> dict[str, Any]:
    data = {key: base64.b64encode(value.encode()).decode()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "media"},
        "data": data,
    }


TLS_PULSAR = {
    "namespace": "content",
    "serviceUrl": "pulsar+ssl://pulsar.test:6651",
    "adminUrl": "https://pulsar.test:8443",
    "authSecretRef": {"name": "pulsar-jwt"},
    "tls": {"caSecretRef": {"name": "pulsar-ca", "key": "ca.crt"}},
}


def test_reconcile_gives_the_admin_client_the_token_and_ca_when_pulsar_uses_tls(
    world: World,
) -> None:
    world.kube.apply(secret("pulsar-jwt", "token", "jwt-1"))
    world.kube.apply(secret("pulsar-ca", "ca.crt", "PEM"))

    outcome = world.reconcile(pipeline_spec(relay_stage()) | {"pulsar": TLS_PULSAR})

    assert outcome.problem is None
    assert world.credentials == [("https://pulsar.test:8443", "jwt-1", "PEM")]


@pytest.mark.parametrize("missing", ["pulsar-jwt", "pulsar-ca"])
def test_reconcile_reports_secret_not_found_and_rolls_nothing_when_a_secret_is_missing(
    world: World, missing: str
) -> None:
    present = {"pulsar-jwt": ("token", "jwt-1"), "pulsar-ca": ("ca.crt", "PEM")}
    del present[missing]
    for name, (key, value) in present.items():
        world.kube.apply(secret(name, key, value))
    world.kube.applied.clear()

    outcome = world.reconcile(pipeline_spec(relay_stage()) | {"pulsar": TLS_PULSAR})

    assert outcome.problem is not None and outcome.problem.failure is Failure.SECRET_NOT_FOUND
    degraded = next(c for c in outcome.status.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "SecretNotFound")
    assert f"Secret media/{missing} with key" in degraded.message
    assert world.kube.applied == [] and world.pulsar.calls == []


def test_reconcile_reports_pulsar_unauthorized_when_the_token_is_refused(world: World) -> None:
    world.kube.apply(secret("pulsar-jwt", "token", "wrong"))
    refusing = httpx.MockTransport(lambda r: httpx.Response(401, text="Authentication required"))
    world.deps = dataclasses.replace(
        world.deps,
        pulsar=lambda url, token, ca=None: PulsarAdmin(url, token=token, transport=refusing),
    )
    spec = pipeline_spec(relay_stage()) | {
        "pulsar": {"namespace": "content", "authSecretRef": {"name": "pulsar-jwt"}}
    }

    outcome = world.reconcile(spec)

    degraded = next(c for c in outcome.status.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "PulsarUnauthorized")
    assert "HTTP 401" in degraded.message and "spec.pulsar.authSecretRef" in degraded.message
    assert outcome.retry_after_s == world.deps.retry_rejected_s


def test_reconcile_records_default_named_subscriptions_when_another_reconcile_created_them(
    world: World,
) -> None:
    world.reconcile(pipeline_spec(embed_stage()))  # its status is lost (a concurrent write)

    outcome = world.reconcile(pipeline_spec(embed_stage()))

    assert outcome.status.created_subscriptions == [TOPIC.format("items") + "#media.cu-embed"]


def test_reconcile_registers_each_written_topics_schema_before_workloads(world: World) -> None:
    registered_at_apply: list[bool] = []
    apply = world.kube.apply

    def checking_apply(obj: dict[str, Any]) -> dict[str, Any]:
        if obj["kind"] == "Deployment":
            registered_at_apply.append(TOPIC.format("out") in world.pulsar.schemas)
        return apply(obj)

    world.kube.apply = checking_apply  # type: ignore[method-assign]
    outcome = world.reconcile(pipeline_spec(embed_stage(), relay_stage()))

    assert outcome.problem is None
    assert registered_at_apply == [True, True]
    assert set(world.pulsar.schemas) == {TOPIC.format(t) for t in ("items", "embedded", "out")}
    assert set(world.pulsar.schema_compatibility.values()) == {"BACKWARD"}
    assert any(e.reason == "SchemaRegistered" for e in outcome.events.items)


def test_reconcile_refuses_an_incompatible_schema_and_rolls_nothing_until_it_is_fixed(
    world: World,
) -> None:
    world.reconcile(pipeline_spec(embed_stage()))
    world.mark_ready()
    before = copy.deepcopy(world.kube.objects)
    # Another producer registered a record whose "id" is a number.
    other = {"type": "record", "name": "ContentItem", "fields": [{"name": "id", "type": "long"}]}
    world.pulsar.schemas[TOPIC.format("out")] = [("JSON", json.dumps(other))]

    outcome = world.reconcile(pipeline_spec(embed_stage(), relay_stage()), generation=2)

    assert world.kube.objects == before
    assert outcome.problem is not None
    assert outcome.problem.failure is Failure.INCOMPATIBLE_SCHEMA
    assert "stage 'relay' (passthrough) writes ContentItem messages to " in outcome.problem.message
    assert TOPIC.format("out") in outcome.problem.message
    assert outcome.retry_after_s == world.deps.retry_rejected_s
    conditions = {c.type: c for c in outcome.status.conditions}
    assert (conditions["Ready"].status, conditions["Degraded"].reason) == (
        "False",
        "IncompatibleSchema",
    )
    assert "keep running" in conditions["Degraded"].message
    schemas = conditions["SchemasCompatible"]
    assert (schemas.status, schemas.reason) == ("False", "IncompatibleSchema")
    assert TOPIC.format("out") in schemas.message

    del world.pulsar.schemas[TOPIC.format("out")]
    fixed = world.reconcile(pipeline_spec(embed_stage(), relay_stage()), generation=2)

    assert fixed.problem is None
    assert "cu-relay" in world.deployments()
    schemas = {c.type: c for c in fixed.status.conditions}["SchemasCompatible"]
    assert (schemas.status, schemas.reason) == ("True", "Registered")
    assert schemas.message == (
        "the schemas of 3 topics are registered under Backward compatibility"
    )


def test_reconcile_keeps_schemas_compatible_as_it_was_when_pulsar_is_unreachable(
    world: World,
) -> None:
    first = world.reconcile(pipeline_spec(embed_stage()))
    world.pulsar.unavailable = True

    outcome = world.reconcile(pipeline_spec(embed_stage()), status=status_dump(first))

    assert outcome.problem is not None
    assert outcome.problem.failure is Failure.PULSAR_UNAVAILABLE
    schemas = {c.type: c for c in outcome.status.conditions}["SchemasCompatible"]
    assert (schemas.status, schemas.reason) == ("True", "Registered")


VERSIONS = TOPIC.format("model-versions")


def rank_stage(**params: Any) -> dict[str, Any]:
    return {
        "name": "rank",
        "type": "ranking",
        "input": {"topic": "candidates"},
        "outputs": ["recommendations"],
        "model": {"backend": "triton", "name": "recs-ranker"},
        "params": {"catalogueTopic": TOPIC.format("enriched"), **params},
    }


def announcement(version: int, serving: int) -> bytes:
    return json.dumps(
        {
            "model": "recs-ranker",
            "version": version,
            "promoted": version == serving,
            "servingVersion": serving,
            "reason": "auc",
            "announcedAt": "2026-01-01T00:00:00Z",
        }
    ).encode()


def test_reconcile_keeps_model_serving_as_stored_and_reads_no_announcements_when_full_check(
    world: World,
) -> None:
    world.deps.memory.pulsar_recheck_s = 0  # every reconcile a full Pulsar check
    spec = pipeline_spec(rank_stage(modelVersionsTopic="model-versions"))
    world.pulsar.topics[VERSIONS] = 0
    world.pulsar.entries[VERSIONS] = [[announcement(1, 1)], [announcement(2, 1)]]
    first = status_dump(world.reconcile(spec))
    assert not [c for c in first["conditions"] if c["type"] == "ModelServing"], "the timer's"
    written = {
        "type": "ModelServing",
        "status": "True",
        "reason": "VersionServing",
        "message": "recs-ranker version 1 serving: auc",
        "lastTransitionTime": "2025-12-31T00:00:00Z",
        "observedGeneration": 1,
    }
    world.pulsar.calls.clear()

    again = world.reconcile(spec, status={**first, "conditions": [*first["conditions"], written]})

    assert status_dump(again)["conditions"][-1] == written, "an older reading never put back"
    assert not [e for e in again.events.items if "Model" in e.reason]
    assert not [c for c in world.pulsar.calls if c.endswith("/examinemessage")]
