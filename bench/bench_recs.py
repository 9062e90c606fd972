"""Recommendation benchmark: candidate retrieval's ANN index against exact search.

For each catalogue size it builds the stage's own ``ItemIndex`` (hnswlib, the params of
``HnswParams``, items added one at a time as the catalogue follower does) over clustered unit
vectors in the 384-d embedding space, then asks it for the top 10 of held-out queries and
compares with exact brute-force inner product on the same vectors:

    recall@10      share of the exact top 10 that the index returned (median over queries)
    queries/s/core single-threaded index queries per CPU second of the querying thread (the
                   stage queries on one thread; CPU time, so other load does not count)
    add/s          single-threaded incremental adds per CPU second while building
    index MiB      size of the saved index (what a snapshot writes, about what it holds)

Clustered vectors stand in for item embeddings (items of one topic sit close together);
uniformly random 384-d vectors would be a worst case no catalogue looks like.

With ``--ranking`` (needs ``make stack-up``) it also measures the ranking stage against Triton
alone on the same model (``recs-ranker``), interleaved over ``--rounds``, in scored rows
(candidates) per second:

    Triton alone    perf_analyzer (``bench/perf_analyzer.py``, as bench_workers runs it) and
                    closed-loop tritonclient gRPC callers (``bench_workers.triton_direct``),
                    each request one stage micro-batch's rows (``maxBatchSize`` messages x
                    ``CANDIDATES`` rows), ``IN_FLIGHT`` callers (the stage's maxInFlightBatches)
    ranking stage   a worker subprocess over a backlog of Candidates messages, Pulsar -> worker
                    -> Triton -> Pulsar, timed from the output topic's broker counters, with
                    the worker process's CPU seconds per 1,000 messages (from /proc)

With ``--freshness`` (needs ``make stack-up``) it runs the three recommendation stages
(user-profile -> candidate-retrieval -> ranking, the sample's batching) as worker processes
over a synthetic catalogue, publishes view engagements for fresh users at a steady ``--rate``
for ``--seconds``, and reports the seconds from each engagement being published to the first
``Recommendations`` of its user that reflect it (p50, p99), the achieved rate, and each
worker's CPU seconds per engagement (from /proc; Triton's own CPU is not included). The n-th
engagement sent to a fresh user makes its profile version n, which the recommendations carry
(``profileVersion``): that pairs them.

    python -m bench.bench_recs [--sizes 10000,100000] [--queries 1000] [--ef 128]
    python -m bench.bench_recs --sizes "" --ranking [--rounds 3] [--messages 2000]
    python -m bench.bench_recs --sizes "" --freshness [--rate 200] [--seconds 30]
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import math
import os
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import pulsar
import typer
from rich.console import Console
from rich.table import Table

from streamvane_worker.config import HnswParams
from streamvane_worker.inference.backend import EMBEDDING_DIM
from streamvane_worker.inference.ranker import DENSE, DENSE_FEATURES, ITEM, USER
from streamvane_worker.stages.candidate_retrieval import INDEX_FILE, ItemIndex
from streamvane_worker.stages.catalogue import CatalogueItem
from streamvane_worker.stages.vector import Vector

K = 10
CLUSTERS = 200
SPREAD = 0.35
"""Noise around a cluster centre, relative to the centre's unit norm."""

Vectors = npt.NDArray[np.float32]


