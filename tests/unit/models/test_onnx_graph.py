from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from models import graph
from models.bert import BertConfig
from models.reference import encode

Weights = dict[str, npt.NDArray[np.float32]]


@pytest.fixture(scope="module")
def session(tiny_config: BertConfig, tiny_weights: Weights) -> ort.InferenceSession:
    model = graph.build_encoder(tiny_config, tiny_weights)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _batch(rows: list[list[int]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    seq = max(len(r) for r in rows)
    ids = np.array([r + [0] * (seq - len(r)) for r in rows], dtype=np.int64)
    mask = np.array([[1] * len(r) + [0] * (seq - len(r)) for r in rows], dtype=np.int64)
    return ids, mask


def _run(
    session: ort.InferenceSession, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    (out,) = session.run([graph.EMBEDDING], {graph.INPUT_IDS: ids, graph.ATTENTION_MASK: mask})
    return np.asarray(out)


def test_build_encoder_matches_numpy_reference_when_batch_is_padded(
    session: ort.InferenceSession, tiny_config: BertConfig, tiny_weights: Weights
) -> None:
    ids, mask = _batch([[2, 7, 8, 9, 3], [2, 5, 3], [2, 10, 11, 12, 13, 14, 6, 3], [2, 3]])
    onnx_out = _run(session, ids, mask)
    ref = encode(tiny_config, tiny_weights, ids, mask)
    assert onnx_out.dtype == np.float32
    assert onnx_out.shape == (4, tiny_config.hidden_size)
    np.testing.assert_allclose(onnx_out, ref, atol=1e-5)


def test_build_encoder_ignores_padding_when_rows_are_padded_further(
    session: ort.InferenceSession,
) -> None:
    ids, mask = _batch([[2, 7, 8, 3]])
    padded_ids, padded_mask = _batch([[2, 7, 8, 3], [2] * 12])
    np.testing.assert_allclose(
        _run(session, ids, mask)[0], _run(session, padded_ids, padded_mask)[0], atol=1e-6
    )


def test_build_encoder_outputs_unit_vectors_when_run(session: ort.InferenceSession) -> None:
    ids, mask = _batch([[2, 9, 3], [2, 4, 4, 4, 3]])
    np.testing.assert_allclose(np.linalg.norm(_run(session, ids, mask), axis=1), 1.0, atol=1e-6)


def test_build_encoder_declares_dynamic_int64_inputs_when_built(
    tiny_config: BertConfig, tiny_weights: Weights
) -> None:
    model = graph.build_encoder(tiny_config, tiny_weights)

    def signature(values: list[onnx.ValueInfoProto]) -> list[tuple[str, int, list[str | int]]]:
        return [
            (
                v.name,
                v.type.tensor_type.elem_type,
                [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
            )
            for v in values
        ]

    assert signature(list(model.graph.input)) == [
        ("input_ids", onnx.TensorProto.INT64, ["batch", "sequence"]),
        ("attention_mask", onnx.TensorProto.INT64, ["batch", "sequence"]),
    ]
    assert signature(list(model.graph.output)) == [
        ("embedding", onnx.TensorProto.FLOAT, ["batch", tiny_config.hidden_size])
    ]
    assert model.opset_import[0].version == graph.OPSET
    assert model.ir_version == graph.IR_VERSION
