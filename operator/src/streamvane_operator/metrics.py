"""Prometheus metrics of the operator, in their own registry (served on ``--metrics-port``).

Besides its own work (reconciles, errors, durations, Pulsar admin calls) the operator exports
what it reads from Pulsar for status anyway: per-stage backlog, rates and lag. Dashboards and
alerts need nothing scraped from the brokers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from threading import Lock

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PREFIX = "streamvane_operator"
_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_STAGE_LABELS = ("namespace", "pipeline", "stage")

SUCCESS = "success"
ERROR = "error"
TRANSPORT_ERROR = "error"
"""The ``status`` of a Pulsar admin call that got no HTTP response."""

_PATH_VARIABLES = {
    "tenants": ("tenant",),
    "namespaces": ("tenant", "namespace"),
    "persistent": ("tenant", "namespace", "topic"),
}


@dataclass(frozen=True)
class StageLoad:
    """What Pulsar says about one stage's input subscription."""

    backlog: int
    """Messages not yet acknowledged."""
    rate_in: float
    """Messages per second published to the input topic."""
    rate_out: float
    """Messages per second dispatched to the stage's consumers."""
    lag_s: float
    """Age of the oldest unacknowledged message (0 with no backlog)."""


def admin_operation(method: str, path: str) -> str:
    """A bounded label for a Pulsar admin request: names in the path become placeholders.

    ``PUT /admin/v2/persistent/t/ns/items/subscription/s`` ->
    ``PUT persistent/{tenant}/{namespace}/{topic}/subscription/{subscription}``.
    """
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if parts[:2] == ["admin", "v2"]:
        parts = parts[2:]
    if not parts:
        return method
    head, rest = parts[0], parts[1:]
    names = _PATH_VARIABLES.get(head, ())
    out = [head]
    for i, part in enumerate(rest):
        if head == "persistent" and rest[i:] == ["partitioned"] and i == len(names) - 1:
            out.append(part)  # .../persistent/{tenant}/{namespace}/partitioned
        elif i < len(names):
            out.append("{" + names[i] + "}")
        elif i > 0 and rest[i - 1] == "subscription":
            out.append("{subscription}")
        else:
            out.append(part)
    return f"{method} {'/'.join(out)}"


class OperatorMetrics:
    """Every metric the operator exports; one instance per process (or per unit test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.reconciles = Counter(
            f"{PREFIX}_reconciles",
            "Reconciles by kind and result (success or error).",
            ["kind", "result"],
            registry=r,
        )
        self.reconcile_errors = Counter(
            f"{PREFIX}_reconcile_errors",
            "Reconciles that failed, by kind and reason (the Degraded condition's reason).",
            ["kind", "reason"],
            registry=r,
        )
        self.reconcile_triggers = Counter(
            f"{PREFIX}_reconcile_triggers",
            "Why reconciles ran, or were skipped, by kind and trigger (create, update, resume, "
            "resync, resync_skipped, deployment, child_deleted, pod, backend).",
            ["kind", "trigger"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "Wall time of one reconcile.",
            ["kind"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.pulsar_requests = Counter(
            f"{PREFIX}_pulsar_admin_requests",
            "Pulsar admin REST requests by operation and HTTP status ('error': no response).",
            ["operation", "status"],
            registry=r,
        )
        self.pulsar_duration = Histogram(
            f"{PREFIX}_pulsar_admin_request_duration_seconds",
            "Wall time of one Pulsar admin REST request.",
            ["operation"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.stage_backlog = Gauge(
            f"{PREFIX}_stage_backlog_messages",
            "Unacknowledged messages on a stage's input subscription.",
            _STAGE_LABELS,
            registry=r,
        )
        self.stage_rate_in = Gauge(
            f"{PREFIX}_stage_input_rate_messages_per_second",
            "Messages per second published to a stage's input topic (Pulsar msgRateIn).",
            _STAGE_LABELS,
            registry=r,
        )
        self.stage_rate_out = Gauge(
            f"{PREFIX}_stage_dispatch_rate_messages_per_second",
            "Messages per second dispatched to a stage's workers (Pulsar msgRateOut).",
            _STAGE_LABELS,
            registry=r,
        )
        self.stage_lag = Gauge(
            f"{PREFIX}_stage_lag_seconds",
            "Age of the oldest unacknowledged message on a stage's input subscription.",
            _STAGE_LABELS,
            registry=r,
        )
        self._stage_gauges = (
            self.stage_backlog,
            self.stage_rate_in,
            self.stage_rate_out,
            self.stage_lag,
        )
        self._stages: dict[tuple[str, str], set[str]] = {}
        self._lock = Lock()

    def reconciled(self, kind: str, duration_s: float, reason: str | None) -> None:
        """One reconcile finished; ``reason`` names its failure (None: it succeeded)."""
        self.reconcile_duration.labels(kind=kind).observe(duration_s)
        self.reconciles.labels(kind=kind, result=SUCCESS if reason is None else ERROR).inc()
        if reason is not None:
            self.reconcile_errors.labels(kind=kind, reason=reason).inc()

    def triggered(self, kind: str, trigger: str) -> None:
        """A reconcile of ``kind`` was asked for by ``trigger`` (a handler or watch)."""
        self.reconcile_triggers.labels(kind=kind, trigger=trigger).inc()

    def pulsar_request(self, method: str, path: str, status: str, duration_s: float) -> None:
        operation = admin_operation(method, path)
        self.pulsar_requests.labels(operation=operation, status=status).inc()
        self.pulsar_duration.labels(operation=operation).observe(duration_s)

    def stage_loads(self, namespace: str, pipeline: str, loads: Mapping[str, StageLoad]) -> None:
        """Replace a pipeline's stage gauges; stages missing from ``loads`` are dropped."""
        with self._lock:
            before = self._stages.get((namespace, pipeline), set())
            for stage in before - loads.keys():
                self._remove(namespace, pipeline, stage)
            for stage, load in loads.items():
                labels = {"namespace": namespace, "pipeline": pipeline, "stage": stage}
                self.stage_backlog.labels(**labels).set(load.backlog)
                self.stage_rate_in.labels(**labels).set(load.rate_in)
                self.stage_rate_out.labels(**labels).set(load.rate_out)
                self.stage_lag.labels(**labels).set(load.lag_s)
            self._stages[(namespace, pipeline)] = set(loads)

    def forget_pipeline(self, namespace: str, pipeline: str) -> None:
        """A deleted pipeline exports nothing any more."""
        self.stage_loads(namespace, pipeline, {})
        with self._lock:
            self._stages.pop((namespace, pipeline), None)

    def _remove(self, namespace: str, pipeline: str, stage: str) -> None:
        for gauge in self._stage_gauges:
            gauge.remove(namespace, pipeline, stage)

    def serve(self, port: int, host: str) -> None:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)