def clustered(n: int, rng: np.random.Generator) -> Vectors:
    centres = rng.normal(size=(CLUSTERS, EMBEDDING_DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.normal(scale=SPREAD / np.sqrt(EMBEDDING_DIM), size=(n, EMBEDDING_DIM))
    vectors = (centres[rng.integers(0, CLUSTERS, n)] + noise).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def exact_top(items: Vectors, queries: Vectors) -> npt.NDArray[np.int64]:
    scores = queries @ items.T
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    return top


def measure(size: int, queries: int, params: HnswParams, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    vectors = clustered(size + queries, rng)
    items, asks = vectors[:size], vectors[size:]
    index = ItemIndex(params, frozenset())
    # This thread's CPU seconds, not wall time: "per core" whatever else the machine runs.
    started = time.thread_time()
    for n, vector in enumerate(items):
        index.upsert(CatalogueItem(str(n), vector, None))
    add_s = time.thread_time() - started
    found: list[list[str]] = []
    started = time.thread_time()
    for query in asks:
        found.append([item_id for item_id, _ in index.query(query, K, set())])
    query_s = time.thread_time() - started
    truth = exact_top(items, asks)
    recalls = [
        len({int(i) for i in got} & {int(t) for t in want}) / K
        for got, want in zip(found, truth, strict=True)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        index.save(Path(tmp), None)
        index_bytes = (Path(tmp) / INDEX_FILE).stat().st_size
    return {
        "recall": statistics.median(recalls),
        "recall_mean": statistics.fmean(recalls),
        "qps": queries / query_s,
        "adds": size / add_s,
        "mib": index_bytes / 2**20,
    }


RANKER = "recs-ranker"
CANDIDATES = 20
"""Candidates per message (the sample's retrieval topK)."""
MESSAGES_PER_BATCH = 32
IN_FLIGHT = 4
RANKING_ITEMS = 2000


def _candidates(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    users = clustered(n, rng)
    return [
        {
            "userId": f"user-{k}",
            "profile": {
                "userId": f"user-{k}",
                "vector": Vector.of(users[k]).to_base64(),
                "strength": 2.0,
                "recentItems": [],
                "eventCount": 3,
                "version": 1,
                "updatedAt": "2026-12-01T10:00:00Z",
            },
            "items": [
                {"itemId": f"item-{i}", "score": 0.5}
                for i in rng.choice(RANKING_ITEMS, CANDIDATES, replace=False)
            ],
            "indexSize": RANKING_ITEMS,
            "retrievedAt": "2026-12-01T10:00:00Z",
        }
        for k in range(n)
    ]


def _catalogue(rng: np.random.Generator) -> list[dict[str, Any]]:
    return [
        {"id": f"item-{i}", "embedding": {"vector": v.tolist(), "model": "m", "modelVersion": "1"}}
        for i, v in enumerate(clustered(RANKING_ITEMS, rng))
    ]


def ranking_stage(
    stack: Any, tmp: Path, messages: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Rows/s of a ranking worker over a backlog of ``messages`` Candidates, and the worker
    process's CPU seconds per 1,000 messages over the same window."""
    from bench.bench_workers import _wait_published, cpu_seconds
    from tests.integration.worker.pipeline import (
        Collector,
        Topics,
        WorkerProcess,
        client,
        publish,
        worker_config,
    )

    topics = Topics.unique("bench-ranking")
    catalogue = topics.input + "-catalogue"
    c = client(stack)
    collector = Collector(c, topics.output)
    collector.close()
    publish(c, catalogue, _catalogue(rng))
    publish(c, topics.input, _candidates(messages, rng))
    config = worker_config(
        stack,
        topics,
        "ranking",
        inference={"tritonUrl": stack.triton_grpc, "modelName": RANKER},
        params={"catalogueTopic": catalogue, "topK": 10},
        batching={
            "maxBatchSize": MESSAGES_PER_BATCH,
            "maxDelayMs": 10,
            "maxInFlightBatches": IN_FLIGHT,
        },
    )
    worker = WorkerProcess(config, tmp).start()
    try:
        worker.wait_started()
        _wait_published(stack, topics.output, 1, timeout=120)
        assert worker.proc is not None
        started, cpu_started = time.monotonic(), cpu_seconds(worker.proc.pid)
        _wait_published(stack, topics.output, messages, timeout=600)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(worker.proc.pid) - cpu_started
        worker.terminate()
        collector = Collector(c, topics.output, collector.subscription)
        collector.until(messages, timeout=120)
        scored = {json.loads(m.data())["candidatesScored"] for m in collector.messages}
        assert scored == {CANDIDATES}, f"rows scored per message: {scored}"
    finally:
        worker.kill()
        collector.close()
        c.close()
    return (messages - 1) * CANDIDATES / elapsed, 1000 * cpu / (messages - 1)


def _rows(rng: np.random.Generator) -> dict[str, Vectors]:
    rows = MESSAGES_PER_BATCH * CANDIDATES
    return {
        USER: clustered(rows, rng),
        ITEM: clustered(rows, rng),
        DENSE: rng.random((rows, len(DENSE_FEATURES)), dtype=np.float32),
    }


def triton_alone(url: str, rng: np.random.Generator, seconds: float) -> float:
    from bench.bench_workers import triton_direct

    return asyncio.run(triton_direct(url, RANKER, _rows(rng), IN_FLIGHT, seconds))


def perf_analyzer_alone(analyzer: Any, url: str, rng: np.random.Generator) -> float:
    """perf_analyzer's rows/s, or NaN (left out of medians) when it gave no figure."""
    from bench import perf_analyzer

    if analyzer is None:
        return math.nan
    samples = perf_analyzer.float_samples(
        {name: array[:16].tolist() for name, array in _rows(rng).items()}
    )
    try:
        return float(analyzer.run(url, RANKER, samples, MESSAGES_PER_BATCH * CANDIDATES, IN_FLIGHT))
    except perf_analyzer.PerfAnalyzerUnavailable as e:
        Console().log(f"perf_analyzer gave no figure this round: {e}")
        return math.nan


def measure_ranking(rounds: int, messages: int) -> None:
    from streamvane_stack import Stack

    stack = Stack()
    if not stack.is_ready():
        raise typer.BadParameter("the local stack is not running: run `make stack-up`")
    endpoints = stack.endpoints
    from bench import perf_analyzer

    rng = np.random.default_rng(11)
    alone: list[float] = []
    analyzed: list[float] = []
    stage: list[float] = []
    stage_cpu: list[float] = []
    try:
        analyzer = perf_analyzer.ensure()
    except perf_analyzer.PerfAnalyzerUnavailable as e:
        Console().log(f"perf_analyzer unavailable: {e}")
        analyzer = None
    with tempfile.TemporaryDirectory() as tmp:
        triton_alone(endpoints.triton_grpc, rng, 2.0)  # warm-up
        for round_ in range(1, rounds + 1):
            analyzed.append(perf_analyzer_alone(analyzer, endpoints.triton_grpc, rng))
            alone.append(triton_alone(endpoints.triton_grpc, rng, 10.0))
            rows_s, cpu = ranking_stage(endpoints, Path(tmp), messages, rng)
            stage.append(rows_s)
            stage_cpu.append(cpu)
            Console().log(
                f"round {round_}/{rounds}: perf_analyzer {analyzed[-1]:,.0f} rows/s, "
                f"Triton alone {alone[-1]:,.0f} rows/s, "
                f"ranking stage {stage[-1]:,.0f} rows/s, {cpu:.2f} worker CPU s / 1k messages"
            )
    table = Table(
        title=f"ranking ({RANKER}; {MESSAGES_PER_BATCH} messages x {CANDIDATES} "
        f"candidates per batch, {IN_FLIGHT} in flight; medians of {rounds} rounds)"
    )
    for column in ("measurement", "rows/s", "ranking stage / this", "CPU s / 1k messages"):
        table.add_column(column, justify="right")

    def row(name: str, alone_rows: list[float]) -> None:
        # Rows of one round share the machine's load: the median of the rounds' ratios.
        pairs = [(s, a) for s, a in zip(stage, alone_rows, strict=True) if not math.isnan(a)]
        if not pairs:
            table.add_row(name, "no figure", "", "")
            return
        ratio = statistics.median(s / a for s, a in pairs)
        table.add_row(name, f"{statistics.median(a for _, a in pairs):,.0f}", f"{ratio:.2f}", "")

    row("Triton alone (perf_analyzer)", analyzed)
    row("Triton alone (tritonclient gRPC)", alone)
    table.add_row(
        "ranking stage (Pulsar -> worker -> Triton -> Pulsar)",
        f"{statistics.median(stage):,.0f}",
        "",
        f"{statistics.median(stage_cpu):.2f}",
    )
    Console().print(table)


FRESH_USERS = 1000
"""Users the paced engagements cycle over (a fresh set per run: the n-th engagement sent to a
user makes its profile version n, which its Recommendations carry as ``profileVersion``)."""
FRESH_TOPK = 20


def _stage_configs(stack: Any, base: str, catalogue: str) -> list[dict[str, Any]]:
    """Worker configs of the sample's three stages, engagements -> recommendations, with the
    sample's batching, reading ``catalogue``."""
    from tests.integration.worker.pipeline import Topics, worker_config

    def topics(source: str, sink: str) -> Topics:
        return Topics(f"{base}-{source}", f"{base}-{sink}", f"{base}-{sink}-dlq")

    keyed = {"subscriptionType": "Key_Shared"}
    batching = {"maxBatchSize": 64, "maxDelayMs": 5}
    return [
        worker_config(
            stack,
            topics("engagements", "profiles"),
            "user-profile",
            input=keyed,
            inference=None,
            state={"topic": f"{base}-profiles-state"},
            batching=batching,
            params={"catalogueTopic": catalogue, "halfLifeS": 3600},
        ),
        worker_config(
            stack,
            topics("profiles", "candidates"),
            "candidate-retrieval",
            input=keyed,
            inference=None,
            batching=batching,
            params={"catalogueTopic": catalogue, "topK": FRESH_TOPK},
        ),
        worker_config(
            stack,
            topics("candidates", "recommendations"),
            "ranking",
            input=keyed,
            inference={"tritonUrl": stack.triton_grpc, "modelName": RANKER},
            batching={**batching, "maxBatchSize": MESSAGES_PER_BATCH},
            params={"catalogueTopic": catalogue, "topK": 10},
        ),
    ]


def _engagement(user: str, item: str, n: int) -> bytes:
    return json.dumps(
        {
            "userId": user,
            "itemId": item,
            "eventType": "view",
            "dwellMs": 10_000,
            "requestId": f"bench-{n}",
            "eventTime": datetime.now(UTC).isoformat(),
        }
    ).encode()


def freshness_lags(
    sent: dict[tuple[str, int], float], arrived: dict[tuple[str, int], float]
) -> list[float]:
    """Seconds from each engagement (user, profile version it makes) being published to the
    first recommendations of that user at that version or later; engagements never answered
    are left out (pure)."""
    by_user: dict[str, list[tuple[int, float]]] = {}
    for (user, version), at in arrived.items():
        by_user.setdefault(user, []).append((version, at))
    # Per user, versions ascending with the earliest arrival among this version and later ones.
    earliest: dict[str, tuple[list[int], list[float]]] = {}
    for user, entries in by_user.items():
        entries.sort()
        suffix = list(itertools.accumulate(reversed([at for _, at in entries]), min))[::-1]
        earliest[user] = ([v for v, _ in entries], suffix)
    lags = []
    for (user, version), at in sent.items():
        versions, first = earliest.get(user, ([], []))
        k = bisect.bisect_left(versions, version)
        if k < len(versions):
            lags.append(first[k] - at)
    return lags


PROFILE_VERSION = re.compile(rb'"(?:profileVersion|version)":\s*(\d+)')
"""The one integer version field of a UserProfile (``version``), Candidates (its profile's
``version``) or Recommendations (``profileVersion``; the model's version is a string)."""


def profile_version(payload: bytes) -> int:
    """The profile version a stage output is for, found without decoding the whole message (a
    Recommendations message is ~90 KB of JSON: decoding 200 a second would take the CPU the
    workers are measured on)."""
    found = PROFILE_VERSION.search(payload)
    if found is None:
        raise ValueError("no profile version in the message")
    return int(found.group(1))


@dataclass(frozen=True)
class Freshness:
    lags_s: dict[str, list[float]]
    """Per stage, the lag of each engagement to that stage's output for it."""
    sent: int
    rate: float
    """Achieved publishing rate, engagements/s."""
    cpu_s: dict[str, float]
    """CPU seconds per engagement of each stage's worker process."""


def measure_freshness_once(
    stack: Any, tmp: Path, rate: float, seconds: float, rng: np.random.Generator
) -> Freshness:
    """The three stages as worker processes on the stack; engagements published at a steady
    ``rate`` for ``seconds``; each one's lag to its user's updated recommendations."""
    from bench.bench_workers import cpu_seconds
    from tests.integration.worker.pipeline import WorkerProcess, client, publish

    base = f"persistent://public/default/bench-fresh-{uuid.uuid4().hex[:8]}"
    catalogue = f"{base}-catalogue"
    c = client(stack)
    items = _catalogue(rng)
    publish(c, catalogue, items)
    configs = _stage_configs(stack, base, catalogue)
    # Arrival of each (user, profile version) on each stage's output topic.
    arrived: list[dict[tuple[str, int], float]] = [{} for _ in configs]

    def listener(hop: int) -> Callable[[pulsar.Consumer, pulsar.Message], None]:
        def on_message(consumer: pulsar.Consumer, message: pulsar.Message) -> None:
            key = (message.partition_key(), profile_version(message.data()))
            arrived[hop].setdefault(key, time.monotonic())
            consumer.acknowledge(message)

        return on_message

    consumers = [
        c.subscribe(config["outputs"][0], "bench-freshness", message_listener=listener(hop))
        for hop, config in enumerate(configs)
    ]
    workers = [WorkerProcess(config, tmp).start() for config in configs]
    producer = c.create_producer(
        configs[0]["input"]["topic"], batching_enabled=False, block_if_queue_full=True
    )
    try:
        for worker in workers:
            worker.wait_started(timeout=180)
        users = [f"user-{uuid.uuid4().hex[:6]}-{k}" for k in range(FRESH_USERS)]
        picks = rng.integers(0, len(items), int(rate * seconds))
        sent: dict[tuple[str, int], float] = {}
        versions: dict[str, int] = {}
        cpu_before = [cpu_seconds(w.proc.pid) for w in workers if w.proc]
        started = time.monotonic()
        for n, pick in enumerate(picks):
            time.sleep(max(0.0, started + n / rate - time.monotonic()))
            user = users[n % len(users)]
            versions[user] = versions.get(user, 0) + 1
            sent[(user, versions[user])] = time.monotonic()
            producer.send_async(_engagement(user, items[pick]["id"], n), None, partition_key=user)
        producer.flush()
        publishing = time.monotonic() - started
        deadline = time.monotonic() + 120
        while len(arrived[-1]) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
        cpu = [
            cpu_seconds(w.proc.pid) - b for w, b in zip(workers, cpu_before, strict=True) if w.proc
        ]
        for worker in workers:
            worker.terminate()
    finally:
        for worker in workers:
            worker.kill()
        for consumer in consumers:
            consumer.close()
        c.close()
    stages = [config["stage"] for config in configs]
    return Freshness(
        lags_s={
            stage: freshness_lags(sent, dict(a)) for stage, a in zip(stages, arrived, strict=True)
        },
        sent=len(sent),
        rate=len(sent) / publishing,
        cpu_s={stage: spent / len(sent) for stage, spent in zip(stages, cpu, strict=True)},
    )


def measure_freshness(rate: float, seconds: float) -> None:
    from streamvane_stack import Stack

    stack = Stack()
    if not stack.is_ready():
        raise typer.BadParameter("the local stack is not running: run `make stack-up`")
    with tempfile.TemporaryDirectory() as tmp:
        run = measure_freshness_once(
            stack.endpoints, Path(tmp), rate, seconds, np.random.default_rng(13)
        )

    def percentiles(lags: list[float]) -> str:
        if not lags:
            return "none"
        p50, p99 = (float(np.percentile(lags, q)) for q in (50, 99))
        return f"{p50:.3f} s / {p99:.3f} s"

    *hops, last = run.lags_s.items()
    table = Table(
        title="freshness: engagement published -> the user's updated recommendations "
        f"(one worker process per stage, {FRESH_USERS} users)"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    cpu = ", ".join(f"{stage} {1000 * spent:.2f}" for stage, spent in run.cpu_s.items())
    for name, value in (
        ("engagements published", f"{run.sent:,} at {run.rate:,.0f}/s (asked {rate:,.0f}/s)"),
        ("answered by updated recommendations", f"{len(last[1]):,}"),
        ("freshness p50 / p99", percentiles(last[1])),
        *((f"  of which to {stage}'s output", percentiles(lags)) for stage, lags in hops),
        ("worker CPU ms per engagement", f"{cpu} (total {1000 * sum(run.cpu_s.values()):.2f})"),
        ("load average (1, 5, 15 min)", " ".join(f"{x:.1f}" for x in os.getloadavg())),
    ):
        table.add_row(name, value)
    Console().print(table)


def main(
    sizes: Annotated[str, typer.Option(help="Catalogue sizes, comma separated.")] = "10000,100000",
    queries: Annotated[int, typer.Option(help="Queries per size.")] = 1000,
    ef: Annotated[int, typer.Option(help="efSearch of the index.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic catalogue.")] = 7,
    ranking: Annotated[
        bool, typer.Option(help="Also ranking stage vs Triton alone (needs the local stack).")
    ] = False,
    rounds: Annotated[int, typer.Option(min=1, help="Ranking rounds (medians shown).")] = 3,
    messages: Annotated[int, typer.Option(min=10, help="Candidates messages per round.")] = 2000,
    freshness: Annotated[
        bool,
        typer.Option(
            help="Also engagement -> updated recommendations latency (needs the local stack)."
        ),
    ] = False,
    rate: Annotated[float, typer.Option(min=1, help="Freshness: engagements per second.")] = 200,
    seconds: Annotated[float, typer.Option(min=1, help="Freshness: seconds of engagements.")] = 30,
) -> None:
    """Retrieval recall@10 against brute force, queries/s per core, adds/s, index size;
    with --ranking, ranking throughput against Triton alone."""
    if ranking:
        measure_ranking(rounds, messages)
    if freshness:
        measure_freshness(rate, seconds)
    if not sizes:
        return
    params = HnswParams(ef_search=ef)
    table = Table(
        title=f"candidate-retrieval index (hnswlib, M={params.m}, efConstruction={params.ef_construction}, ef={ef})"
    )
    for column in (
        "items",
        "recall@10 (median)",
        "recall@10 (mean)",
        "queries/s/core",
        "adds/s",
        "index MiB",
    ):
        table.add_column(column, justify="right")
    for size in (int(s) for s in sizes.split(",")):
        row = measure(size, queries, params, seed)
        table.add_row(
            f"{size:,}",
            f"{row['recall']:.3f}",
            f"{row['recall_mean']:.3f}",
            f"{row['qps']:,.0f}",
            f"{row['adds']:,.0f}",
            f"{row['mib']:.0f}",
        )
    Console().print(table)


if __name__ == "__main__":
    typer.run(main)
