"""The ``streamvane`` console script: the stages' models and learners, run by hand."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streamvane_worker.config import PARAMS_BY_STAGE, StageType, TaggingParams
from streamvane_worker.inference import paths
from streamvane_worker.inference.backend import EmbeddingArray, EmbeddingBackend
from streamvane_worker.inference.embedder import Embedder
from streamvane_worker.inference.errors import InferenceError
from streamvane_worker.inference.onnx import OnnxBackend
from streamvane_worker.inference.tokenizer import TextTokenizer
from streamvane_worker.inference.triton import TritonBackend, TritonTls
from streamvane_worker.stages import safety, tagging
from streamvane_worker.stages.scored import Annotator
from streamvane_worker.training.learner import LearnerSettings
from streamvane_worker.training.replay import ReplayError, ReplayResult, ReplaySettings, replay

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Streamvane command-line tools.")


@app.callback()
def _group() -> None:
    """Streamvane command-line tools."""


TritonOption = Annotated[
    str | None,
    typer.Option(
        "--triton",
        metavar="HOST:PORT",
        help="Embed through Triton's gRPC endpoint instead of in-process.",
    ),
]
TritonCaOption = Annotated[
    Path | None,
    typer.Option(
        exists=True,
        dir_okay=False,
        metavar="PEM",
        help="Talk to --triton over TLS, trusting this CA bundle.",
    ),
]
ModelOption = Annotated[str, typer.Option(help="Model name (the cache folder and Triton model).")]
ModelDirOption = Annotated[
    Path | None,
    typer.Option(
        help="Folder holding model.onnx and tokenizer.json [default: $STREAMVANE_CACHE/models/MODEL]."
    ),
]
BatchSizeOption = Annotated[int, typer.Option(min=1, max=64, help="Lines per model call.")]
Render = Callable[[EmbeddingArray], Awaitable[list[str]]]
"""A batch of lines' embeddings [n, dim] -> the line printed for each."""


@app.command()
def embed(
    triton: TritonOption = None,
    triton_ca: TritonCaOption = None,
    model: ModelOption = paths.DEFAULT_MODEL,
    model_dir: ModelDirOption = None,
    batch_size: BatchSizeOption = 32,
) -> None:
    """Embed stdin's lines; print one normalized embedding (JSON array) per line, in order.

    The ONNX model (384-d output) runs in-process unless --triton is given.

    Example: echo "a cat on a mat" | streamvane embed
    """

    async def render(_: Embedder) -> Render:
        async def lines(vectors: EmbeddingArray) -> list[str]:
            return [json.dumps(vector.tolist()) for vector in vectors]

        return lines

    _run_lines("embed", _embedder(triton, triton_ca, model, model_dir), render, batch_size)


