"""Recommendation benchmark: candidate retrieval's ANN index against exact search.

For each catalogue size it builds the stage's own ``ItemIndex`` (hnswlib, the params of
``HnswParams``, items added one at a time as the catalogue follower does) over clustered unit
vectors in the 384-d embedding space, then asks it for the top 10 of held-out queries and
compares with exact brute-force inner product on the same vectors:

    recall@10      share of the exact top 10 that the index returned (median over queries)
    queries/s/core single-threaded index queries (the stage queries on one thread)
    add/s          single-threaded incremental adds while building
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

    python -m bench.bench_recs [--sizes 10000,100000] [--queries 1000] [--ef 128]
    python -m bench.bench_recs --sizes "" --ranking [--rounds 3] [--messages 2000]
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
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
    started = time.perf_counter()
    for n, vector in enumerate(items):
        index.upsert(CatalogueItem(str(n), vector, None))
    add_s = time.perf_counter() - started
    found: list[list[str]] = []
    started = time.perf_counter()
    for query in asks:
        found.append([item_id for item_id, _ in index.query(query, K, set())])
    query_s = time.perf_counter() - started
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
) -> None:
    """Retrieval recall@10 against brute force, queries/s per core, adds/s, index size;
    with --ranking, ranking throughput against Triton alone."""
    if ranking:
        measure_ranking(rounds, messages)
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
