"""Triton model repositories: the committed configs under ``models/triton/<kind>/`` plus the
built ``model.onnx`` in each model's version folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

import structlog

from models.source import sha256_file

log = structlog.get_logger(__name__)

TEMPLATES = Path(__file__).parent / "triton"
MODEL_VERSION = "1"
Kind = Literal["cpu", "gpu"]


def write_if_changed(path: Path, data: bytes) -> None:
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _link_file(source: Path, target: Path) -> None:
    """Hard-link a file (same cache, no second copy of a 90 MB model), copying across filesystems."""
    if target.is_file() and (
        os.path.samefile(source, target) or sha256_file(source) == sha256_file(target)
    ):
        return
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    tmp.replace(target)


def mirror_repository(source: Path, target: Path) -> None:
    """Lay out ``target`` with ``source``'s files, hard-linked: a writable repository of its
    own for one Triton (new model versions go into it) at no copy of the models. Versions
    written into ``target`` earlier stay; the files of ``source`` win."""
    for src in sorted(source.rglob("*")):
        if src.is_file() and "__pycache__" not in src.parts:
            dst = target / src.relative_to(source)
            dst.parent.mkdir(parents=True, exist_ok=True)
            _link_file(src, dst)


def assemble_repository(
    kind: Kind, model_name: str, model_onnx: Path, root: Path, template: str | None = None
) -> Path:
    """Lay out ``root/<model_name>`` from the ``kind`` template of ``template`` (default: the
    model's own; another model's config is renamed); returns that model folder."""
    source = TEMPLATES / kind / (template or model_name)
    target = root / model_name
    for src in sorted(source.rglob("*")):
        if src.is_file() and "__pycache__" not in src.parts:
            data = src.read_bytes()
            if src.name == "config.pbtxt" and template is not None:
                data = data.replace(
                    f'name: "{template}"'.encode(), f'name: "{model_name}"'.encode()
                )
            write_if_changed(target / src.relative_to(source), data)
    version_dir = target / MODEL_VERSION
    version_dir.mkdir(parents=True, exist_ok=True)
    _link_file(model_onnx, version_dir / "model.onnx")
    log.info("triton_repository_ready", kind=kind, path=str(target))
    return target
