"""The python-backend ``model.py`` run outside tritonserver, against a tiny model."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from models.bert import BertConfig
from models.graph import build_encoder
from models.repository import TEMPLATES
from models.testing import FakeInferenceRequest, fake_pb_utils

MODEL_PY = TEMPLATES / "cpu" / "all-minilm-l6-v2" / "1" / "model.py"


@pytest.fixture
def model_py(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils())
    spec = importlib.util.spec_from_file_location("minilm_python_backend", MODEL_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def repository(
    tmp_path: Path, tiny_config: BertConfig, tiny_weights: dict[str, npt.NDArray[np.float32]]
) -> Path:
    (tmp_path / "1").mkdir()
    onnx.save_model(build_encoder(tiny_config, tiny_weights), tmp_path / "1" / "model.onnx")
    return tmp_path


def _args(repository: Path) -> dict[str, Any]:
    config = {"parameters": {"intra_op_thread_count": {"string_value": "1"}}}
    return {
        "model_config": json.dumps(config),
        "model_repository": str(repository),
        "model_version": "1",
    }


def _request(rows: list[list[int]]) -> FakeInferenceRequest:
    seq = max(len(r) for r in rows)
    ids = np.array([r + [0] * (seq - len(r)) for r in rows], dtype=np.int64)
    mask = np.array([[1] * len(r) + [0] * (seq - len(r)) for r in rows], dtype=np.int64)
    return FakeInferenceRequest(input_ids=ids, attention_mask=mask)


def test_execute_matches_single_request_runs_when_requests_have_different_lengths(
    model_py: ModuleType, repository: Path
) -> None:
    model = model_py.TritonPythonModel()
    model.initialize(_args(repository))
    requests = [
        _request([[2, 5, 3]]),
        _request([[2, 6, 7, 8, 9, 10, 3], [2, 3]]),
        _request([[2, 11, 3]]),
    ]

    responses = model.execute(requests)

    session = ort.InferenceSession(
        str(repository / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    for request, response in zip(requests, responses, strict=True):
        assert response.error is None
        feeds = {name: tensor.as_numpy() for name, tensor in request.inputs.items()}
        (alone,) = session.run(["embedding"], feeds)
        (tensor,) = response.output_tensors
        assert tensor.name() == "embedding"
        np.testing.assert_allclose(tensor.as_numpy(), alone, atol=1e-6)


def test_execute_fails_only_bad_request_when_shapes_mismatch(
    model_py: ModuleType, repository: Path
) -> None:
    model = model_py.TritonPythonModel()
    model.initialize(_args(repository))
    bad = FakeInferenceRequest(
        input_ids=np.array([[2, 5, 3]], dtype=np.int64),
        attention_mask=np.array([[1, 1]], dtype=np.int64),
    )
    good = _request([[2, 5, 3]])

    bad_response, good_response = model.execute([bad, good])

    assert "differs" in bad_response.error.message()
    assert good_response.error is None
    assert good_response.output_tensors[0].as_numpy().shape == (1, 16)


def test_pad_and_stack_pads_with_zero_ids_and_mask_when_lengths_differ(
    model_py: ModuleType,
) -> None:
    ones = np.ones((1, 2), dtype=np.int64)
    ids, mask = model_py.pad_and_stack([(ones * 7, ones), (np.full((2, 4), 9), np.ones((2, 4)))])
    assert ids.tolist() == [[7, 7, 0, 0], [9, 9, 9, 9], [9, 9, 9, 9]]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]


def test_split_rows_returns_request_slices_when_batch_was_stacked(model_py: ModuleType) -> None:
    chunks = model_py.split_rows(np.arange(6).reshape(6, 1), [1, 3, 2])
    assert [c.ravel().tolist() for c in chunks] == [[0], [1, 2, 3], [4, 5]]
