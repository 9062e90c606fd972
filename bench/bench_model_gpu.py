"""Throughput of the all-MiniLM-L6-v2 ONNX build on onnxruntime: CPU vs CUDA (vs TensorRT).

Builds the model from the pinned wheel with the project's own build code, checks that every
accelerated provider matches the CPU output, and prints embeddings/s per batch size (median of
several timed rounds) as a table and as JSON.

    python bench/bench_model_gpu.py --cache ~/.cache/streamvane --out /tmp/bench
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from models.build import build_all  # noqa: E402

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

    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        report = {
            "onnxruntime": ort.__version__,
            "cpu_threads": cpu_threads,
            "agreement_with_cpu": agreement,
            "figures": [asdict(f) for f in figures],
        }
        (out / "bench_model_gpu.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    typer.run(main)