@app.command()
def classify(
    stage_file: Annotated[
        Path,
        typer.Option(
            "--stage",
            exists=True,
            dir_okay=False,
            metavar="FILE.yaml",
            help="A tagging or safety stage as in a Pipeline (type, params), or a Pipeline holding one.",
        ),
    ],
    examples_file: Annotated[
        Path | None,
        typer.Option(
            "--examples",
            exists=True,
            dir_okay=False,
            metavar="FILE.jsonl",
            help="Labelled texts, one JSON object per line: text, label (a label or category name; "
            "'benign' for safety's calibration). Added to the stage's examples.",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Which stage, when the file holds several.")
    ] = None,
    triton: TritonOption = None,
    triton_ca: TritonCaOption = None,
    model: ModelOption = paths.DEFAULT_MODEL,
    model_dir: ModelDirOption = None,
    batch_size: BatchSizeOption = 32,
) -> None:
    """Score stdin's lines as a tagging or safety stage would; print one JSON object per line,
    in order, with the field the stage attaches (tags, or safety).

    Same params as the stage (zero-shot or classifier mode, examples, margin, calibration);
    what was set up at start (calibrated thresholds and their false-positive rates) goes to
    stderr. A blank line prints {"error": "no-text"}, as the stage dead-letters an item without
    text.

    Example: echo "win a free phone" | streamvane classify --stage safety.yaml
    """
    try:
        stage_type, params = stage_params(yaml.safe_load(stage_file.read_text()), name)
        if examples_file is not None:
            params = CLASSIFIERS[stage_type].with_examples(params, read_labelled(examples_file))
        if isinstance(params, TaggingParams) and params.head_model is not None:
            raise ValueError(
                "params.headModel is a head served on Triton, which classify does not call: "
                "without it, classifier mode trains the head on the labels' examples here"
            )
    except (ValueError, yaml.YAMLError) as e:
        typer.echo(f"streamvane classify: {e}", err=True)
        raise typer.Exit(2) from e

    async def render(embedder: Embedder) -> Render:
        annotator: Annotator = await CLASSIFIERS[stage_type].annotator(params, embedder)
        typer.echo(json.dumps(to_jsonable_python(annotator.summary)), err=True)

        async def lines(vectors: EmbeddingArray) -> list[str]:
            fields = await annotator.fields(vectors)
            return [json.dumps(to_jsonable_python(f, by_alias=True)) for f in fields]

        return lines

    _run_lines(
        "classify", _embedder(triton, triton_ca, model, model_dir), render, batch_size, NO_TEXT
    )


@dataclass(frozen=True)
class Classifier:
    """What ``classify`` needs of a stage type (its module's functions)."""

    with_examples: Callable[[Any, dict[str, list[str]]], BaseModel]
    annotator: Callable[[Any, Embedder], Awaitable[Annotator]]


CLASSIFIERS = {
    StageType.TAGGING: Classifier(tagging.with_examples, tagging.annotator),
    StageType.SAFETY: Classifier(safety.with_examples, safety.annotator),
}


def stage_params(document: Any, name: str | None) -> tuple[StageType, BaseModel]:
    """The stage type and validated params of a stage document, or of the one tagging or
    safety stage of a Pipeline document (the one called ``name``, when given)."""
    if not isinstance(document, dict):
        raise ValueError("the stage file must hold a mapping: a stage (type, params) or a Pipeline")
    stages = document.get("spec", {}).get("stages") if "spec" in document else [document]
    candidates = [
        s
        for s in stages or []
        if isinstance(s, dict) and s.get("type") in CLASSIFIERS and name in (None, s.get("name"))
    ]
    if not candidates:
        raise ValueError(
            f"no {' or '.join(CLASSIFIERS)} stage found" + (f" named {name!r}" if name else "")
        )
    if len(candidates) > 1:
        raise ValueError(f"{len(candidates)} tagging or safety stages found; pick one with --name")
    stage = candidates[0]
    stage_type = StageType(stage["type"])
    return stage_type, PARAMS_BY_STAGE[stage_type].model_validate(stage.get("params") or {})


def read_labelled(path: Path) -> dict[str, list[str]]:
    """Texts by label of a JSONL file of {text, label} objects."""
    by_label: dict[str, list[str]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            example = LabelledText.model_validate_json(line)
        except ValueError as e:
            raise ValueError(
                f"{path.name} line {number}: not a {{text, label}} object ({e})"
            ) from e
        by_label.setdefault(example.label, []).append(example.text)
    return by_label


class LabelledText(BaseModel):
    model_config = ConfigDict(extra="ignore")
    text: str = Field(min_length=1)
    label: str = Field(min_length=1)


def _embedder(
    triton: str | None, triton_ca: Path | None, model: str, model_dir: Path | None
) -> Callable[[], Embedder]:
    folder = model_dir or paths.model_dir(model)

    def make() -> Embedder:
        tokenizer = TextTokenizer(folder / "tokenizer.json")
        backend: EmbeddingBackend = (
            TritonBackend(triton, model, tls=TritonTls(triton_ca) if triton_ca else None)
            if triton
            else OnnxBackend(folder / "model.onnx", model)
        )
        return Embedder(tokenizer, backend)

    return make


def _run_lines(
    command: str,
    make: Callable[[], Embedder],
    render: Callable[[Embedder], Awaitable[Render]],
    batch_size: int,
    blank: str | None = None,
) -> None:
    """Embed stdin's lines in batches and print ``render``'s line for each, in order; with
    ``blank``, a blank line prints it instead of being embedded."""
    try:
        asyncio.run(_embed_stream(make(), sys.stdin, sys.stdout, render, batch_size, blank))
    except InferenceError as e:
        typer.echo(f"streamvane {command}: {e}", err=True)
        raise typer.Exit(1) from e


async def _embed_stream(
    embedder: Embedder,
    lines: TextIO,
    out: TextIO,
    render: Callable[[Embedder], Awaitable[Render]],
    batch_size: int,
    blank: str | None,
) -> None:
    await embedder.start()
    try:
        line_out = await render(embedder)
        for chunk in _chunks((line.rstrip("\n") for line in lines), batch_size):
            embedded = [text for text in chunk if blank is None or text.strip()]
            rendered: Iterator[str] = iter(
                await line_out((await embedder.embed(embedded)).vectors) if embedded else []
            )
            for text in chunk:
                printed = blank if blank is not None and not text.strip() else next(rendered)
                out.write(printed + "\n")
            out.flush()
    finally:
        await embedder.close()


NO_TEXT = json.dumps({"error": "no-text"})


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
