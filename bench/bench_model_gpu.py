"""Throughput of the all-MiniLM-L6-v2 ONNX build on onnxruntime: CPU vs CUDA (vs TensorRT).

Builds the model from the pinned wheel with the project's own build code, checks that every
accelerated provider matches the CPU output, and prints embeddings/s per batch size (median of
several timed rounds) as a table and as JSON.

With ``--buckets 16,32,64,128,256`` it also measures what sequence-length buckets
(``inference.sequenceBuckets``, padded by the worker's own ``pad_to_bucket``) do on each
provider: a stream of ``--requests`` requests of ``--request-rows`` texts of mixed lengths
(8 to 128 tokens) is run (a) each request at its own longest length, one model call per
request, which is all Triton's onnxruntime backend can do when shapes differ, and (b) padded
to the buckets, requests of equal shape merged up to ``--max-batch`` rows per call, as Triton's
dynamic batcher merges equal shapes. Needs ``tokenizers`` (imported by the worker's tokenizer
module) besides onnxruntime.

    python bench/bench_model_gpu.py --cache ~/.cache/streamvane --out /tmp/bench
    python bench/bench_model_gpu.py --cache ~/.cache/streamvane --batch-sizes 64 \
        --buckets 16,32,64,128,256
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import typer

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "workers" / "src")]  # run as a script from anywhere

from models.build import build_all  # noqa: E402

from streamvane_worker.inference.tokenizer import Encoded, pad_to_bucket  # noqa: E402

Feeds = dict[str, npt.NDArray[np.int64]]


@dataclass(frozen=True)
class Figure:
    provider: str
    batch_size: int
    seq_len: int
    embeddings_per_s: float
    """Median over rounds."""
    ms_per_batch: float
    rounds: list[float]
    """embeddings/s of each timed round."""


def _providers(cpu_threads: int) -> dict[str, tuple[list[str | tuple[str, dict[str, str]]], int]]:
    available = ort.get_available_providers()
    chosen: dict[str, tuple[list[str | tuple[str, dict[str, str]]], int]] = {
        "cpu": (["CPUExecutionProvider"], cpu_threads)
    }
    if "CUDAExecutionProvider" in available:
        chosen["cuda"] = (["CUDAExecutionProvider", "CPUExecutionProvider"], 1)
    if "TensorrtExecutionProvider" in available:
        trt = ("TensorrtExecutionProvider", {"trt_fp16_enable": "1"})
        chosen["tensorrt-fp16"] = ([trt, "CUDAExecutionProvider", "CPUExecutionProvider"], 1)
    return chosen


def _session(
    model: Path, providers: list[str | tuple[str, dict[str, str]]], threads: int
) -> ort.InferenceSession | None:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(model), options, providers=providers)
    except Exception as e:  # a provider whose libraries are missing fails here
        print(f"skipping {providers[0]}: {e}", file=sys.stderr)
        return None
    wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
    if session.get_providers()[0] != wanted:
        print(f"skipping {wanted}: session fell back to {session.get_providers()}", file=sys.stderr)
        return None
    return session


def _feeds(batch: int, seq: int, rng: np.random.Generator) -> Feeds:
    # Ordinary WordPiece ids between [CLS] and [SEP]; every third row padded to 3/4 length.
    ids = rng.integers(1000, 30000, size=(batch, seq), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = np.ones((batch, seq), dtype=np.int64)
    mask[::3, seq * 3 // 4 :] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _run(session: ort.InferenceSession, feeds: Feeds) -> npt.NDArray[np.float32]:
    return np.asarray(session.run(["embedding"], feeds)[0])


def _measure(
    session: ort.InferenceSession, feeds: Feeds, rounds: int, min_seconds: float
) -> list[float]:
    batch = feeds["input_ids"].shape[0]
    for _ in range(5):
        _run(session, feeds)
    rates = []
    for _ in range(rounds):
        runs, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < min_seconds or runs < 3:
            _run(session, feeds)
            runs += 1
        rates.append(batch * runs / elapsed)
    return rates


def _requests(count: int, rows: int, rng: np.random.Generator) -> list[Feeds]:
    """Requests of mixed lengths, each padded to its own longest text, as the worker sends."""
    requests = []
    for _ in range(count):
        lengths = rng.integers(8, 129, size=rows)
        feeds = _feeds(rows, int(lengths.max()), rng)
        feeds["attention_mask"] = (np.arange(lengths.max()) < lengths[:, None]).astype(np.int64)
        feeds["input_ids"][feeds["attention_mask"] == 0] = 0
        requests.append(feeds)
    return requests


def _merged(requests: list[Feeds], buckets: tuple[int, ...], max_batch: int) -> list[Feeds]:
    """Pad each request to its bucket, then merge equal shapes up to ``max_batch`` rows."""
    by_shape: dict[int, list[Encoded]] = {}
    for feeds in requests:
        padded = pad_to_bucket(Encoded(feeds["input_ids"], feeds["attention_mask"]), buckets)
        by_shape.setdefault(padded.input_ids.shape[1], []).append(padded)
    calls = []
    for group in by_shape.values():
        ids = np.concatenate([e.input_ids for e in group])
        mask = np.concatenate([e.attention_mask for e in group])
        for start in range(0, len(ids), max_batch):
            end = start + max_batch
            calls.append({"input_ids": ids[start:end], "attention_mask": mask[start:end]})
    return calls


def _stream_rate(session: ort.InferenceSession, calls: list[Feeds], rounds: int) -> float:
    """Texts/s over all ``calls``, median of ``rounds`` passes after one warm-up pass."""
    texts = sum(len(c["input_ids"]) for c in calls)
    rates = []
    for _ in range(rounds + 1):
        start = time.perf_counter()
        for feeds in calls:
            _run(session, feeds)
        rates.append(texts / (time.perf_counter() - start))
    return statistics.median(rates[1:])


def main(
    cache: Annotated[
        Path, typer.Option(help="Cache holding downloads/<wheel>; the build goes here too.")
    ],
    out: Annotated[Path | None, typer.Option(help="Folder for bench_model_gpu.json.")] = None,
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,8,32,64",
    seq_len: Annotated[int, typer.Option(help="Tokens per row, [CLS] and [SEP] included.")] = 128,
    rounds: Annotated[
        int, typer.Option(help="Timed rounds per point; the median is reported.")
    ] = 5,
    min_seconds: Annotated[float, typer.Option(help="Minimum length of one timed round.")] = 1.0,
    cpu_threads: Annotated[
        int, typer.Option(help="onnxruntime intra-op threads on CPU.")
    ] = os.cpu_count() or 1,
    buckets: Annotated[
        str, typer.Option(help="Also compare sequence-length buckets (comma separated).")
    ] = "",
    requests: Annotated[int, typer.Option(help="Requests in the bucket comparison.")] = 256,
    request_rows: Annotated[int, typer.Option(help="Texts per request.")] = 8,
    max_batch: Annotated[int, typer.Option(help="Rows per merged model call.")] = 64,
) -> None:
    model = build_all(cache).model_onnx
    print(f"onnxruntime {ort.__version__}, providers {ort.get_available_providers()}")
    rng = np.random.default_rng(0)
    sessions = {
        name: s
        for name, (providers, threads) in _providers(cpu_threads).items()
        if (s := _session(model, providers, threads)) is not None
    }

    check = _feeds(16, seq_len, rng)
    expected = _run(sessions["cpu"], check)
    agreement = {}
    for name, session in sessions.items():
        got = _run(session, check)
        cosine = (got * expected).sum(axis=1) / (
            np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1)
        )
        agreement[name] = {
            "max_abs_diff": float(np.abs(got - expected).max()),
            "min_cosine": float(cosine.min()),
        }
        print(f"{name:14s} vs cpu: max |diff| {agreement[name]['max_abs_diff']:.2e}, "
              f"min cosine {agreement[name]['min_cosine']:.6f}")  # fmt: skip

    figures = []
    print(f"\n{'provider':14s} {'batch':>5s} {'seq':>4s} {'emb/s':>10s} {'ms/batch':>9s}")
    for batch in (int(b) for b in batch_sizes.split(",")):
        feeds = _feeds(batch, seq_len, rng)
        for name, session in sessions.items():
            rates = _measure(session, feeds, rounds, min_seconds)
            median = statistics.median(rates)
            figures.append(Figure(name, batch, seq_len, median, 1000 * batch / median, rates))
            print(f"{name:14s} {batch:5d} {seq_len:4d} {median:10.1f} {1000 * batch / median:9.2f}")

    bucket_figures: dict[str, dict[str, float]] = {}
    if buckets:
        chosen = tuple(int(b) for b in buckets.split(","))
        stream = _requests(requests, request_rows, rng)
        merged = _merged(stream, chosen, max_batch)
        print(f"\n{requests} requests x {request_rows} texts of 8-128 tokens; buckets {chosen}")
        print(f"{'provider':14s} {'own shape/s':>12s} {'buckets/s':>10s} {'ratio':>6s}")
        for name, session in sessions.items():
            own, bucketed = (
                _stream_rate(session, stream, rounds),
                _stream_rate(session, merged, rounds),
            )
            bucket_figures[name] = {"own_shape": own, "buckets": bucketed}
            print(f"{name:14s} {own:12.1f} {bucketed:10.1f} {bucketed / own:6.2f}")

    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        report = {
            "onnxruntime": ort.__version__,
            "cpu_threads": cpu_threads,
            "agreement_with_cpu": agreement,
            "figures": [asdict(f) for f in figures],
            "buckets": {"buckets": buckets, "texts_per_s": bucket_figures},
        }
        (out / "bench_model_gpu.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    typer.run(main)
