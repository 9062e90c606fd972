"""``python -m process_runner``: run Streamvane's Deployments as local processes.

For tests and the demo only: a stand-in for kubelet where there is no container runtime.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from kubernetes import client as k8s
from kubernetes import config as kube_config

from process_runner.runner import Runner, RunnerConfig
from streamvane_operator.render.labels import WORKER_SELECTOR

DEFAULTS = RunnerConfig(selector=WORKER_SELECTOR)

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command(
    help=(
        "FOR TESTS AND THE DEMO ONLY. Watch Deployments in the kube-apiserver and run each "
        "replica's container command as a local process (python = this interpreter, the "
        "container env, ConfigMap/Secret volumes written to temporary directories), follow "
        "scale and template changes (rolling: start new, stop old once the new one is ready), "
        "SIGTERM on scale-down, and write the Deployment status (replicas, readyReplicas from "
        "the readiness probe). Every child process stops when the runner exits."
    )
)
def run(
    kubeconfig: Annotated[
        Path, typer.Option(envvar="KUBECONFIG", help="kubeconfig of the API server.")
    ],
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Namespace to watch (repeatable); default: all."),
    ] = None,
    selector: Annotated[
        str, typer.Option(help="Label selector of the Deployments to run.")
    ] = DEFAULTS.selector,
    port_env: Annotated[
        str, typer.Option(help="Env var given each replica's own free port (probes go there).")
    ] = DEFAULTS.port_env,
    log_dir: Annotated[
        Path, typer.Option(help="Directory of per-replica log files.")
    ] = DEFAULTS.log_dir,
    poll_seconds: Annotated[float, typer.Option(help="Period of the sync loop.")] = DEFAULTS.poll_s,
    max_probe_period_seconds: Annotated[
        float, typer.Option(help="Cap on the templates' probe periods.")
    ] = DEFAULTS.max_probe_period_s,
    max_grace_seconds: Annotated[
        float, typer.Option(help="Cap on terminationGracePeriodSeconds before SIGKILL.")
    ] = DEFAULTS.max_grace_s,
) -> None:
    config = RunnerConfig(
        selector=selector,
        namespaces=tuple(namespace or ()),
        port_env=port_env,
        log_dir=log_dir,
        poll_s=poll_seconds,
        max_probe_period_s=max_probe_period_seconds,
        max_grace_s=max_grace_seconds,
    )
    api = kube_config.new_client_from_config(config_file=str(kubeconfig))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    Runner(config, k8s.AppsV1Api(api), k8s.CoreV1Api(api)).run(stop)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
