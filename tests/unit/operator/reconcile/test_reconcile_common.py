"""What every reconciler shares: the children after a converge, without a second listing."""

from __future__ import annotations

from typing import Any

from streamvane_operator.kube.client import ObjectRef
from streamvane_operator.kube.testing import FakeKube
from streamvane_operator.reconcile.common import Events, after_changes, converge_children
from streamvane_operator.render.labels import Owner

OWNER = Owner("streamvane.io/v1alpha1", "Pipeline", "p", "media", "uid-1")
LABEL = "streamvane.io/pipeline"


def child(kind: str, name: str, data: str = "a") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "media",
            "labels": {LABEL: "p"},
            "ownerReferences": [{"uid": OWNER.uid}],
        },
        "data": {"k": data},
    }


def test_after_changes_takes_the_servers_objects_and_drops_the_deleted() -> None:
    kept, drifted, gone = child("ConfigMap", "a"), child("ConfigMap", "b"), child("Service", "c")
    served = {**child("ConfigMap", "b", "new"), "status": {}}

    found = after_changes(
        [kept, drifted, gone], {ObjectRef.of(drifted): served}, [ObjectRef.of(gone)]
    )

    assert found == [kept, served]


def test_converge_children_lists_nothing_again_after_applying() -> None:
    kube = FakeKube([child("ConfigMap", "b"), child("ConfigMap", "old")])
    observed = kube.list("v1", "ConfigMap", "media")
    kube.calls.clear()
    desired = [child("ConfigMap", "a"), child("ConfigMap", "b", "new")]

    found = converge_children(kube, OWNER, LABEL, desired, observed, Events())

    assert [c[0] for c in kube.calls] == ["apply", "apply", "delete"]
    assert found == [kube.objects[ObjectRef.of(obj)] for obj in desired]
