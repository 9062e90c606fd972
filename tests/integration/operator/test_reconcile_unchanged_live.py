"""Against the real kube-apiserver and Pulsar: reconciling an unchanged Pipeline or managed
InferenceBackend again writes nothing (every owned object keeps its resourceVersion, and
Pulsar gets only the shared snapshot read), and a topic deleted behind the operator's back
is recreated by the next resync."""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import pytest

from streamvane_operator.api.common import API_VERSION
from streamvane_operator.kube.client import KubeClient, ObjectRef
from streamvane_operator.pulsar.admin import AdminPool, PulsarAdmin, TopicName
from streamvane_operator.reconcile import backend, pipeline
from streamvane_operator.reconcile.common import CHILD_KINDS, Deps
from streamvane_operator.reconcile.memory import ReconcileMemory
from streamvane_operator.render.labels import BACKEND_LABEL, PIPELINE_LABEL, Owner
from streamvane_operator.render.worker import WorkerDefaults

pytestmark = pytest.mark.integration

SNAPSHOT = "GET /admin/v2/broker-stats/topics"


def shared_reads(tenant: str, namespace: str) -> set[str]:
    """What a reconcile of an unchanged Pipeline may read: the namespace's listing and the
    broker snapshot (both shared), and, until the broker's next stats update shows new
    subscriptions, their own stats."""
    base = f"GET /admin/v2/persistent/{tenant}/{namespace}"
    return {base, SNAPSHOT, f"{base}/in/stats", f"{base}/mid/stats"}


@dataclasses.dataclass
class Live:
    deps: Deps
    calls: collections.Counter[str]

    def pulsar_calls(self) -> list[str]:
        return sorted(self.calls.elements())


@pytest.fixture
def live(kube: KubeClient) -> Any:
    calls: collections.Counter[str] = collections.Counter()
    pool = AdminPool(
        timeout_s=10,
        attempts=3,
        observer=lambda method, path, *_: calls.update([f"{method} {path}"]),
    )
    # A snapshot at most a resync old: none is reused across the steps of a test.
    memory = ReconcileMemory(snapshot_ttl_s=0)
    yield Live(
        Deps(kube=kube, pulsar=pool, defaults=WorkerDefaults("worker:test"), memory=memory), calls
    )
    pool.close()


