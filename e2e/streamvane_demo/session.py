"""What every single-cluster demo does: start the local stack, install the CRDs, run the
operator and the process runner for the demo namespace, and apply the shipped samples."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pulsar
import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from process_runner import harness
from process_runner.kubectl import kubectl
from streamvane_stack import Endpoints, Stack
from streamvane_stack.manifests import for_stack

REPO = Path(__file__).resolve().parents[2]
ITEMS_FILE = Path(__file__).with_name("content_items.jsonl")
SAMPLES = REPO / "crds" / "samples"
NAMESPACE = "streamvane-demo"

# Piped output (make, CI logs) gets a width that fits the summary tables.
console = Console() if sys.stdout.isatty() else Console(width=130)


def _report(line: str) -> None:
    console.print(f"[cyan]stack[/cyan] {line}")


def check(result: Any, what: str) -> None:
    if result.returncode != 0:
        console.print(f"[red]{what} failed:[/red] {result.stderr.strip()}")
        raise typer.Exit(1)


def load_items(count: int) -> list[dict[str, Any]]:
    """``count`` items cycling through the shipped set, each with a unique id."""
    base = [json.loads(line) for line in ITEMS_FILE.read_text().splitlines() if line.strip()]
    return [
        {**base[i % len(base)], "id": f"{base[i % len(base)]['id']}-{i:05d}"} for i in range(count)
    ]


def sample(name: str, stack: Endpoints) -> dict[str, Any]:
    """A shipped sample from crds/samples, pointed at this stack, in the demo namespace."""
    doc = for_stack(yaml.safe_load((SAMPLES / name).read_text()), stack)
    doc["metadata"]["namespace"] = NAMESPACE
    return doc


def apply(stack: Endpoints, manifests: list[dict[str, Any]], what: str) -> None:
    check(
        kubectl(stack.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(manifests)),
        f"kubectl apply {what}",
    )


def wait_ready(stack: Endpoints, name: str, timeout_s: float) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        result = kubectl(stack.kubeconfig, "get", "pipeline", name, "-n", NAMESPACE, "-o", "json")
        if result.returncode != 0:
            return None
        obj: dict[str, Any] = json.loads(result.stdout)
        conditions = obj.get("status", {}).get("conditions", [])
        return (
            obj if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None
        )

    return harness.wait_for(f"Pipeline {name} Ready", ready, timeout_s)  # type: ignore[return-value]


@contextlib.contextmanager
def demo_cluster(
    run_name: str, keep_running: bool, step: str = ""
) -> Iterator[tuple[Endpoints, Path]]:
    """The local stack (started if needed) with the CRDs installed and the operator and the
    process runner running for the demo namespace; yields the stack and the demo's run
    directory (logs). On exit deletes the demo's Pipelines and stops the operator and the
    runner, unless ``keep_running``; the stack stays up."""
    with console.status("starting the local stack (first run fetches and builds, see progress)"):
        stack = Stack().up(_report)
    run_dir = stack.cache / "run" / run_name
    console.print(f"{step}CRDs, operator and process runner")
    check(kubectl(stack.kubeconfig, "apply", "-f", str(REPO / "crds")), "kubectl apply crds")
    namespace = kubectl(
        stack.kubeconfig, "create", "namespace", NAMESPACE, "--dry-run=client", "-o", "yaml"
    ).stdout
    check(kubectl(stack.kubeconfig, "apply", "-f", "-", stdin=namespace), "kubectl apply namespace")
    operator = harness.operator(stack.kubeconfig, [NAMESPACE], run_dir / "operator.log").start()
    runner = harness.runner(
        stack.kubeconfig, [NAMESPACE], run_dir / "runner.log", log_dir=run_dir / "workers"
    ).start()
    try:
        yield stack, run_dir
    finally:
        if not keep_running:
            console.print(
                "stopping: deleting the Pipelines (Retain keeps their topics), operator, runner"
            )
            kubectl(
                stack.kubeconfig, "delete", "pipeline", "--all", "-n", NAMESPACE, "--timeout=60s"
            )
            runner.stop()
            operator.stop()
    console.print(
        f"\nThe stack is still up: export KUBECONFIG={stack.kubeconfig}; "
        "kubectl get pipelines -A; `make stack-down` stops it."
    )


def collect(
    sink: pulsar.Consumer, expected: Collection[str], timeout_s: float, label: str
) -> dict[str, tuple[float, dict[str, Any]]]:
    """The expected items read from ``sink`` by id, with their arrival time, under a progress
    bar; stops when all arrived or at timeout."""
    received: dict[str, tuple[float, dict[str, Any]]] = {}
    deadline = time.monotonic() + timeout_s
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("sink", total=len(expected))
        while len(received) < len(expected) and time.monotonic() < deadline:
            try:
                message = sink.receive(timeout_millis=1000)
            except pulsar.Timeout:
                continue
            item = json.loads(message.data())
            if item["id"] in expected and item["id"] not in received:
                received[item["id"]] = (time.monotonic(), item)
                progress.update(task, completed=len(received))
            sink.acknowledge(message)
    return received
