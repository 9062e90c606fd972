"""The InferenceBackend reconciler: external endpoints and operator-managed Triton."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from streamvane_operator.kube.client import ObjectRef
from streamvane_operator.kube.testing import FakeKube
from streamvane_operator.pulsar.testing import FakePulsar
from streamvane_operator.reconcile.backend import delete_backend, owner_of, reconcile_backend
from streamvane_operator.reconcile.common import Deps
from streamvane_operator.render.worker import WorkerDefaults

OWNER = owner_of("gpu", "media", "uid-9")
MANAGED = {"managed": {"modelRepository": {"uri": "s3://models"}, "gpus": 1}}


def deps(kube: FakeKube) -> Deps:
    return Deps(
        kube=kube,
        pulsar=lambda url, token, ca=None: FakePulsar().admin(url),
        defaults=WorkerDefaults(image="worker:test"),
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )


def conditions(outcome: Any) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in outcome.status.conditions}


def test_reconcile_backend_publishes_url_without_children_when_endpoint_is_external() -> None:
    kube = FakeKube()

    outcome = reconcile_backend(deps(kube), OWNER, {"endpoint": {"url": "triton:8001"}}, 1, None)

    assert outcome.status.url == "triton:8001"
    assert conditions(outcome)["Ready"] == ("True", "External")
    assert kube.applied == []


def test_reconcile_backend_runs_triton_and_waits_when_backend_is_managed() -> None:
    kube = FakeKube()

    outcome = reconcile_backend(deps(kube), OWNER, MANAGED, 1, None)

    assert {ref.kind for ref in kube.applied} == {"Deployment", "Service"}
    assert outcome.status.url == "gpu-triton.media.svc:8001"
    assert conditions(outcome)["Ready"] == ("False", "TritonStarting")


def test_reconcile_backend_is_ready_when_triton_deployment_is_ready() -> None:
    kube = FakeKube()
    reconcile_backend(deps(kube), OWNER, MANAGED, 1, None)
    kube.set_status(
        ObjectRef("apps/v1", "Deployment", "media", "gpu-triton"),
        {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1},
    )

    outcome = reconcile_backend(deps(kube), OWNER, MANAGED, 1, None)

    assert conditions(outcome)["Ready"] == ("True", "TritonReady")


def test_reconcile_backend_removes_triton_when_switched_to_endpoint() -> None:
    kube = FakeKube()
    reconcile_backend(deps(kube), OWNER, MANAGED, 1, None)

    reconcile_backend(deps(kube), OWNER, {"endpoint": {"url": "triton:8001"}}, 2, None)

    assert kube.objects == {}


def test_delete_backend_removes_children_when_backend_is_deleted() -> None:
    kube = FakeKube()
    reconcile_backend(deps(kube), OWNER, MANAGED, 1, None)

    delete_backend(deps(kube), OWNER)

    assert kube.objects == {}
