"""``make demo-recs``: recommendations that move toward what simulated users like.

Starts the stack, the operator and the process runner like ``make demo``, applies the content
sample and the recommendation sample chained to it, feeds the shipped items through the content
pipeline into the catalogue, then lets simulated users (hidden tastes for two categories, over
the items' real embeddings) click one stray item and answer their recommendations for a few
rounds. Prints each user's recommendations before and after, with a taste match: the mean
similarity of the top items to the user's hidden taste, and the ranker version that scored
them. Meanwhile the join turns the engagements into training examples and the online trainer
learns from them (small versions here: ``DEMO_PARAMS``); the model versions it promoted or
kept out are listed at the end, with their AUC against the version serving and the seconds
from the newest engagement each learned from to its announcement.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
import pulsar
import typer
from rich.table import Table

from streamvane_demo import simulator as sim
from streamvane_demo.report import PipelineRun
from streamvane_demo.session import (
    ITEMS_FILE,
    apply,
    collect,
    console,
    demo_cluster,
    sample,
    wait_ready,
)
from streamvane_stack import Endpoints
from streamvane_stack.publish import send_all

app = typer.Typer(add_completion=False, help=__doc__)
TOP = 5
"""Recommended items shown per user and counted in the taste match."""
DEMO_PARAMS: dict[str, dict[str, Any]] = {
    "training-examples": {"windowSeconds": 10, "allowedLatenessSeconds": 3, "idleFlushSeconds": 2},
    "online-training": {
        "exportEveryExamples": 200,
        "evaluationExamples": 100,
        "learningRate": 0.01,
    },
}
"""Short windows and small versions: a first candidate within the first rounds' examples."""


