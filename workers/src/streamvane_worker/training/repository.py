"""Model versions in a Triton model repository on disk: ``<root>/<model>/<version>/``.

A new version is laid out beside the others like the newest one (its other files, such as the
python backend's ``model.py``, copied) with its own ``model.onnx``, in a hidden folder first
and renamed into place, so Triton never reads half a version.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx

from streamvane_worker.training.export import ranker_graph, weights_of
from streamvane_worker.training.mlp import Weights

MODEL_FILE = "model.onnx"


class RepositoryError(ValueError):
    """The repository does not hold what the trainer needs (the model, a version)."""


def versions_in(root: Path, model: str) -> list[int]:
    """The numbered versions of ``model`` with a model file, in order."""
    folder = root / model
    if not folder.is_dir():
        raise RepositoryError(f"model {model!r} is not in the model repository {root}")
    return sorted(
        int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / MODEL_FILE).is_file()
    )


def read_weights(root: Path, model: str, version: int) -> Weights:
    path = root / model / str(version) / MODEL_FILE
    if not path.is_file():
        known = versions_in(root, model)
        raise RepositoryError(f"{model} version {version} is not in {root} (versions: {known})")
    return weights_of(onnx.load_model(str(path)))


def write_version(root: Path, model: str, version: int, weights: Weights) -> Path:
    """Lay out ``version`` with ``weights``, like the newest version there; returns its folder.
    A folder of that number left by an earlier run is replaced."""
    folder = root / model
    known = versions_in(root, model)
    staging = folder / f".{version}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    if known:
        for file in (folder / str(known[-1])).iterdir():
            if file.is_file() and file.name != MODEL_FILE:
                shutil.copy2(file, staging / file.name)
    onnx.save_model(ranker_graph(weights, model), str(staging / MODEL_FILE))
    target = folder / str(version)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
