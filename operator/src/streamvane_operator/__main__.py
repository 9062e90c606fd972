"""``python -m streamvane_operator``: run the operator (kopf) until SIGTERM."""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import kopf
import typer

from streamvane_operator import handlers, hub_handlers
from streamvane_operator.config import OperatorConfig
from streamvane_operator.kube.client import KubeClient, api_client
from streamvane_operator.kube.remote import MemberClients
from streamvane_operator.pulsar.admin import AdminPool
from streamvane_operator.reconcile.common import Deps
from streamvane_operator.reconcile.hub import HubDeps
from streamvane_operator.render.labels import FIELD_MANAGER
from streamvane_operator.render.worker import WorkerDefaults
from streamvane_operator.rollout.member import HUB_MANAGER

DEFAULTS = OperatorConfig()


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
        "subscriptions plus worker Deployments. Runs standalone (one active replica)."
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
    retry_seconds: Annotated[
        float, typer.Option(help="Retry delay while Pulsar or the API server is unreachable.")
    ] = DEFAULTS.retry_transient_s,
    liveness_port: Annotated[
        int | None, typer.Option(help="Serve kopf's /healthz on this port.")
    ] = DEFAULTS.liveness_port,
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
        retry_transient_s=retry_seconds,
        kubeconfig=kubeconfig,
        liveness_port=liveness_port,
        hub=mode is Mode.HUB,
        hub_tick_s=hub_tick_seconds,
    )
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if log_format is LogFormat.JSON else kopf.LogFormat.PLAIN,
    )
    # One line per Pulsar admin request is noise; failures surface as events and status.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    pulsar = AdminPool(timeout_s=config.pulsar_timeout_s, attempts=config.pulsar_attempts)
    client = api_client(config.kubeconfig)
    deps = Deps(
        kube=KubeClient(client, FIELD_MANAGER),
        pulsar=pulsar,
        defaults=WorkerDefaults(config.worker_image, config.worker_log_format),
        retry_transient_s=config.retry_transient_s,
        retry_rejected_s=config.retry_rejected_s,
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
            standalone=True,
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
