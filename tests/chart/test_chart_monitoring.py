"""The dashboard and the alert rules query only series that are really exported, by their
real labels: expressions are parsed with Prometheus' grammar (promql-parser) and checked
against the operator's and the worker's own metric registries."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from typing import Any

import promql_parser
import pytest
from prometheus_client import CollectorRegistry

from streamvane_operator.metrics import OperatorMetrics
from streamvane_worker.runtime.metrics import create_metrics
from tools.chart import CHART, DASHBOARD, of_kind, render

TARGET_LABELS = frozenset({"namespace", "pod", "container", "endpoint", "job", "instance"})
"""Labels the PodMonitors' scrape adds to every series."""
KUBE_STATE_METRICS = {
    "kube_pod_container_status_restarts_total": frozenset({"namespace", "pod", "container"}),
    "kube_pod_labels": frozenset(
        {
            "namespace",
            "pod",
            "label_app_kubernetes_io_part_of",
            "label_app_kubernetes_io_component",
            "label_streamvane_io_pipeline",
            "label_streamvane_io_stage",
        }
    ),
}
"""kube-state-metrics series the crash-loop alert joins (pod labels as allow-listed)."""
MONITORING_VALUES = CHART / "ci" / "monitoring-values.yaml"


def _registry_series(registry: CollectorRegistry) -> dict[str, frozenset[str]]:
    """Every series name a registry exports -> its labels (``le`` for buckets)."""
    series: dict[str, frozenset[str]] = {}
    for collector, names in registry._collector_to_names.items():
        labels = frozenset(getattr(collector, "_labelnames", ()))
        for name in names:
            series[name] = labels | ({"le"} if name.endswith("_bucket") else set())
    return series


@cache
def exported() -> dict[str, frozenset[str]]:
    """Series name -> labels, of the operator and a worker, with the scrape's target labels."""
    operator = _registry_series(OperatorMetrics().registry)
    worker = _registry_series(create_metrics("pipeline", "stage").registry)
    return {
        name: labels | TARGET_LABELS for name, labels in {**operator, **worker}.items()
    } | KUBE_STATE_METRICS


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries() -> list[str]:
    dashboard = _dashboard()
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        # label_values(<selector>, <label>) is Grafana's, not PromQL: check its selector.
        definition = variable.get("definition", "")
        if definition.startswith("label_values("):
            selector, _, label = definition.removeprefix("label_values(")[:-1].rpartition(",")
            queries.append(f"count by ({label.strip()}) ({selector})")
    return queries


def alert_rules() -> list[dict[str, Any]]:
    (rule,) = of_kind(render(MONITORING_VALUES), "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def _grafana_to_promql(query: str) -> str:
    return (
        query.replace("$__rate_interval", "5m").replace("$pipeline", ".*").replace("$stage", ".*")
    )


def _selectors(expr: Any) -> list[Any]:
    found: list[Any] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(expr, visit)
    return found


def problems(query: str) -> list[str]:
    """Unknown series, and label names a series does not have, in one expression."""
    expr = promql_parser.parse(_grafana_to_promql(query))
    series = exported()
    wrong: list[str] = []
    known_labels: set[str] = set()
    for selector in _selectors(expr):
        if selector.name not in series:
            wrong.append(f"unknown series {selector.name}")
            continue
        labels = series[selector.name]
        known_labels |= labels
        wrong += [
            f"{selector.name} has no label {m.name}"
            for m in selector.matchers.matchers
            if m.name not in labels
        ]

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            wrong.extend(
                f"aggregation by unknown label {label}"
                for label in node.modifier.labels
                if label not in known_labels
            )

    promql_parser.walk(expr, visit)
    return wrong


def _all(queries: Iterable[str]) -> dict[str, list[str]]:
    return {q: p for q in queries if (p := problems(q))}


def test_dashboard_queries_only_exported_series_and_labels_when_parsed() -> None:
    assert _all(dashboard_queries()) == {}


def test_alert_rules_query_only_exported_series_and_labels_when_parsed() -> None:
    assert _all(rule["expr"] for rule in alert_rules()) == {}


def test_problems_finds_unknown_series_and_labels_when_a_query_is_wrong() -> None:
    assert problems("sum by (topic) (pulsar_subscription_back_log)") == [
        "unknown series pulsar_subscription_back_log",
        "aggregation by unknown label topic",
    ]
    assert problems('streamvane_operator_stage_lag_seconds{subscription="x"}') == [
        "streamvane_operator_stage_lag_seconds has no label subscription"
    ]


def test_dashboard_covers_every_worker_and_operator_metric_when_rendered() -> None:
    queried = {
        s.name
        for q in dashboard_queries()
        for s in _selectors(promql_parser.parse(_grafana_to_promql(q)))
    }
    families = [
        *OperatorMetrics().registry.collect(),
        *create_metrics("pipeline", "stage").registry.collect(),
    ]
    unused = {f.name for f in families if not any(n.startswith(f.name) for n in queried)}
    assert not unused, f"metrics missing from the dashboard: {sorted(unused)}"


@pytest.mark.parametrize(
    "alert",
    [
        "StreamvaneBacklogGrowing",
        "StreamvaneStageLagging",
        "StreamvaneDeadLetters",
        "StreamvaneWorkerCrashLooping",
        "StreamvaneWorkerStuck",
        "StreamvaneReconcileErrors",
    ],
)
def test_alert_rules_cover_the_operational_failures_when_rendered(alert: str) -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert alert in rules
    assert rules[alert]["labels"]["severity"] in {"warning", "critical"}
    assert rules[alert]["annotations"]["summary"]
