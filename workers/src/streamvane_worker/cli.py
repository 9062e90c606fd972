"""The ``streamvane`` console script: the stages' models and learners, run by hand."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streamvane_worker.inference import paths
from streamvane_worker.inference.backend import EmbeddingBackend
from streamvane_worker.inference.embedder import Embedder
from streamvane_worker.inference.errors import InferenceError
from streamvane_worker.inference.onnx import OnnxBackend
from streamvane_worker.inference.tokenizer import TextTokenizer
from streamvane_worker.inference.triton import TritonBackend, TritonTls
from streamvane_worker.training.learner import LearnerSettings
from streamvane_worker.training.replay import ReplayError, ReplayResult, ReplaySettings, replay

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Streamvane command-line tools.")


@app.callback()
def _group() -> None:
    """Streamvane command-line tools."""


@app.command()
def embed(
    triton: Annotated[
        str | None,
        typer.Option(
            "--triton",
            metavar="HOST:PORT",
            help="Embed through Triton's gRPC endpoint instead of in-process.",
        ),
    ] = None,
    triton_ca: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            metavar="PEM",
            help="Talk to --triton over TLS, trusting this CA bundle.",
        ),
    ] = None,
    model: Annotated[
        str, typer.Option(help="Model name (the cache folder and Triton model).")
    ] = paths.DEFAULT_MODEL,
    model_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder holding model.onnx and tokenizer.json [default: $STREAMVANE_CACHE/models/MODEL]."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=64, help="Lines per model call.")] = 32,
) -> None:
    """Embed stdin's lines; print one normalized embedding (JSON array) per line, in order.

    The ONNX model (384-d output) runs in-process unless --triton is given.

    Example: echo "a cat on a mat" | streamvane embed
    """
    folder = model_dir or paths.model_dir(model)
    try:
        tokenizer = TextTokenizer(folder / "tokenizer.json")
        backend: EmbeddingBackend = (
            TritonBackend(triton, model, tls=TritonTls(triton_ca) if triton_ca else None)
            if triton
            else OnnxBackend(folder / "model.onnx", model)
        )
        asyncio.run(_embed_stream(Embedder(tokenizer, backend), sys.stdin, sys.stdout, batch_size))
    except InferenceError as e:
        typer.echo(f"streamvane embed: {e}", err=True)
        raise typer.Exit(1) from e


async def _embed_stream(embedder: Embedder, lines: TextIO, out: TextIO, batch_size: int) -> None:
    await embedder.start()
    try:
        for chunk in _chunks((line.rstrip("\n") for line in lines), batch_size):
            embedded = await embedder.embed(chunk)
            for vector in embedded.vectors:
                out.write(json.dumps(vector.tolist()) + "\n")
            out.flush()
    finally:
        await embedder.close()


def _chunks(lines: Iterator[str], size: int) -> Iterator[list[str]]:
    while chunk := list(islice(lines, size)):
        yield chunk


@app.command()
def train(
    replay_file: Annotated[
        Path,
        typer.Option(
            "--replay",
            exists=True,
            dir_okay=False,
            metavar="FILE.jsonl",
            help="Training examples, one JSON object per line: label (0/1), ts (ms), features.",
        ),
    ],
    warmup: Annotated[
        int,
        typer.Option(
            min=0,
            help="Examples learned before the frozen copy is taken; both are compared on the rest.",
        ),
    ] = ReplaySettings.warmup,
    window: Annotated[
        int, typer.Option(min=1, help="Examples per row of the AUC-over-time table.")
    ] = ReplaySettings.window,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Examples per learning step.")
    ] = ReplaySettings.batch_size,
    learning_rate: Annotated[
        float, typer.Option(min=0.0, help="Adam's step size.")
    ] = LearnerSettings.learning_rate,
    hidden: Annotated[
        int, typer.Option(min=1, help="Hidden units of the MLP.")
    ] = LearnerSettings.hidden,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights.")] = LearnerSettings.seed,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object at the end instead of tables.")
    ] = False,
) -> None:
    """Replay a file of training examples through the online learner the online-training stage
    uses, in file order, and print progressive AUC over time for the online model and for the
    same model frozen after --warmup examples.

    Progressive AUC: each mini-batch is scored before the online model learns from it.
    Features: numbers, or lists of numbers; `user` and `item` vectors of one width are crossed
    as the ranker does. Lines that are not valid examples are skipped and counted.

    Example: streamvane train --replay examples.jsonl --warmup 5000 --json
    """
    settings = ReplaySettings(
        warmup=warmup,
        window=window,
        batch_size=batch_size,
        learner=LearnerSettings(hidden=hidden, learning_rate=learning_rate, seed=seed),
    )
    err = Console(stderr=True)
    try:
        with replay_file.open() as lines, _progress(err, replay_file, quiet=as_json) as advance:
            result = replay(lines, settings, advance)
    except ReplayError as e:
        typer.echo(f"streamvane train: {e}", err=True)
        raise typer.Exit(1) from e
    if as_json:
        typer.echo(json.dumps(result.summary()))
    else:
        _print_replay(Console(), result)
    if result.skipped.count:
        err.print(
            f"skipped {result.skipped.count} invalid lines, e.g. "
            + "; ".join(result.skipped.reasons)
        )


@contextmanager
def _progress(console: Console, path: Path, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar over the file's examples (its lines, counted first) on stderr."""
    if quiet or not console.is_terminal:
        yield lambda _: None
        return
    with path.open("rb") as f:
        total = sum(1 for line in f if line.strip())
    columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("replay", total=total)
        yield lambda done: bar.update(task, completed=done)


def _print_replay(console: Console, result: ReplayResult) -> None:
    table = Table(title=f"progressive AUC over time, after a warm-up of {result.warmup} examples")
    for column in (
        "examples",
        "first ts",
        "last ts",
        "positives",
        "online AUC",
        "frozen AUC",
        "online - frozen",
    ):
        table.add_column(column, justify="right")
    done = result.warmup
    for w in result.windows:
        done += w.examples
        table.add_row(
            f"{done:,}",
            str(w.first_ts),
            str(w.last_ts),
            f"{w.positives:,}",
            f"{w.online_auc:.4f}",
            f"{w.frozen_auc:.4f}",
            f"{w.online_auc - w.frozen_auc:+.4f}",
        )
    console.print(table)
    console.print(
        f"{result.examples:,} examples ({result.layout}); after the warm-up: "
        f"online AUC {result.online_auc:.4f}, frozen AUC {result.frozen_auc:.4f}"
    )
