"""The ranker: training on synthetic pairs, the ONNX graph against the numpy forward pass, its
python-backend model.py, its two Triton configs, and the tensor names the worker sends."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from models import ranker
from models.repository import TEMPLATES
from models.testing import FakeInferenceRequest, fake_pb_utils
from tritonclient.grpc import model_config_pb2 as mc

from streamvane_worker.inference import ranker as worker_ranker
from streamvane_worker.training.export import ranker_graph

MODEL_PY = TEMPLATES / "cpu" / ranker.RANKER_NAME / "1" / "model.py"


@pytest.fixture(scope="module")
def trained() -> ranker.Trained:
    rng = np.random.default_rng(1)
    # Four well separated "categories" of six items each, near-unit vectors.
    centres = np.eye(ranker.DIM, dtype=np.float32)[:4]
    vectors = np.concatenate([c + rng.normal(0, 0.02, (6, ranker.DIM)) for c in centres])
    categories = [f"c{k}" for k in range(4) for _ in range(6)]
    return ranker.train_ranker(vectors.astype(np.float32), categories, users=60)


def _rows(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    user = rng.normal(size=(n, ranker.DIM)).astype(np.float32)
    item = rng.normal(size=(n, ranker.DIM)).astype(np.float32)
    dense = rng.normal(size=(n, len(worker_ranker.DENSE_FEATURES))).astype(np.float32)
    return user, item, dense


def test_train_ranker_beats_retrieval_score_when_taste_drives_engagement(
    trained: ranker.Trained,
) -> None:
    assert trained.holdout_auc > 0.6
    assert trained.holdout_auc >= trained.holdout_cosine_auc - 0.02


def test_ranker_graph_matches_numpy_forward_when_run_on_onnxruntime(
    trained: ranker.Trained,
) -> None:
    model = ranker_graph(trained.weights, ranker.RANKER_NAME)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    user, item, dense = _rows(17)
    (scores,) = session.run([worker_ranker.SCORE], {"user": user, "item": item, "dense": dense})
    np.testing.assert_allclose(
        scores, ranker.forward(trained.weights, user, item, dense), atol=1e-6
    )


def test_python_backend_scores_each_request_like_one_run_when_requests_are_batched(
    trained: ranker.Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "1").mkdir()
    onnx.save_model(
        ranker_graph(trained.weights, ranker.RANKER_NAME), tmp_path / "1" / "model.onnx"
    )
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils())
    spec = importlib.util.spec_from_file_location("ranker_python_backend", MODEL_PY)
    assert spec and spec.loader
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize(
        {"model_config": json.dumps({}), "model_repository": str(tmp_path), "model_version": "1"}
    )
    user, item, dense = _rows(5)
    good = [
        FakeInferenceRequest(user=user[s], item=item[s], dense=dense[s])
        for s in (slice(0, 2), slice(2, 5))
    ]
    bad = FakeInferenceRequest(user=user[:2], item=item[:1], dense=dense[:2])

    first, broken, second = model.execute([good[0], bad, good[1]])

    assert broken.error is not None and "row counts" in broken.error.message()
    expected = ranker.forward(trained.weights, user, item, dense)
    np.testing.assert_allclose(first.output_tensors[0].as_numpy(), expected[:2], atol=1e-6)
    np.testing.assert_allclose(second.output_tensors[0].as_numpy(), expected[2:], atol=1e-6)


def _interface(kind: str) -> tuple[object, ...]:
    text = (TEMPLATES / kind / ranker.RANKER_NAME / "config.pbtxt").read_text()
    config = text_format.Parse(text, mc.ModelConfig())
    tensors = [(t.name, t.data_type, list(t.dims)) for t in [*config.input, *config.output]]
    return config.name, config.max_batch_size, tensors


def test_ranker_configs_declare_the_tensors_the_worker_sends_when_parsed() -> None:
    assert _interface("cpu") == _interface("gpu")
    name, max_batch, tensors = _interface("gpu")
    assert name == ranker.RANKER_NAME and max_batch >= 64
    assert tensors == [
        (worker_ranker.USER, mc.TYPE_FP32, [ranker.DIM]),
        (worker_ranker.ITEM, mc.TYPE_FP32, [ranker.DIM]),
        (worker_ranker.DENSE, mc.TYPE_FP32, [len(worker_ranker.DENSE_FEATURES)]),
        (worker_ranker.SCORE, mc.TYPE_FP32, [1]),
    ]
