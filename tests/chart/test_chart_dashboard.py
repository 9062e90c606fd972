"""The Grafana dashboard queries only metrics that the worker (or Pulsar) really exports."""

from __future__ import annotations

import json
import re

from prometheus_client.metrics_core import Metric

from streamvane_worker.runtime.metrics import create_metrics
from tools.chart import DASHBOARD, PULSAR_METRICS

_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
# A series selector: a name followed by its label matchers or range; `by (...)` lists labels.
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]")
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)")


def _worker_series_names() -> set[str]:
    families: list[Metric] = list(create_metrics("pipeline", "stage").registry.collect())
    return {family.name + suffix for family in families for suffix in _SUFFIXES[family.type]}


def _queried_metrics() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return {
        name
        for query in queries
        for name in _SELECTOR.findall(query) + _LABEL_VALUES.findall(query)
    }


def test_dashboard_queries_only_exported_metrics_when_rendered() -> None:
    unknown = _queried_metrics() - _worker_series_names() - PULSAR_METRICS
    assert not unknown, f"dashboard queries metrics nobody exports: {sorted(unknown)}"


def test_dashboard_covers_every_worker_metric_family_when_rendered() -> None:
    queried = _queried_metrics()
    families = create_metrics("pipeline", "stage").registry.collect()
    unused = {f.name for f in families if not any(n.startswith(f.name) for n in queried)}
    assert not unused, f"worker metrics missing from the dashboard: {sorted(unused)}"
