"""The operator's metrics: what reconciles and Pulsar admin calls record (fakes, no network)."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from streamvane_operator.api.common import API_VERSION
from streamvane_operator.kube.testing import FakeKube
from streamvane_operator.metrics import OperatorMetrics, admin_operation
from streamvane_operator.pulsar.admin import SubscriptionStats
from streamvane_operator.pulsar.testing import FakePulsar
from streamvane_operator.reconcile.common import Deps
from streamvane_operator.reconcile.pipeline import delete_pipeline, owner_of, reconcile_pipeline
from streamvane_operator.reconcile.topology import stage_load
from streamvane_operator.render.worker import WorkerDefaults

NOW = datetime(2026, 1, 1, tzinfo=UTC)
OWNER = owner_of("cu", "media", "uid-1")
ITEMS = "persistent://streamvane/content/items"
BACKEND = {
    "apiVersion": API_VERSION,
    "kind": "InferenceBackend",
    "metadata": {"name": "triton", "namespace": "media"},
    "spec": {"endpoint": {"url": "127.0.0.1:8001"}},
}
SPEC = {
    "pulsar": {"namespace": "content"},
    "stages": [
        {
            "name": "embed",
            "type": "text-embedding",
            "input": {"topic": "items"},
            "outputs": ["embedded"],
            "model": {"backend": "triton", "name": "all-minilm-l6-v2"},
        }
    ],
}
STAGE = {"namespace": "media", "pipeline": "cu", "stage": "embed"}


class World:
    def __init__(self) -> None:
        self.metrics = OperatorMetrics(CollectorRegistry())
        self.pulsar = FakePulsar()
        self.deps = Deps(
            kube=FakeKube([copy.deepcopy(BACKEND)]),
            pulsar=lambda url, token, ca=None: self.pulsar.admin(url, self.metrics.pulsar_request),
            defaults=WorkerDefaults(image="worker:test"),
            clock=lambda: NOW,
            metrics=self.metrics,
        )

    def value(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def world() -> World:
    return World()


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("GET", "/admin/v2/clusters", "GET clusters"),
        ("PUT", "/admin/v2/tenants/streamvane", "PUT tenants/{tenant}"),
        ("GET", "/admin/v2/namespaces/streamvane", "GET namespaces/{tenant}"),
        ("PUT", "/admin/v2/namespaces/sv/content", "PUT namespaces/{tenant}/{namespace}"),
        ("GET", "/admin/v2/persistent/sv/content", "GET persistent/{tenant}/{namespace}"),
        (
            "GET",
            "/admin/v2/persistent/sv/content/partitioned",
            "GET persistent/{tenant}/{namespace}/partitioned",
        ),
        (
            "GET",
            "/admin/v2/persistent/sv/content/items/stats",
            "GET persistent/{tenant}/{namespace}/{topic}/stats",
        ),
        (
            "DELETE",
            "/admin/v2/persistent/sv/content/items/subscription/cu-embed",
            "DELETE persistent/{tenant}/{namespace}/{topic}/subscription/{subscription}",
        ),
    ],
)
def test_admin_operation_replaces_names_when_path_names_resources(
    method: str, path: str, operation: str
) -> None:
    assert admin_operation(method, path) == operation


def test_reconcile_counts_success_duration_and_admin_calls_when_pipeline_converges(
    world: World,
) -> None:
    outcome = reconcile_pipeline(world.deps, OWNER, SPEC, 1, None)

    assert outcome.problem is None
    assert world.value("streamvane_operator_reconciles_total", kind="Pipeline", result="success")
    assert world.value(
        "streamvane_operator_reconcile_duration_seconds_count", kind="Pipeline"
    ) == pytest.approx(1)
    created = world.value(
        "streamvane_operator_pulsar_admin_requests_total",
        operation="PUT persistent/{tenant}/{namespace}/{topic}",
        status="204",
    )
    assert created == 4  # items, embedded, the dead-letter topic and its attempts journal


def test_reconcile_counts_error_by_reason_when_pulsar_is_unreachable(world: World) -> None:
    world.pulsar.unavailable = True

    reconcile_pipeline(world.deps, OWNER, SPEC, 1, None)

    assert world.value("streamvane_operator_reconciles_total", kind="Pipeline", result="error")
    assert world.value(
        "streamvane_operator_reconcile_errors_total", kind="Pipeline", reason="PulsarUnavailable"
    )
    assert world.value(
        "streamvane_operator_pulsar_admin_requests_total", operation="GET tenants", status="error"
    ) == pytest.approx(2)  # both attempts


def test_reconcile_counts_invalid_spec_when_spec_is_refused(world: World) -> None:
    reconcile_pipeline(world.deps, OWNER, {"pulsar": {}, "stages": []}, 1, None)

    assert world.value(
        "streamvane_operator_reconcile_errors_total", kind="Pipeline", reason="InvalidSpec"
    )


def test_reconcile_exports_stage_backlog_rates_and_lag_when_pulsar_reports_them(
    world: World,
) -> None:
    reconcile_pipeline(world.deps, OWNER, SPEC, 1, None)
    world.pulsar.backlog[(ITEMS, "media.cu-embed")] = 120
    world.pulsar.rate_in[ITEMS] = 40.0
    world.pulsar.rate_out[(ITEMS, "media.cu-embed")] = 30.0
    world.pulsar.earliest_backlog_ms[(ITEMS, "media.cu-embed")] = int(NOW.timestamp() * 1000) - 4500

    reconcile_pipeline(world.deps, OWNER, SPEC, 1, None)

    assert world.value("streamvane_operator_stage_backlog_messages", **STAGE) == 120
    assert world.value("streamvane_operator_stage_input_rate_messages_per_second", **STAGE) == 40
    assert world.value("streamvane_operator_stage_dispatch_rate_messages_per_second", **STAGE) == 30
    assert world.value("streamvane_operator_stage_lag_seconds", **STAGE) == pytest.approx(4.5)


def test_reconcile_drops_stage_gauges_when_pipeline_is_deleted(world: World) -> None:
    reconcile_pipeline(world.deps, OWNER, SPEC, 1, None)
    assert world.value("streamvane_operator_stage_backlog_messages", **STAGE) == 0

    delete_pipeline(world.deps, OWNER, SPEC, None, {})

    assert world.value("streamvane_operator_stage_backlog_messages", **STAGE) is None


def test_stage_gauges_drop_a_stage_when_it_is_removed() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    load = stage_load(SubscriptionStats(backlog=0, consumers=1), NOW)
    metrics.stage_loads("media", "cu", {"embed": load, "tag": load})

    metrics.stage_loads("media", "cu", {"embed": load})

    registry = metrics.registry
    labels = {"namespace": "media", "pipeline": "cu"}
    backlog = "streamvane_operator_stage_backlog_messages"
    assert registry.get_sample_value(backlog, {**labels, "stage": "embed"}) == 0
    assert registry.get_sample_value(backlog, {**labels, "stage": "tag"}) is None


@pytest.mark.parametrize(
    ("stats", "lag"),
    [
        (SubscriptionStats(backlog=0, consumers=1, rate_out=5.0), 0.0),
        (SubscriptionStats(backlog=50, consumers=1, rate_out=10.0), 5.0),
        (
            SubscriptionStats(
                backlog=50,
                consumers=1,
                rate_out=10.0,
                earliest_backlog_ms=int(NOW.timestamp() * 1000) - 60_000,
            ),
            60.0,
        ),
    ],
)
def test_stage_load_estimates_lag_when_stats_give_rates_or_times(
    stats: SubscriptionStats, lag: float
) -> None:
    assert stage_load(stats, NOW).lag_s == pytest.approx(lag)


def test_stage_load_has_unknown_lag_when_backlog_is_not_consumed() -> None:
    assert math.isnan(stage_load(SubscriptionStats(backlog=5, consumers=0), NOW).lag_s)
