"""``make demo``: a content-understanding pipeline on the real local stack, end to end.

Starts the stack (Pulsar, kube-apiserver, Triton), the operator and the process runner, applies
the sample ``Pipeline`` (embed -> tag -> safety), publishes content items to its input topic,
waits for every enriched item on the sink topic and prints what happened.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pulsar
import typer
from rich.table import Table

from process_runner.kubectl import kubectl
from streamvane_demo.report import PipelineRun, StageCounts, latency_percentiles, sample_rows
from streamvane_demo.session import (
    NAMESPACE,
    apply,
    collect,
    console,
    demo_cluster,
    load_items,
    sample,
    wait_ready,
)
from streamvane_stack import Endpoints
from streamvane_stack.publish import PublishFailed, send_all

app = typer.Typer(add_completion=False, help=__doc__)


def pipeline_manifest(
    stack: Endpoints, pulsar_namespace: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The sample Pipeline, pointed at this stack and at a fresh Pulsar namespace so counts
    start at zero."""
    pipeline = sample("pipeline-content-understanding.yaml", stack)
    pipeline["spec"]["pulsar"]["namespace"] = pulsar_namespace
    return pipeline, [sample("inferencebackend-triton-local.yaml", stack), pipeline]


def topic_counts(admin_url: str, topic: str) -> int:
    """Messages the broker accepted on ``topic`` (0 if it does not exist)."""
    path = topic.replace("persistent://", "persistent/")
    response = httpx.get(f"{admin_url}/admin/v2/{path}/stats", timeout=10.0)
    return int(response.json().get("msgInCounter", 0)) if response.status_code == 200 else 0


@app.command()
def main(
    items: Annotated[
        int, typer.Option(help="Content items to publish (the shipped set, replayed).")
    ] = 1000,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every enriched item.")] = 600,
    keep_running: Annotated[
        bool, typer.Option(help="Leave the pipeline, operator and workers running afterwards.")
    ] = False,
) -> None:
    """Run the sample content-understanding pipeline end to end and print a summary."""
    with demo_cluster("demo", keep_running, step="[bold]1/4[/bold] ") as (stack, run_dir):
        _run(stack, items, timeout, run_dir)


def _run(stack: Endpoints, count: int, timeout_s: float, run_dir: Path) -> None:
    pulsar_namespace = f"demo-{uuid.uuid4().hex[:6]}"
    pipeline, manifests = pipeline_manifest(stack, pulsar_namespace)
    name = pipeline["metadata"]["name"]
    console.print(
        f"[bold]2/4[/bold] kubectl apply Pipeline {name} (Pulsar namespace {pulsar_namespace})"
    )
    apply(stack, manifests, "pipeline")
    started = time.monotonic()
    with console.status("waiting for topics, subscriptions and workers (Pipeline Ready)"):
        wait_ready(stack, name, timeout_s=180)
    console.print(f"  Ready after {time.monotonic() - started:.1f}s")
    console.print(kubectl(stack.kubeconfig, "get", "pipelines", "-n", NAMESPACE).stdout)

    run = PipelineRun.from_spec(name, pipeline["spec"])
    client = pulsar.Client(stack.pulsar_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        sink = client.subscribe(
            run.sink_topic, "demo-reader", initial_position=pulsar.InitialPosition.Earliest
        )
        content = load_items(count)
        console.print(f"[bold]3/4[/bold] publishing {count} content items to {run.input_topic}")
        sent_at: dict[str, float] = {}

        def stamped() -> Iterator[bytes]:
            for item in content:
                sent_at[item["id"]] = time.monotonic()
                yield json.dumps(item).encode()

        try:
            send_all(client, run.input_topic, stamped(), batching=True)
        except PublishFailed as e:
            console.print(f"[red]not every item was published: {e}[/red]")
            raise typer.Exit(1) from e
        results = collect(sink, sent_at, timeout_s, "[bold]4/4[/bold] enriched items")
    finally:
        client.close()
    counts = [
        StageCounts(
            stage.name,
            topic_counts(stack.pulsar_admin_url, stage.input_topic),
            sum(topic_counts(stack.pulsar_admin_url, t) for t in stage.output_topics),
            topic_counts(stack.pulsar_admin_url, stage.dead_letter_topic),
        )
        for stage in run.stages
    ]
    _print_summary(counts, results, sent_at)


def _print_summary(
    counts: list[StageCounts],
    results: dict[str, tuple[float, dict[str, Any]]],
    sent_at: dict[str, float],
) -> None:
    stages = Table(title="Messages per stage (broker counters)")
    for column in ("stage", "in", "out", "dead-lettered"):
        stages.add_column(column, justify="right" if column != "stage" else "left")
    for c in counts:
        stages.add_row(c.stage, str(c.messages_in), str(c.messages_out), str(c.dead_lettered))
    console.print(stages)

    samples = Table(title="A few enriched items")
    for column in ("item", "category (ground truth)", "top tags", "safety", "flagged"):
        samples.add_column(column)
    for row in sample_rows([item for _, item in results.values()]):
        samples.add_row(*row)
    console.print(samples)

    if results:
        first_sent = min(sent_at.values())
        last_arrival = max(arrived for arrived, _ in results.values())
        p50, p99 = latency_percentiles(
            [arrived - sent_at[item_id] for item_id, (arrived, _) in results.items()]
        )
        console.print(
            f"[bold]{len(results)}/{len(sent_at)}[/bold] items enriched in "
            f"{last_arrival - first_sent:.1f}s: "
            f"{len(results) / max(last_arrival - first_sent, 1e-9):.0f} items/s end to end, "
            f"latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms (includes the backlog)"
        )
    if len(results) < len(sent_at):
        console.print(f"[red]{len(sent_at) - len(results)} items did not arrive[/red]")
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
