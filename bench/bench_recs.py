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

    python -m bench.bench_recs [--sizes 10000,100000] [--queries 1000] [--ef 128]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import numpy.typing as npt
import typer
from rich.console import Console
from rich.table import Table

from streamvane_worker.config import HnswParams
from streamvane_worker.inference.backend import EMBEDDING_DIM
from streamvane_worker.stages.candidate_retrieval import INDEX_FILE, ItemIndex
from streamvane_worker.stages.catalogue import CatalogueItem

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


def main(
    sizes: Annotated[str, typer.Option(help="Catalogue sizes, comma separated.")] = "10000,100000",
    queries: Annotated[int, typer.Option(help="Queries per size.")] = 1000,
    ef: Annotated[int, typer.Option(help="efSearch of the index.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic catalogue.")] = 7,
) -> None:
    """Retrieval recall@10 against brute force, queries/s per core, adds/s, index size."""
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
