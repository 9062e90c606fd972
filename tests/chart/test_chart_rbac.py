"""Least privilege: no wildcards, nothing cluster-wide in namespaced mode, Roles where watched."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from streamvane_operator.rbac import CLUSTER_RULES, HUB_RULES, NAMESPACED_RULES, Rule
from tools.chart import CHART, CI_VALUES, of_kind, render

CLUSTER_VALUES = CHART / "ci" / "cluster-values.yaml"


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_rules_name_every_verb_and_resource_when_rendered(values: Path) -> None:
    objects = render(values)
    for role in of_kind(objects, "Role") + of_kind(objects, "ClusterRole"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
            assert "*" not in rule.get("apiGroups", []), rule
            assert not rule.get("nonResourceURLs"), rule


def test_nothing_is_cluster_wide_when_namespaced_mode() -> None:
    objects = render(sets=["watch.namespaces={team-a,team-b}"], namespace="streamvane-system")
    assert not of_kind(objects, "ClusterRole") and not of_kind(objects, "ClusterRoleBinding")
    roles = of_kind(objects, "Role")
    bindings = of_kind(objects, "RoleBinding")
    assert {r["metadata"]["namespace"] for r in roles} == {"team-a", "team-b"}
    assert {b["metadata"]["namespace"] for b in bindings} == {"team-a", "team-b"}
    for binding in bindings:
        (subject,) = binding["subjects"]
        assert subject["namespace"] == "streamvane-system"
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": binding["metadata"]["name"],
        }


def test_secrets_are_only_read_by_name_in_watched_namespaces_when_namespaced_mode() -> None:
    (role,) = of_kind(render(), "Role")
    secret_rules = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert [r["verbs"] for r in secret_rules] == [["get"]]


def test_one_cluster_role_bound_to_the_operator_when_cluster_mode() -> None:
    objects = render(CLUSTER_VALUES, namespace="ops")
    assert not of_kind(objects, "Role") and not of_kind(objects, "RoleBinding")
    (role,) = of_kind(objects, "ClusterRole")
    (binding,) = of_kind(objects, "ClusterRoleBinding")
    (account,) = of_kind(objects, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "ops"}
    ]


def test_no_rbac_objects_when_rbac_create_is_false() -> None:
    kinds = {obj["kind"] for obj in render(sets=["rbac.create=false"])}
    assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


def _grants(rules: Iterable[Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    """Rules flattened to (apiGroup, resource, verb): equal sets grant exactly the same."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _operator_grants(rules: Iterable[Rule]) -> set[tuple[str, str, str]]:
    return _grants(rule.as_dict() for rule in rules)


def test_role_grants_exactly_what_the_operator_calls_when_namespaced_mode() -> None:
    (role,) = of_kind(render(), "Role")
    assert _grants(role["rules"]) == _operator_grants(NAMESPACED_RULES)


def test_cluster_role_grants_exactly_what_the_operator_calls_when_cluster_mode() -> None:
    (role,) = of_kind(render(CLUSTER_VALUES), "ClusterRole")
    assert _grants(role["rules"]) == _operator_grants(NAMESPACED_RULES + CLUSTER_RULES)


HUB_VALUES = CHART / "ci" / "hub-values.yaml"


def test_hub_cluster_role_grants_exactly_what_the_hub_calls_when_hub_enabled() -> None:
    roles = {r["metadata"]["name"]: r for r in of_kind(render(HUB_VALUES), "ClusterRole")}
    assert _grants(roles["streamvane-hub"]["rules"]) == _operator_grants(HUB_RULES)


def test_no_hub_rbac_when_hub_disabled() -> None:
    names = {o["metadata"]["name"] for o in render() if "Cluster" in o["kind"]}
    assert not {n for n in names if n.endswith("-hub")}
