"""``python -m streamvane_operator``: run the operator (kopf) until SIGTERM."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import kopf
import typer

from streamvane_operator import handlers, hub_handlers
from streamvane_operator.config import OperatorConfig
from streamvane_operator.kube.client import KubeClient, api_client
from streamvane_operator.kube.remote import MemberClients
from streamvane_operator.metrics import OperatorMetrics
from streamvane_operator.pulsar.admin import AdminPool
from streamvane_operator.reconcile.common import Deps
from streamvane_operator.reconcile.hub import HubDeps
from streamvane_operator.reconcile.memory import ReconcileMemory
from streamvane_operator.render.labels import FIELD_MANAGER
from streamvane_operator.render.worker import WorkerDefaults
from streamvane_operator.rollout.member import HUB_MANAGER
from streamvane_operator.scaling.signals import MetricsReader

DEFAULTS = OperatorConfig()
SNAPSHOT_TTL_S = 10.0
M_ARENA_MAX = -8
"""glibc's mallopt parameter: the most malloc arenas (by default 8 per core)."""
MALLOC_ARENAS = 2


def limit_malloc_arenas() -> None:
    """Handler threads each get a malloc arena of their own by default, and every arena keeps
    what it freed: with dozens of threads the resident set grows by the arenas, not by what
    the operator holds. Two arenas are enough for threads that mostly wait on sockets. A
    no-op without glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, MALLOC_ARENAS)


class Mode(StrEnum):
    MEMBER = "member"
    HUB = "hub"


class LogFormat(StrEnum):
    JSON = "json"
    PLAIN = "plain"


class WorkerLogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command(
    help=(
        "Reconcile Pipeline and InferenceBackend resources into Pulsar topics and "
        "subscriptions plus worker Deployments. Standalone by default; with --peering, "
        "replicas elect one active operator (the live one with the highest --priority)."
    )
)
def run(
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Namespace to watch (repeatable); default: all."),
    ] = None,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(envvar="KUBECONFIG", help="kubeconfig file; default: in-cluster."),
    ] = None,
    worker_image: Annotated[
        str, typer.Option(help="Worker image for Pipelines that name none.")
    ] = DEFAULTS.worker_image,
    worker_log_format: Annotated[
        WorkerLogFormat, typer.Option(help="Log format rendered into worker configs.")
    ] = WorkerLogFormat.JSON,
    resync_seconds: Annotated[
        float, typer.Option(help="Period of the drift-repair and status refresh.")
    ] = DEFAULTS.resync_s,
    full_resync_seconds: Annotated[
        float,
        typer.Option(
            help="Longest time a resync skips an unchanged, Ready Pipeline (the watches "
            "report changes; this catches what they cannot see)."
        ),
    ] = DEFAULTS.full_resync_s,
    pulsar_recheck_seconds: Annotated[
        float,
        typer.Option(
            help="Longest time between full checks of a Pipeline's topics and policies; "
            "a deleted topic or subscription is seen at the next resync regardless."
        ),
    ] = DEFAULTS.pulsar_recheck_s,
    model_serving_seconds: Annotated[
        float,
        typer.Option(
            min=0.5,
            help="Period of the ModelServing refresh of Pipelines whose stages follow model "
            "versions (params.modelVersionsTopic): read the newest announcements, update the "
            "condition and post its warning Events.",
        ),
    ] = DEFAULTS.model_serving_s,
    autoscale_interval_seconds: Annotated[
        float,
        typer.Option(
            min=0.5, help="Period of the autoscaler: read backlog, rates, Triton queue time, scale."
        ),
    ] = DEFAULTS.autoscale_interval_s,
    retry_seconds: Annotated[
        float, typer.Option(help="Retry delay while Pulsar or the API server is unreachable.")
    ] = DEFAULTS.retry_transient_s,
    max_workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Reconciles running at once (threads); they mostly wait for the API server "
            "and Pulsar.",
        ),
    ] = DEFAULTS.max_workers,
    liveness_port: Annotated[
        int | None, typer.Option(help="Serve kopf's /healthz on this port.")
    ] = DEFAULTS.liveness_port,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus /metrics on this port.")
    ] = DEFAULTS.metrics_port,
    metrics_host: Annotated[
        str, typer.Option(help="Address the /metrics endpoint listens on.")
    ] = DEFAULTS.metrics_host,
    peering: Annotated[
        str | None,
        typer.Option(
            help="kopf peering object (KopfPeering in each watched namespace, or "
            "ClusterKopfPeering when watching all) shared by the replicas; one reconciles."
        ),
    ] = DEFAULTS.peering,
    priority: Annotated[
        int | None,
        typer.Option(
            help="Peering priority; default: random, so replicas never tie (kopf pauses "
            "every replica of equal priority)."
        ),
    ] = None,
    peering_lifetime: Annotated[
        int,
        typer.Option(
            min=5, help="Seconds without a keep-alive after which a replica counts as gone."
        ),
    ] = DEFAULTS.peering_lifetime_s,
    log_format: Annotated[LogFormat, typer.Option(help="Format of the operator's logs.")] = (
        LogFormat.JSON
    ),
    mode: Annotated[
        Mode,
        typer.Option(
            help="member: reconcile Pipelines here (default). hub: place Pipelines that have "
            "spec.placement in their Regions and roll them out wave by wave."
        ),
    ] = Mode.MEMBER,
    hub_tick_seconds: Annotated[
        float, typer.Option(help="Hub: interval of the rollout step.")
    ] = DEFAULTS.hub_tick_s,
    verbose: Annotated[bool, typer.Option(help="Debug logging.")] = False,
) -> None:
    config = OperatorConfig(
        namespaces=tuple(namespace or ()),
        worker_image=worker_image,
        worker_log_format=worker_log_format.value,
        resync_s=resync_seconds,
        full_resync_s=full_resync_seconds,
        pulsar_recheck_s=pulsar_recheck_seconds,
        model_serving_s=model_serving_seconds,
        autoscale_interval_s=autoscale_interval_seconds,
        retry_transient_s=retry_seconds,
        kubeconfig=kubeconfig,
        liveness_port=liveness_port,
        max_workers=max_workers,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        peering=peering,
        priority=priority if priority is not None else 1 + secrets.randbelow(2**31 - 1),
        peering_lifetime_s=peering_lifetime,
        hub=mode is Mode.HUB,
        hub_tick_s=hub_tick_seconds,
    )
    limit_malloc_arenas()  # before kopf starts any thread
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if log_format is LogFormat.JSON else kopf.LogFormat.PLAIN,
    )
    # One line per Pulsar admin request is noise; failures surface as events and status.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    metrics = OperatorMetrics()
    if config.metrics_port is not None:
        metrics.serve(config.metrics_port, config.metrics_host)
    pulsar = AdminPool(
        timeout_s=config.pulsar_timeout_s,
        attempts=config.pulsar_attempts,
        observer=metrics.pulsar_request,
    )
    triton_metrics = MetricsReader()
    # One connection per handler thread, plus kopf's watches and patches.
    client = api_client(config.kubeconfig, connections=config.max_workers + 8)
    deps = Deps(
        kube=KubeClient(client, FIELD_MANAGER),
        pulsar=pulsar,
        defaults=WorkerDefaults(config.worker_image, config.worker_log_format),
        retry_transient_s=config.retry_transient_s,
        retry_rejected_s=config.retry_rejected_s,
        metrics=metrics,
        triton_metrics=triton_metrics,
        memory=ReconcileMemory(
            # Fresh for every resync, shared by the Pipelines resynced around the same time.
            snapshot_ttl_s=min(SNAPSHOT_TTL_S, config.resync_s / 2),
            # Likewise fresh for every model-serving tick.
            announcements_ttl_s=config.model_serving_s / 2,
            pulsar_recheck_s=config.pulsar_recheck_s,
            full_resync_s=config.full_resync_s,
            # One resync period: a Pipeline still waiting for its workers is reconciled
            # again at the next tick after it, or as soon as a watch reports them.
            waiting_s=config.resync_s,
        ),
    )
    registry = kopf.OperatorRegistry()
    if config.hub:
        hub_deps = HubDeps(
            kube=deps.kube, members=MemberClients(HUB_MANAGER), pulsar=pulsar,
            retry_s=config.hub_tick_s,
        )  # fmt: skip
        hub_handlers.register(registry, hub_deps, config, client.configuration)
    else:
        handlers.register(registry, deps, config, client.configuration)
    try:
        kopf.run(
            registry=registry,
            standalone=config.peering is None,
            peering_name=config.peering,
            priority=config.priority,
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            liveness_endpoint=(
                f"http://0.0.0.0:{config.liveness_port}/healthz"
                if config.liveness_port is not None
                else None
            ),
        )
    finally:
        pulsar.close()
        triton_metrics.close()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
