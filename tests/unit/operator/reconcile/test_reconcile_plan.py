"""Desired vs observed: apply what is missing or drifted, delete what is ours and unwanted."""

from __future__ import annotations

from typing import Any

from streamvane_operator.kube.client import ObjectRef
from streamvane_operator.reconcile.plan import contains, plan


def obj(kind: str, name: str, uid: str = "owner", **fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "ns", "ownerReferences": [{"uid": uid}]},
        **fields,
    }


def test_plan_is_empty_when_observed_matches_desired_plus_server_defaults() -> None:
    desired = [obj("ConfigMap", "a", data={"k": "v"})]
    observed = [obj("ConfigMap", "a", data={"k": "v"}, status={}, extra="server default")]
    observed[0]["metadata"]["resourceVersion"] = "7"

    assert plan(desired, observed, "owner").empty


def test_plan_applies_when_object_is_missing_or_drifted() -> None:
    desired = [obj("ConfigMap", "a", data={"k": "v"}), obj("ConfigMap", "b", data={"k": "v"})]
    observed = [obj("ConfigMap", "a", data={"k": "edited"})]

    result = plan(desired, observed, "owner")

    assert [o["metadata"]["name"] for o in result.apply] == ["a", "b"]
    assert result.delete == ()


def test_plan_deletes_workloads_first_when_stage_was_removed() -> None:
    observed = [obj("ConfigMap", "old"), obj("Service", "old"), obj("Deployment", "old")]

    result = plan([], observed, "owner")

    assert [ref.kind for ref in result.delete] == ["Deployment", "Service", "ConfigMap"]


def test_plan_keeps_objects_of_other_owners_when_labels_collide() -> None:
    result = plan([], [obj("ConfigMap", "theirs", uid="someone-else")], "owner")

    assert result.delete == ()


def test_contains_treats_list_length_change_as_drift() -> None:
    assert contains({"a": [1, 2]}, {"a": [1, 2]})
    assert not contains({"a": [1, 2, 3]}, {"a": [1, 2]})
    assert contains({"a": [{"x": 1, "default": True}]}, {"a": [{"x": 1}]})
    assert not contains({"a": {"x": 1}}, {"a": {"x": 1, "y": 2}})


def test_object_ref_reads_identity_when_built_from_manifest() -> None:
    assert ObjectRef.of(obj("ConfigMap", "a")) == ObjectRef("v1", "ConfigMap", "ns", "a")


def container(resources: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "c", "resources": resources}]}}


def test_canonical_quantities_of_the_api_server_are_no_drift() -> None:
    desired = container(
        {"requests": {"cpu": "0.5", "memory": "1024Mi"}, "limits": {"nvidia.com/gpu": 1}}
    )
    observed = container(
        {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"nvidia.com/gpu": "1"}}
    )

    assert contains(observed, desired)
    assert contains({"emptyDir": {"sizeLimit": "1Gi"}}, {"emptyDir": {"sizeLimit": "1024Mi"}})


def test_other_quantities_and_plain_fields_are_drift() -> None:
    desired = container({"limits": {"nvidia.com/gpu": 1, "memory": "2Gi"}})

    assert not contains(container({"limits": {"nvidia.com/gpu": "2", "memory": "2Gi"}}), desired)
    assert not contains(container({"limits": {"nvidia.com/gpu": "1"}}), desired)
    assert not contains(container({"limits": {"nvidia.com/gpu": "x", "memory": "2Gi"}}), desired)
    # Outside resource maps a number and its string are different values.
    assert not contains({"data": {"replicas": "1"}}, {"data": {"replicas": 1}})