def manifests(stack: Endpoints, suffix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The content and recommendation samples on fresh Pulsar namespaces, the recommendation
    stages reading the content pipeline's output as their catalogue."""
    content = sample("pipeline-content-understanding.yaml", stack)
    content["spec"]["pulsar"]["namespace"] = f"content-{suffix}"
    recs = sample("pipeline-recommendation.yaml", stack)
    recs["spec"]["pulsar"]["namespace"] = f"recs-{suffix}"
    catalogue = PipelineRun.from_spec(content["metadata"]["name"], content["spec"]).sink_topic
    for stage in recs["spec"]["stages"]:
        if "catalogueTopic" in stage["params"]:  # not every stage reads the catalogue
            stage["params"]["catalogueTopic"] = catalogue
        stage["params"].update(DEMO_PARAMS.get(stage["type"], {}))
    return content, recs


@app.command()
def main(
    users: Annotated[int, typer.Option(min=1, help="Simulated users.")] = 4,
    rounds: Annotated[
        int,
        typer.Option(
            min=1, help="Times each user answers its recommendations (the catalogue is 48 items)."
        ),
    ] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the users' tastes and decisions.")] = 10,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each step.")] = 300,
    keep_running: Annotated[
        bool, typer.Option(help="Leave the pipelines, operator and workers running afterwards.")
    ] = False,
) -> None:
    """Run the recommendation sample with simulated users and print their recommendations
    before and after they engaged."""
    with demo_cluster("demo-recs", keep_running, step="[bold]1/5[/bold] ") as (stack, _):
        _run(stack, users, rounds, seed, timeout)


def _run(stack: Endpoints, users: int, rounds: int, seed: int, timeout_s: float) -> None:
    content, recs = manifests(stack, uuid.uuid4().hex[:6])
    console.print("[bold]2/5[/bold] kubectl apply the content and recommendation Pipelines")
    apply(stack, [sample("inferencebackend-triton-local.yaml", stack), content, recs], "pipelines")
    with console.status("waiting for topics, subscriptions and workers (both Pipelines Ready)"):
        for doc in (content, recs):
            wait_ready(stack, doc["metadata"]["name"], timeout_s)
    content_run = PipelineRun.from_spec(content["metadata"]["name"], content["spec"])
    recs_run = PipelineRun.from_spec(recs["metadata"]["name"], recs["spec"])
    client = pulsar.Client(stack.pulsar_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        sink = client.subscribe(
            content_run.sink_topic, "demo-recs", initial_position=pulsar.InitialPosition.Earliest
        )
        payloads = [line.encode() for line in ITEMS_FILE.read_text().splitlines() if line.strip()]
        ids = {json.loads(p)["id"] for p in payloads}
        console.print(f"[bold]3/5[/bold] {len(ids)} items through the content pipeline")
        send_all(client, content_run.input_topic, payloads)
        enriched = {i: doc for i, (_, doc) in collect(sink, ids, timeout_s, "  enriched").items()}
        if len(enriched) < len(ids):
            console.print(f"[red]{len(ids) - len(enriched)} items were not enriched[/red]")
            raise typer.Exit(1)
        vectors, categories = recommendable(enriched)
        output = {s.name: s.output_topics[0] for s in recs_run.stages}
        topics = (recs_run.input_topic, output["retrieve"], output["rank"])
        with console.status("[bold]4/5[/bold] waiting for the stages to hold the catalogue"):
            sim.wait_catalogue_followed(
                client, topics, next(iter(vectors)), len(vectors), timeout_s
            )
        rng = np.random.default_rng(seed)
        people = sim.make_users(users, vectors, categories, rng)
        live = sim.Users(client, recs_run.input_topic, output["rank"])
        started = time.monotonic()
        with console.status("[bold]5/5[/bold] simulated users") as status:

            def progress(step: str, done: int) -> None:
                status.update(f"[bold]5/5[/bold] simulated users: {step}, {done}/{users} answered")

            trajectories = sim.close_loop(people, live, vectors, rounds, rng, timeout_s, progress)
        live.close()
        console.print(
            f"  {sum(live.sent.values())} engagements, {users} users, {rounds} round(s), "
            f"{time.monotonic() - started:.1f}s"
        )
        announced = sim.announcements(client, output["train"])
    finally:
        client.close()
    _print(trajectories, vectors, enriched)
    _print_versions(announced)


def recommendable(
    enriched: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, sim.Vector], dict[str, str]]:
    """Embeddings of the items the samples may recommend (not blocked), and the categories of
    those the safety stage allowed (what tastes are made of)."""
    kept = {i: d for i, d in enriched.items() if d["safety"]["decision"] != "block"}
    vectors = {i: sim.unit(d["embedding"]["vector"]) for i, d in kept.items()}
    allowed = {i: d for i, d in kept.items() if d["safety"]["decision"] == "allow"}
    return vectors, {i: str(d.get("category", "-")) for i, d in allowed.items()}


def _print(
    trajectories: list[sim.Trajectory],
    vectors: Mapping[str, sim.Vector],
    enriched: Mapping[str, Mapping[str, Any]],
) -> None:
    table = Table(title=f"Top {TOP} recommendations before and after engaging", show_lines=True)
    rounds = len(trajectories[0].served) - 1 if trajectories else 0
    after = f"after {rounds} round{'s' if rounds > 1 else ''}"
    for column in ("user (hidden taste)", "before: after one stray click", "taste", after):
        table.add_column(column)
    table.add_column("taste", justify="right")

    def listing(served: sim.Served) -> str:
        return "\n".join(
            f"{s.score:.2f} {enriched[s.item_id].get('title', s.item_id)[:38]}"
            for s in served.items[:TOP]
        )

    improved, before_all, after_all = 0, [], []
    for t in trajectories:
        first, last = t.served[0], t.served[-1]
        matches = [
            sim.taste_match(t.user, [s.item_id for s in x.items[:TOP]], vectors) for x in t.served
        ]
        before_all.append(matches[0])
        after_all.append(matches[-1])
        improved += matches[-1] > matches[0]
        table.add_row(
            f"{t.user.user_id}\n{', '.join(t.user.likes)}",
            listing(first),
            f"{matches[0]:.2f}",
            listing(last),
            " -> ".join(f"{m:.2f}" for m in matches[1:])
            + "\nranker "
            + " -> ".join(f"v{x.model_version}" for x in t.served),
        )
    console.print(table)
    console.print(
        f"taste match (mean similarity of the top {TOP} to the hidden taste): "
        f"{np.mean(before_all):.2f} before, {np.mean(after_all):.2f} after; "
        f"{improved}/{len(trajectories)} users' recommendations moved toward their taste"
    )


def _print_versions(announced: list[dict[str, Any]]) -> None:
    if not announced:
        console.print(
            "model versions: none judged yet (a candidate needs "
            f"{DEMO_PARAMS['online-training']['exportEveryExamples']} examples, then "
            f"{DEMO_PARAMS['online-training']['evaluationExamples']} more with both labels; "
            "e2e/test_online_training.py runs the loop until versions serve)"
        )
        return
    table = Table(title="Model versions of the online trainer (model-versions topic)")
    for column in (
        "version",
        "outcome",
        "AUC",
        "serving AUC",
        "learned",
        "engagement -> announced",
    ):
        table.add_column(column, justify="right" if column != "outcome" else "left")
    for a in announced:
        latency = sim.announce_latency_s(a)
        table.add_row(
            str(a["version"]),
            f"promoted, serving v{a['servingVersion']}"
            if a["promoted"]
            else f"kept out, serving v{a['servingVersion']}",
            f"{a['auc']:.3f}" if a.get("auc") is not None else "-",
            f"{a['servingAuc']:.3f}" if a.get("servingAuc") is not None else "-",
            str(a.get("examplesLearned", 0)),
            f"{latency:.1f}s" if latency is not None else "-",
        )
    console.print(table)


if __name__ == "__main__":
    app()