def create(kube: KubeClient, kind: str, namespace: str, name: str, spec: dict[str, Any]) -> Owner:
    created = kube.apply(
        {
            "apiVersion": API_VERSION,
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )
    return Owner(API_VERSION, kind, name, namespace, created["metadata"]["uid"])


def versions(kube: KubeClient, owner: Owner, label: str) -> dict[str, str]:
    found = {}
    for api_version, kind in CHILD_KINDS:
        if kind in ("ScaledObject", "TriggerAuthentication"):
            continue  # no KEDA here
        for obj in kube.list(api_version, kind, owner.namespace, f"{label}={owner.name}"):
            found[f"{kind}/{obj['metadata']['name']}"] = obj["metadata"]["resourceVersion"]
    return found


def relay(stack: Any, tenant: str, namespace: str) -> dict[str, Any]:
    return {
        "pulsar": {
            "serviceUrl": stack.pulsar_url,
            "adminUrl": stack.pulsar_admin_url,
            "tenant": tenant,
            "namespace": namespace,
        },
        "stages": [
            {"name": "first", "type": "passthrough", "input": {"topic": "in"}, "outputs": ["mid"]},
            {
                "name": "second",
                "type": "passthrough",
                "input": {"topic": "mid"},
                "outputs": ["out"],
            },
        ],
    }


def mark_ready(kube: KubeClient, owner: Owner) -> None:
    """What the kubelet and the Deployment controller would report."""
    selector = f"{PIPELINE_LABEL}={owner.name}"
    for d in kube.list("apps/v1", "Deployment", owner.namespace, selector):
        replicas = d["spec"].get("replicas", 1)
        status = {
            "observedGeneration": d["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
        }
        kube.patch_status(ObjectRef.of(d), status)


def settled(live: Live, owner: Owner, spec: dict[str, Any]) -> dict[str, Any]:
    """Reconciled, workers ready, reconciled again: Ready; the status as stored."""
    assert pipeline.reconcile_pipeline(live.deps, owner, spec, 1, None).problem is None
    mark_ready(live.deps.kube, owner)
    outcome = pipeline.reconcile_pipeline(live.deps, owner, spec, 1, None)
    assert outcome.problem is None
    assert any(c.type == "Ready" and c.status == "True" for c in outcome.status.conditions)
    return outcome.status.model_dump(by_alias=True, mode="json", exclude_none=True)


def test_second_reconcile_of_an_unchanged_pipeline_writes_nothing_and_reads_one_snapshot(
    stack: Any, kube: KubeClient, namespace: str, pulsar_namespace: tuple[str, str], live: Live
) -> None:
    spec = relay(stack, *pulsar_namespace)
    owner = create(kube, "Pipeline", namespace, "relay", spec)
    status = settled(live, owner, spec)
    before = versions(kube, owner, PIPELINE_LABEL)
    live.calls.clear()

    outcome = pipeline.reconcile_pipeline(live.deps, owner, spec, 1, status)

    assert outcome.problem is None and outcome.events.items == []
    assert versions(kube, owner, PIPELINE_LABEL) == before
    assert len(before) == 8  # ConfigMap, Deployment, Service, PDB per stage
    reads = shared_reads(*pulsar_namespace)
    assert (
        {SNAPSHOT, f"GET /admin/v2/persistent/{'/'.join(pulsar_namespace)}"}
        <= set(live.pulsar_calls())
        <= reads
    )
    # And the timer's resync of it has nothing to do.
    live.calls.clear()
    assert not pipeline.resync_needed(live.deps, owner, spec, 1, status)
    assert set(live.pulsar_calls()) <= reads


def test_resync_recreates_a_topic_and_subscription_deleted_behind_the_operators_back(
    stack: Any,
    kube: KubeClient,
    namespace: str,
    pulsar_namespace: tuple[str, str],
    live: Live,
    admin: PulsarAdmin,
) -> None:
    tenant, ns = pulsar_namespace
    spec = relay(stack, tenant, ns)
    owner = create(kube, "Pipeline", namespace, "relay", spec)
    status = settled(live, owner, spec)
    mid = TopicName(tenant, ns, "mid")
    admin.delete_topic(mid, partitioned=False)
    assert "mid" not in admin.topics(tenant, ns)

    assert pipeline.resync_needed(live.deps, owner, spec, 1, status)
    outcome = pipeline.reconcile_pipeline(live.deps, owner, spec, 1, status)

    assert outcome is not None and outcome.problem is None
    assert "mid" in admin.topics(tenant, ns)
    assert admin.subscriptions(mid) == [f"{namespace}.relay-second"]


def test_second_reconcile_of_a_managed_backend_with_integer_gpus_writes_nothing(
    kube: KubeClient, namespace: str, live: Live
) -> None:
    spec = {
        "managed": {
            "image": "nvcr.io/nvidia/tritonserver:24.08-py3",
            "gpus": 1,
            "modelRepository": {"uri": "s3://models/triton"},
            # Quantities the API server rewrites: "0.5" is stored as "500m", "1024Mi" as "1Gi".
            "resources": {
                "requests": {"cpu": "0.5", "memory": "1024Mi"},
                "limits": {"memory": "2Gi"},
            },
        }
    }
    owner = create(kube, "InferenceBackend", namespace, "triton", spec)
    assert backend.reconcile_backend(live.deps, owner, spec, 1, None).problem is None
    before = versions(kube, owner, BACKEND_LABEL)

    outcome = backend.reconcile_backend(live.deps, owner, spec, 1, None)

    assert outcome.problem is None and outcome.events.items == []
    assert set(before) == {"Deployment/triton-triton", "Service/triton-triton"}
    assert versions(kube, owner, BACKEND_LABEL) == before


def test_a_trainer_on_a_managed_backend_mounts_its_model_volume_and_a_rerun_writes_nothing(
    stack: Any, kube: KubeClient, namespace: str, pulsar_namespace: tuple[str, str], live: Live
) -> None:
    tenant, ns = pulsar_namespace
    managed = {
        "managed": {
            "gpus": 0,
            "modelControl": "explicit",
            "modelRepository": {"uri": "/models/triton", "persistentVolumeClaim": "triton-models"},
        }
    }
    server = create(kube, "InferenceBackend", namespace, "triton", managed)
    assert backend.reconcile_backend(live.deps, server, managed, 1, None).problem is None
    model = {"backend": "triton", "name": "recs-ranker"}
    spec = relay(stack, tenant, ns)
    spec["stages"] = [
        {
            "name": "rank",
            "type": "ranking",
            "input": {"topic": "candidates"},
            "outputs": ["recommendations"],
            "model": model,
            "params": {
                "catalogueTopic": f"persistent://{tenant}/{ns}/catalogue",
                "modelVersionsTopic": "model-versions",
            },
        },
        {
            "name": "train",
            "type": "online-training",
            "input": {"topic": "examples", "subscriptionType": "Failover"},
            "outputs": ["model-versions"],
            "model": model,
            "params": {"modelRepository": "/models/triton"},
        },
    ]
    owner = create(kube, "Pipeline", namespace, "recs", spec)
    status = settled(live, owner, spec)

    def pod(name: str) -> dict[str, Any]:
        deployment = kube.get(ObjectRef("apps/v1", "Deployment", namespace, name))
        assert deployment is not None, name
        return dict(deployment["spec"]["template"]["spec"])

    trainer, ranker, triton = pod("recs-train"), pod("recs-rank"), pod("triton-triton")
    claim = {"name": "models", "persistentVolumeClaim": {"claimName": "triton-models"}}
    assert claim in trainer["volumes"] and claim not in ranker["volumes"]
    (mount,) = [m for m in trainer["containers"][0]["volumeMounts"] if m["name"] == "models"]
    assert mount["mountPath"] == "/models" and not mount.get("readOnly")
    args = triton["containers"][0]["args"]
    assert "--model-control-mode=explicit" in args and "--load-model=*" in args
    before = {**versions(kube, owner, PIPELINE_LABEL), **versions(kube, server, BACKEND_LABEL)}

    assert pipeline.reconcile_pipeline(live.deps, owner, spec, 1, status).problem is None
    assert backend.reconcile_backend(live.deps, server, managed, 1, None).problem is None

    after = {**versions(kube, owner, PIPELINE_LABEL), **versions(kube, server, BACKEND_LABEL)}
    assert after == before, "the volume and the arguments as stored are what the render gives"
