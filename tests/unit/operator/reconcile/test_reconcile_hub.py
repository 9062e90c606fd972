"""The hub's reconcile against fake clusters: it writes waves in order, keeps a revision
history, reports unreachable regions, and refuses to drop a replication cluster."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streamvane_operator.api.common import API_VERSION
from streamvane_operator.kube.client import Kube, ObjectRef
from streamvane_operator.kube.testing import FakeKube
from streamvane_operator.pulsar.testing import FakePulsar
from streamvane_operator.reconcile.hub import HubDeps, reconcile_hub
from streamvane_operator.reconcile.pipeline import owner_of
from streamvane_operator.rollout.member import REVISION_LABEL

REGIONS = ("eu", "us", "ap")
OWNER = owner_of("relay", "team", "uid-1")
SPEC: dict[str, Any] = {
    "pulsar": {"namespace": "relay"},
    "placement": {"regions": list(REGIONS)},
    "rollout": {"waves": [["eu"], ["us", "ap"]], "bakeSeconds": 30},
    "stages": [
        {"name": "relay", "type": "passthrough", "input": {"topic": "in"}, "outputs": ["out"]}
    ],
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def region(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Region",
        "metadata": {"name": name, "namespace": ""},
        "spec": {
            "kubeconfigSecretRef": {"namespace": "hub", "name": name},
            "pulsar": {
                "cluster": f"pulsar-{name}",
                "serviceUrl": f"pulsar://{name}:6650",
                "adminUrl": f"http://{name}:8080",
            },
        },
    }


def secret(name: str) -> dict[str, Any]:
    data = base64.b64encode(f"kubeconfig-of-{name}".encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "hub"},
        "data": {"kubeconfig": data},
    }


@pytest.fixture
def world() -> tuple[HubDeps, dict[str, FakeKube], Clock]:
    hub = FakeKube([*(region(r) for r in REGIONS), *(secret(r) for r in REGIONS)])
    hub.apply(
        {
            "apiVersion": API_VERSION,
            "kind": "Pipeline",
            "metadata": {"name": "relay", "namespace": "team"},
            "spec": SPEC,
        }
    )
    members = {r: FakeKube() for r in REGIONS}
    pulsar = FakePulsar()
    clock = Clock()

    def member(kubeconfig: str) -> Kube:
        return members[kubeconfig.removeprefix("kubeconfig-of-")]

    deps = HubDeps(
        kube=hub, members=member, pulsar=lambda url, token: pulsar.admin(url), clock=clock
    )
    return deps, members, clock


def step(deps: HubDeps, status: dict[str, Any], spec: dict[str, Any] = SPEC) -> dict[str, Any]:
    outcome = reconcile_hub(deps, OWNER, spec, 1, status)
    return outcome.status.model_dump(by_alias=True, mode="json", exclude_none=True)


def ready_members(members: dict[str, FakeKube]) -> None:
    """What each member operator would report: Ready for the current generation."""
    for kube in members.values():
        ref = ObjectRef(API_VERSION, "Pipeline", "team", "relay")
        obj = kube.objects.get(ref)
        if obj is not None:
            gen = obj["metadata"]["generation"]
            cond = {
                "type": "Ready",
                "status": "True",
                "reason": "Ready",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
            kube.set_status(ref, {"observedGeneration": gen, "conditions": [cond]})


def member_revision(kube: FakeKube) -> str | None:
    obj = kube.objects.get(ObjectRef(API_VERSION, "Pipeline", "team", "relay"))
    return None if obj is None else obj["metadata"]["labels"][REVISION_LABEL]


def test_reconcile_hub_writes_wave_two_only_after_wave_one_baked_when_healthy(world: Any) -> None:
    deps, members, clock = world
    status = step(deps, {})
    revision = status["rollout"]["revision"]
    assert member_revision(members["eu"]) == revision
    assert member_revision(members["us"]) is None and member_revision(members["ap"]) is None
    assert (
        members["eu"].objects[ObjectRef(API_VERSION, "Pipeline", "team", "relay")]["spec"][
            "pulsar"
        ]["adminUrl"]
        == "http://eu:8080"
    )
    ready_members(members)
    clock.now += timedelta(seconds=5)
    status = step(deps, status)
    assert status["rollout"]["phase"] == "Baking" and member_revision(members["us"]) is None
    clock.now += timedelta(seconds=31)
    status = step(deps, status)
    assert status["rollout"]["wave"] == 2
    assert member_revision(members["us"]) == revision == member_revision(members["ap"])
    ready_members(members)
    for _ in range(2):
        clock.now += timedelta(seconds=31)
        status = step(deps, status)
    assert status["rollout"]["phase"] == "Complete" and status["regionsReady"] == "3/3"
    assert status["rollout"]["lastGoodRevision"] == revision
    history = deps.kube.list(
        "apps/v1", "ControllerRevision", "team", "streamvane.io/hub-pipeline=relay"
    )
    assert [h["data"]["spec"]["stages"][0]["name"] for h in history] == ["relay"]


def test_reconcile_hub_halts_with_a_clear_status_when_a_region_is_unreachable(world: Any) -> None:
    deps, members, clock = world
    members["eu"].unavailable = True
    status = step(deps, {})
    assert status["rollout"]["phase"] == "Halted" and status["rollout"]["reason"] == "Unreachable"
    eu = next(r for r in status["regions"] if r["name"] == "eu")
    assert eu["phase"] == "Unreachable" and "unreachable" in eu["message"]
    assert all(member_revision(members[r]) is None for r in ("us", "ap"))
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and "eu unreachable" in degraded["message"]


def test_reconcile_hub_refuses_to_drop_a_replication_cluster_when_retained(world: Any) -> None:
    deps, members, _ = world
    before = {"replicationClusters": ["pulsar-eu", "pulsar-us"]}
    narrowed = {
        **SPEC,
        "pulsar": {"namespace": "relay", "replication": {"clusters": ["pulsar-eu"]}},
    }
    status = step(deps, before, narrowed)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec" and "deletionPolicy: Delete" in ready["message"]
    assert status["replicationClusters"] == ["pulsar-eu", "pulsar-us"]
    assert all(member_revision(m) is None for m in members.values())


def test_reconcile_hub_reads_region_pulsar_with_the_token_its_auth_secret_names() -> None:
    guarded = region("eu")
    guarded["spec"]["pulsar"]["authSecretRef"] = {"namespace": "hub", "name": "eu-jwt"}
    token = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "eu-jwt", "namespace": "hub"},
        "data": {"token": base64.b64encode(b"jwt-of-eu").decode()},
    }
    hub = FakeKube([guarded, secret("eu"), token])
    pulsar = FakePulsar()
    used: dict[str, str | None] = {}

    def admin(url: str, token: str | None) -> Any:
        used[url] = token
        return pulsar.admin(url)

    member = FakeKube()
    deps = HubDeps(kube=hub, members=lambda _: member, pulsar=admin, clock=Clock())
    spec = {**SPEC, "placement": {"regions": ["eu"]}, "rollout": {"waves": [["eu"]]}}

    status = step(deps, {}, spec)  # writes the member
    ready_members({"eu": member})
    step(deps, status, spec)  # reads its gate signals

    assert used == {"http://eu:8080": "jwt-of-eu"}
