"""The operator's own settings, parsed once in ``__main__``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty means the whole cluster."""
    worker_image: str = "ghcr.io/streamvane/worker:0.1.0"
    """Image of stage workers when a Pipeline does not name one."""
    worker_log_format: str = "json"
    """Log format rendered into every WorkerConfig (json in clusters, console locally)."""
    resync_s: float = 30.0
    """Interval of the periodic reconcile that repairs drift and refreshes status."""
    full_resync_s: float = 300.0
    """Longest time a resync trusts the last full reconcile of an unchanged Pipeline: the
    safety net for drift no watch reports (an edited ConfigMap, Service or PDB)."""
    pulsar_recheck_s: float = 3600.0
    """Longest time between full checks of a Pipeline's topics and their policies (owner,
    retention, compaction, de-duplication); in between, a shared broker snapshot shows a
    deleted topic or subscription at the next resync."""
    model_serving_s: float = 15.0
    """Period of the timer that reads the model-versions topics of Pipelines following model
    versions and refreshes their ModelServing condition (and its warning Events)."""
    autoscale_interval_s: float = 5.0
    """Period of the autoscaler's tick: one read of each Pipeline's signals, then decisions."""
    retry_transient_s: float = 10.0
    """Delay before retrying when Pulsar or the API server was unreachable."""
    retry_rejected_s: float = 60.0
    """Delay before retrying when Pulsar or the API server refused a request."""
    pulsar_timeout_s: float = 10.0
    """Timeout of one Pulsar admin request."""
    pulsar_attempts: int = 3
    """Attempts per Pulsar admin request before it counts as unreachable."""
    kubeconfig: Path | None = None
    """kubeconfig file; None means in-cluster service account, else $KUBECONFIG."""
    liveness_port: int | None = None
    """Port of kopf's /healthz probe endpoint; None disables it."""
    max_workers: int = 32
    """Threads running synchronous handlers at once: reconciles mostly wait for the API
    server and Pulsar, so more of them than cores keep both busy (8 serialised the creation
    of 500 Pipelines)."""
    metrics_port: int | None = None
    """Port of the Prometheus ``/metrics`` endpoint; None disables it."""
    metrics_host: str = "0.0.0.0"
    """Address the metrics endpoint listens on."""
    peering: str | None = None
    """kopf peering object shared by the replicas (leader election); None runs standalone."""
    priority: int = 0
    """This replica's peering priority: the live replica with the highest one reconciles."""
    peering_lifetime_s: int = 60
    """Seconds after its last keep-alive that a silent replica counts as gone."""
    hub: bool = False
    """Run as the hub: place Pipelines in Regions and roll them out (else: a member)."""
    hub_tick_s: float = 5.0
    """Hub: interval of the rollout step (waits, bakes, deadlines and gates are polled)."""
