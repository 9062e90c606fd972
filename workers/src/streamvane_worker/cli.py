"""The ``streamvane`` console script: tools for checking the model by hand."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Annotated, TextIO

import typer

from streamvane_worker.inference import paths
from streamvane_worker.inference.backend import EmbeddingBackend
from streamvane_worker.inference.embedder import Embedder
from streamvane_worker.inference.errors import InferenceError
from streamvane_worker.inference.onnx import OnnxBackend
from streamvane_worker.inference.tokenizer import TextTokenizer
from streamvane_worker.inference.triton import TritonBackend, TritonTls

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
