"""Autoscaling benchmark: the drain-time policy against KEDA+HPA and Numaflow, then for real.

(1) simulated, no stack: the same input traces through Streamvane's policy and faithful
    models of KEDA's Pulsar scaler with the HPA (defaults, and with msgBacklogThreshold
    tuned to capacity x target lag) and of Numaflow's autoscaler, with the same capacity
    per replica and pod start time (``bench/autoscale_sim.py``); per trace: time to drain,
    peak lag, replica-seconds, replica changes, first scale-up after the load starts, and
    each peer's ratio to Streamvane;
(2) real, on the local stack: operator and process runner, a passthrough stage with
    minReplicas 0, maxReplicas 4, targetLagSeconds 30; a burst of items; seconds from the
    first publish to the first replica requested, the first output, drained; replicas
    over time; seconds from the end of input back to zero.

python -m bench.bench_autoscale [--simulated-only] [--items 3000]
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import pulsar
import typer
import yaml
from bench.autoscale_sim import Run, World, controllers, simulate, traces
from rich.console import Console
from rich.table import Table

from process_runner import harness
from process_runner.kubectl import kubectl
from streamvane_stack import Endpoints, Stack
from streamvane_stack.manifests import for_stack
from streamvane_stack.publish import send_json

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench-autoscale"
console = Console(width=150)
app = typer.Typer(add_completion=False, rich_markup_mode=None)


def _ratio(theirs: float, ours: float) -> str:
    if ours == 0:
        return "-" if theirs == 0 else "inf"
    return f"{theirs / ours:.2f}x"


def simulated(world: World) -> None:
    table = Table(
        title=(
            f"Simulated: {world.capacity:g} msg/s per replica, pods ready {world.pod_start_s} s "
            f"after requested, replicas {world.min_replicas}-{world.max_replicas}, target lag "
            f"{world.target_lag_s:g} s (900 s per trace)"
        )
    )
    for column in (
        "trace",
        "autoscaler",
        "drain s",
        "peak lag s",
        "replica-s",
        "changes",
        "1st scale-up s",
        "replica-s vs ours",
        "peak lag vs ours",
    ):
        table.add_column(column, justify="left" if column in ("trace", "autoscaler") else "right")
    goals: list[str] = []
    for name, (arrivals, start) in traces().items():
        runs: list[Run] = [simulate(world, arrivals, make, start) for make in controllers()]
        ours = runs[0]
        for run in runs:
            table.add_row(
                name if run is ours else "",
                run.name,
                f"{run.drain_s:.0f}",
                f"{run.peak_lag_s:.0f}",
                f"{run.replica_seconds:.0f}",
                str(run.changes),
                "-" if run.first_scale_up_s is None else f"{run.first_scale_up_s:.0f}",
                "" if run is ours else _ratio(run.replica_seconds, ours.replica_seconds),
                "" if run is ours else _ratio(run.peak_lag_s, ours.peak_lag_s),
            )
        table.add_section()
        keda = runs[1]
        goals.append(
            f"{name}: replica-s {ours.replica_seconds:.0f} vs KEDA+HPA {keda.replica_seconds:.0f}"
            f" at peak lag {ours.peak_lag_s:.0f} vs {keda.peak_lag_s:.0f} s"
        )
        if name.startswith("step"):
            goals.append(
                f"step: first scale-up {ours.first_scale_up_s} s after the backlog appeared; "
                f"drained in {ours.drain_s:.0f} s ({ours.drain_s / world.target_lag_s:.2f}x the "
                f"target lag, {world.pod_start_s} s of it pod start)"
            )
        if name.startswith("constant"):
            late = [c for c in ours.timeline if c[0] >= len(arrivals) - 600]
            goals.append(f"constant: {len(late)} replica changes in the last 10 minutes")
    console.print(table)
    for line in goals:
        console.print(f"  {line}")


def _pipeline(stack: Endpoints, pulsar_namespace: str, scaling: dict[str, Any]) -> dict[str, Any]:
    doc = for_stack(
        yaml.safe_load((REPO / "crds" / "samples" / "pipeline-passthrough.yaml").read_text()),
        stack,
    )
    doc["metadata"] = {"name": "burst", "namespace": NAMESPACE}
    doc["spec"]["pulsar"]["namespace"] = pulsar_namespace
    doc["spec"]["stages"] = [
        {
            "name": "relay",
            "type": "passthrough",
            "input": {"topic": "burst-in"},
            "outputs": ["burst-out"],
            "scaling": scaling,
        }
    ]
    return doc


def _replicas(stack: Endpoints) -> tuple[int, int]:
    result = kubectl(
        stack.kubeconfig, "get", "deployment", "burst-relay", "-n", NAMESPACE, "-o", "json"
    )
    if result.returncode != 0:
        return -1, -1
    deployment = json.loads(result.stdout)
    ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
    return int(deployment["spec"].get("replicas", 1)), ready


def real(items: int, scaling: dict[str, Any]) -> None:
    stack = Stack().up(lambda line: console.print(f"  {line}"))
    run_dir = stack.cache / "run" / "bench-autoscale"
    for args in (("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds")),):
        assert kubectl(stack.kubeconfig, *args).returncode == 0
    kubectl(stack.kubeconfig, "create", "namespace", NAMESPACE)
    operator = harness.operator(
        stack.kubeconfig, [NAMESPACE], run_dir / "operator.log", autoscale_s=5
    )
    runner = harness.runner(
        stack.kubeconfig, [NAMESPACE], run_dir / "runner.log", run_dir / "workers"
    )
    operator.start()
    runner.start()
    pulsar_namespace = f"bench-{uuid.uuid4().hex[:6]}"
    doc = _pipeline(stack, pulsar_namespace, scaling)
    client = pulsar.Client(stack.pulsar_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    timeline: list[tuple[float, int, int]] = []
    try:
        assert (
            kubectl(stack.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(doc)).returncode == 0
        )
        harness.wait_for("Deployment at 0 replicas", lambda: _replicas(stack)[0] == 0, 120)
        topic = f"persistent://streamvane/{pulsar_namespace}/"
        sink = client.subscribe(
            topic + "burst-out", "bench", initial_position=pulsar.InitialPosition.Earliest
        )
        t0 = time.monotonic()
        burst = ({"id": f"b-{i:05d}", "title": f"item {i}"} for i in range(items))
        send_json(client, topic + "burst-in", burst)
        published = time.monotonic() - t0
        first_replica = first_output = drained = None
        received = 0
        last = (0, 0)
        while drained is None and time.monotonic() - t0 < 600:
            now = time.monotonic() - t0
            state = _replicas(stack)
            if state != last:
                timeline.append((now, *state))
                last = state
            if first_replica is None and state[0] > 0:
                first_replica = now
            try:
                for _ in range(min(200, items - received)):
                    sink.acknowledge(sink.receive(timeout_millis=200))
                    received += 1
                    if first_output is None:
                        first_output = time.monotonic() - t0
            except pulsar.Timeout:
                pass
            if received >= items:
                drained = time.monotonic() - t0
        zero = None
        deadline = time.monotonic() + 600
        while drained is not None and zero is None and time.monotonic() < deadline:
            now = time.monotonic() - t0
            state = _replicas(stack)
            if state != last:
                timeline.append((now, *state))
                last = state
            if state[0] == 0:
                zero = now - published
            time.sleep(0.5)
    finally:
        client.close()
        kubectl(stack.kubeconfig, "delete", "pipeline", "burst", "-n", NAMESPACE, "--timeout=60s")
        runner.stop()
        operator.stop()
    table = Table(
        title=(
            f"Real: {items} items, passthrough stage, replicas "
            f"{scaling['minReplicas']}-{scaling['maxReplicas']}, targetLagSeconds "
            f"{scaling['targetLagSeconds']}, operator tick 5 s, process runner"
        )
    )
    table.add_column("measure")
    table.add_column("seconds", justify="right")
    for label, value in (
        (f"publishing {items} items", published),
        ("first publish -> first replica requested", first_replica),
        ("first publish -> first output", first_output),
        ("first publish -> drained (all outputs)", drained),
        ("input stopped (last publish) -> back at zero replicas", zero),
    ):
        table.add_row(label, "-" if value is None else f"{value:.1f}")
    console.print(table)
    console.print(
        "  replicas over time (s: requested/ready): "
        + ", ".join(f"{t:.0f}: {r}/{ready}" for t, r, ready in timeline)
    )


@app.command()
def main(
    simulated_only: Annotated[bool, typer.Option(help="Skip the run on the local stack.")] = False,
    items: Annotated[int, typer.Option(help="Burst size of the real run.")] = 3000,
    scale_down_delay: Annotated[int, typer.Option(help="scaleDownDelaySeconds (real run).")] = 60,
    idle_before_zero: Annotated[int, typer.Option(help="idleSecondsBeforeZero (real run).")] = 120,
) -> None:
    simulated(World())
    if simulated_only:
        return
    real(
        items,
        {
            "minReplicas": 0,
            "maxReplicas": 4,
            "targetLagSeconds": 30,
            "scaleDownDelaySeconds": scale_down_delay,
            "idleSecondsBeforeZero": idle_before_zero,
        },
    )


if __name__ == "__main__":
    app()
