"""What `helm template` renders: labels, the operator pod's hardening, optional monitoring."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer

from streamvane_operator import __main__ as operator_cli
from streamvane_operator.render.labels import stage_labels
from tools.chart import CHART, CI_VALUES, Manifest, of_kind, render

RECOMMENDED_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
}


def _deployment(objects: list[Manifest], component: str = "operator") -> Manifest:
    (deployment,) = [
        d
        for d in of_kind(objects, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return deployment


def _operator_container(objects: list[Manifest], component: str = "operator") -> Manifest:
    (container,) = _deployment(objects, component)["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def _args(container: Manifest) -> list[str]:
    """The container's args with $(VAR) references expanded from its env, as kubelet does."""
    env = {var["name"]: var["value"] for var in container.get("env", []) if "value" in var}
    return [
        re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), str(arg))
        for arg in container["args"]
    ]


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_every_object_has_recommended_labels_when_rendered(values: Path) -> None:
    for obj in render(values):
        labels = obj["metadata"].get("labels", {})
        assert labels.keys() >= RECOMMENDED_LABELS, (obj["kind"], obj["metadata"]["name"])


def test_operator_runs_non_root_with_read_only_root_when_defaults_are_used() -> None:
    objects = render()
    (deployment,) = of_kind(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _operator_container(objects)
    assert container["command"] == ["python", "-m", "streamvane_operator"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_operator_watches_release_namespace_when_namespaced_without_a_list() -> None:
    args = _args(_operator_container(render(namespace="team-a")))
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=team-a"]
    assert "--liveness-port=8080" in args


def test_operator_watches_listed_namespaces_when_namespaced_with_a_list() -> None:
    args = _args(_operator_container(render(CHART / "ci" / "namespaced-values.yaml")))
    assert [a for a in args if a.startswith("--namespace")] == [
        "--namespace=streamvane-a",
        "--namespace=streamvane-b",
    ]
    assert {"--verbose", "--log-format=plain", "--worker-log-format=console"} <= set(args)


def test_operator_refreshes_model_serving_as_often_as_set_when_rendered() -> None:
    assert "--model-serving-seconds=15" in _args(_operator_container(render()))
    args = _args(_operator_container(render(sets=["operator.modelServingSeconds=5"])))
    assert "--model-serving-seconds=5" in args


def test_operator_watches_all_namespaces_when_cluster_mode() -> None:
    args = _args(_operator_container(render(CHART / "ci" / "cluster-values.yaml")))
    assert not [a for a in args if a.startswith("--namespace")]
    assert "--worker-image=registry.example.com/streamvane/worker-gpu:0.1.0-cuda12" in args


def test_images_default_to_app_version_and_digest_wins_when_set() -> None:
    chart_version = "0.1.0"
    assert _operator_container(render())["image"] == f"ghcr.io/streamvane/operator:{chart_version}"
    pinned = _operator_container(render(CHART / "ci" / "namespaced-values.yaml"))
    assert pinned["image"].startswith("registry.example.com/streamvane/operator@sha256:")


def test_monitoring_objects_are_absent_when_not_enabled() -> None:
    kinds = {obj["kind"] for obj in render()}
    assert not kinds & {"PodMonitor", "ConfigMap"}


def _monitor(objects: list[Manifest], component: str) -> Manifest:
    (monitor,) = [
        m for m in of_kind(objects, "PodMonitor") if m["metadata"]["name"].endswith(component)
    ]
    return monitor


def test_pod_monitor_selects_workers_in_watched_namespaces_when_enabled() -> None:
    objects = render(
        CHART / "ci" / "monitoring-values.yaml", sets=["watch.namespaces={team-a,team-b}"]
    )
    monitor = _monitor(objects, "-workers")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


def test_dashboard_config_map_carries_grafana_label_and_valid_json_when_enabled() -> None:
    (config_map,) = of_kind(render(CHART / "ci" / "monitoring-values.yaml"), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["streamvane-pipelines.json"])
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Backlog", "Batch size", "Dead-letter rate", "Replicas"} <= titles


def test_pod_monitor_selector_matches_the_labels_the_operator_puts_on_workers() -> None:
    monitor = _monitor(render(CHART / "ci" / "monitoring-values.yaml"), "-workers")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= stage_labels("pipeline", "stage").items()


def test_operator_pod_monitor_scrapes_the_metrics_port_keeping_stage_namespaces() -> None:
    objects = render(CHART / "ci" / "monitoring-values.yaml")
    monitor = _monitor(objects, "-operator")
    (deployment,) = of_kind(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["honorLabels"] is True
    ports = {p["name"]: p["containerPort"] for p in _operator_container(objects)["ports"]}
    assert ports == {"health": 8080, "metrics": 8081}
    assert "--metrics-port=8081" in _args(_operator_container(objects))


def test_prometheus_rule_is_rendered_with_its_labels_when_enabled() -> None:
    (rule,) = of_kind(render(CHART / "ci" / "monitoring-values.yaml"), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    groups = {g["name"] for g in rule["spec"]["groups"]}
    assert groups == {"streamvane.pipelines", "streamvane.operator"}


def test_replicas_run_with_peering_and_meet_in_each_watched_namespace_when_ha() -> None:
    objects = render(CHART / "ci" / "ha-values.yaml")
    deployment = _deployment(objects)
    container = _operator_container(objects)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert {"--peering=streamvane", "--peering-lifetime=20"} <= set(_args(container))
    pod_id = next(v for v in container["env"] if v["name"] == "POD_ID")
    assert pod_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    peerings = of_kind(objects, "KopfPeering")
    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in peerings] == [
        ("streamvane-ha", "streamvane")
    ]


def test_replicas_meet_in_one_cluster_peering_when_cluster_mode_ha() -> None:
    objects = render(CHART / "ci" / "cluster-ha-values.yaml")
    assert not of_kind(objects, "KopfPeering")
    (peering,) = of_kind(objects, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "streamvane"


def test_one_replica_runs_standalone_and_recreated_when_defaults_are_used() -> None:
    objects = render()
    (deployment,) = of_kind(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert not any(a.startswith("--peering") for a in _args(_operator_container(objects)))
    assert not of_kind(objects, "KopfPeering") and not of_kind(objects, "NetworkPolicy")


def test_network_policy_admits_only_the_metrics_port_and_listed_egress_when_enabled() -> None:
    (policy,) = of_kind(render(CHART / "ci" / "ha-values.yaml"), "NetworkPolicy")
    spec = policy["spec"]
    assert policy["metadata"]["namespace"] == "streamvane-ha"
    assert spec["podSelector"]["matchLabels"].items() <= stage_labels("p", "s").items()
    (ingress,) = spec["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert ingress["from"][0]["namespaceSelector"]
    dns, pulsar_and_triton = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert {p["port"] for p in pulsar_and_triton["ports"]} == {6651, 8001}


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_operator_cli_accepts_rendered_args_when_parsed(values: Path) -> None:
    args = _args(_operator_container(render(values, namespace="team-a")))
    command = typer.main.get_command(operator_cli.app)
    # Parsing only: options and their types are checked; nothing runs.
    context = command.make_context("streamvane_operator", list(args))
    assert context.params["liveness_port"] == 8080
    assert context.params["metrics_port"] == 8081
    watched = [a.removeprefix("--namespace=") for a in args if a.startswith("--namespace=")]
    assert list(context.params["namespace"] or []) == watched


def test_hub_runs_one_replica_in_hub_mode_outside_the_peering_when_enabled() -> None:
    objects = render(CHART / "ci" / "hub-values.yaml", namespace="team-a")
    member, hub = _deployment(objects), _deployment(objects, "hub")
    assert hub["metadata"]["name"] == "streamvane-hub" and hub["spec"]["replicas"] == 1
    assert hub["spec"]["strategy"]["type"] == "Recreate"
    args = _args(_operator_container(objects, "hub"))
    assert "--mode=hub" in args and "--hub-tick-seconds=10" in args
    assert not any(a.startswith("--peering") for a in args)
    context = typer.main.get_command(operator_cli.app).make_context("streamvane_operator", args)
    assert context.params["mode"] is operator_cli.Mode.HUB
    # Neither Deployment selects the other's pods (a Deployment adopts what it selects).
    for one, other in ((member, hub), (hub, member)):
        selector = one["spec"]["selector"]["matchLabels"].items()
        assert not selector <= other["spec"]["template"]["metadata"]["labels"].items()


def test_no_hub_is_deployed_when_defaults_are_used() -> None:
    assert [d["metadata"]["name"] for d in of_kind(render(), "Deployment")] == ["streamvane"]
