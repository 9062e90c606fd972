from __future__ import annotations

import os
from pathlib import Path

from models.repository import TEMPLATES, assemble_repository

MODEL = "all-minilm-l6-v2"


def test_assemble_repository_copies_template_and_links_model_when_target_is_empty(
    tmp_path: Path,
) -> None:
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"onnx")
    model_dir = assemble_repository("cpu", MODEL, onnx_file, tmp_path / "repo")
    template = TEMPLATES / "cpu" / MODEL
    assert (model_dir / "config.pbtxt").read_bytes() == (template / "config.pbtxt").read_bytes()
    assert (model_dir / "1" / "model.py").read_bytes() == (template / "1" / "model.py").read_bytes()
    assert os.path.samefile(model_dir / "1" / "model.onnx", onnx_file)


def test_assemble_repository_leaves_files_untouched_when_already_current(tmp_path: Path) -> None:
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"onnx")
    model_dir = assemble_repository("gpu", MODEL, onnx_file, tmp_path / "repo")
    stamps = {p: p.stat().st_mtime_ns for p in model_dir.rglob("*") if p.is_file()}
    assemble_repository("gpu", MODEL, onnx_file, tmp_path / "repo")
    assert stamps == {p: p.stat().st_mtime_ns for p in model_dir.rglob("*") if p.is_file()}


def test_assemble_repository_replaces_model_when_build_changed(tmp_path: Path) -> None:
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"old")
    model_dir = assemble_repository("gpu", MODEL, onnx_file, tmp_path / "repo")
    onnx_file.unlink()
    onnx_file.write_bytes(b"new")  # a rebuild writes a new file, breaking the hard link
    assemble_repository("gpu", MODEL, onnx_file, tmp_path / "repo")
    assert (model_dir / "1" / "model.onnx").read_bytes() == b"new"


def test_a_model_laid_out_from_another_models_template_is_renamed_in_its_config(
    tmp_path: Path,
) -> None:
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"onnx")
    model_dir = assemble_repository(
        "cpu", "label-head", onnx_file, tmp_path / "repo", "recs-ranker"
    )
    config = (model_dir / "config.pbtxt").read_text()
    assert 'name: "label-head"' in config and 'name: "recs-ranker"' not in config
    assert (model_dir / "1" / "model.py").is_file()
