"""ONNX graph of a BERT sentence encoder: token ids -> mean-pooled, L2-normalised embedding.

The graph is written node by node with ``onnx.helper`` from the safetensors weights, so the
build needs neither torch nor a model hub. Inputs are ``input_ids`` and ``attention_mask``
(INT64 ``[batch, sequence]``, both axes dynamic); the output is ``embedding`` (FP32
``[batch, hidden]``). Token type ids are all zero for single sentences, so the type-0 row is
added as a constant.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.bert import BertConfig, Weights

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
EMBEDDING = "embedding"
OPSET = 17
# IR 8 is what opset 17 shipped with: older onnxruntime builds (Triton's backend) load it.
IR_VERSION = 8
# Additive bias on padded positions, as in the original BERT; unlike float32's min it stays
# finite in FP16, which TensorRT uses in production.
MASK_BIAS = -10000.0
# sentence-transformers clamps the token count, torch's F.normalize clamps the norm.
POOL_EPS = 1e-9
NORM_EPS = 1e-12


class _Builder:
    """Accumulates nodes and initializers; every node output is named after its node."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value: npt.ArrayLike, dtype: npt.DTypeLike = np.float32) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name


def _dense(b: _Builder, x: str, weights: Weights, prefix: str) -> str:
    # torch Linear stores [out, in]; MatMul wants [in, out].
    w = b.const(f"{prefix}.weight_t", weights[f"{prefix}.weight"].T)
    bias = b.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
    return b.op("Add", [b.op("MatMul", [x, w], f"{prefix}/matmul"), bias], f"{prefix}/out")


def _layer_norm(b: _Builder, x: str, weights: Weights, prefix: str, eps: float) -> str:
    gamma = b.const(f"{prefix}.weight", weights[f"{prefix}.weight"])
    beta = b.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
    return b.op("LayerNormalization", [x, gamma, beta], f"{prefix}/out", axis=-1, epsilon=eps)


def _embeddings(b: _Builder, config: BertConfig, weights: Weights) -> str:
    words = b.op(
        "Gather",
        [b.const("word_embeddings", weights["embeddings.word_embeddings.weight"]), INPUT_IDS],
        "embeddings/words",
    )
    seq_len = b.op("Shape", [INPUT_IDS], "embeddings/seq_len", start=1, end=2)
    positions = b.op(
        "Slice",
        [
            b.const("position_embeddings", weights["embeddings.position_embeddings.weight"]),
            b.const("embeddings/zero", [0], np.int64),
            seq_len,
            b.const("embeddings/axis0", [0], np.int64),
        ],
        "embeddings/positions",
    )
    type0 = b.const("token_type0_embedding", weights["embeddings.token_type_embeddings.weight"][0])
    summed = b.op(
        "Add",
        [b.op("Add", [words, positions], "embeddings/words_positions"), type0],
        "embeddings/sum",
    )
    return _layer_norm(b, summed, weights, "embeddings.LayerNorm", config.layer_norm_eps)


def _attention_bias(b: _Builder) -> tuple[str, str]:
    """Returns the float mask [B, S] and the additive attention bias [B, 1, 1, S]."""
    mask = b.op("Cast", [ATTENTION_MASK], "mask/float", to=TensorProto.FLOAT)
    padded = b.op("Sub", [b.const("mask/one", 1.0), mask], "mask/padded")
    bias = b.op("Mul", [padded, b.const("mask/bias", MASK_BIAS)], "mask/bias_2d")
    axes = b.const("mask/axes12", [1, 2], np.int64)
    return mask, b.op("Unsqueeze", [bias, axes], "mask/bias_4d")


def _split_heads(b: _Builder, x: str, config: BertConfig, perm: list[int], name: str) -> str:
    shape = b.const(f"{name}/shape", [0, 0, config.num_attention_heads, config.head_size], np.int64)
    return b.op("Transpose", [b.op("Reshape", [x, shape], f"{name}/heads")], name, perm=perm)


def _self_attention(
    b: _Builder, x: str, bias: str, config: BertConfig, weights: Weights, prefix: str
) -> str:
    q = _split_heads(
        b, _dense(b, x, weights, f"{prefix}.query"), config, [0, 2, 1, 3], f"{prefix}/q"
    )
    # K goes straight to [B, heads, head_size, S] so Q @ K needs no extra transpose.
    k = _split_heads(b, _dense(b, x, weights, f"{prefix}.key"), config, [0, 2, 3, 1], f"{prefix}/k")
    v = _split_heads(
        b, _dense(b, x, weights, f"{prefix}.value"), config, [0, 2, 1, 3], f"{prefix}/v"
    )
    scores = b.op("MatMul", [q, k], f"{prefix}/scores")
    scale = b.const(f"{prefix}/scale", math.sqrt(config.head_size))
    scaled = b.op("Div", [scores, scale], f"{prefix}/scaled")
    probs = b.op(
        "Softmax", [b.op("Add", [scaled, bias], f"{prefix}/masked")], f"{prefix}/probs", axis=-1
    )
    context = b.op("MatMul", [probs, v], f"{prefix}/context")
    merged = b.op("Transpose", [context], f"{prefix}/context_t", perm=[0, 2, 1, 3])
    shape = b.const(f"{prefix}/merged_shape", [0, 0, config.hidden_size], np.int64)
    return b.op("Reshape", [merged, shape], f"{prefix}/merged")


def _gelu(b: _Builder, x: str, prefix: str) -> str:
    # Exact erf GELU as BERT defines it, in the node order onnxruntime fuses into one Gelu.
    scaled = b.op("Div", [x, b.const(f"{prefix}/sqrt2", math.sqrt(2.0))], f"{prefix}/div")
    erf = b.op("Erf", [scaled], f"{prefix}/erf")
    plus_one = b.op("Add", [erf, b.const(f"{prefix}/one", 1.0)], f"{prefix}/add")
    times_x = b.op("Mul", [x, plus_one], f"{prefix}/mul")
    return b.op("Mul", [times_x, b.const(f"{prefix}/half", 0.5)], f"{prefix}/out")


def _encoder_layer(
    b: _Builder, x: str, bias: str, config: BertConfig, weights: Weights, index: int
) -> str:
    p = f"encoder.layer.{index}"
    eps = config.layer_norm_eps
    context = _self_attention(b, x, bias, config, weights, f"{p}.attention.self")
    attn = _dense(b, context, weights, f"{p}.attention.output.dense")
    residual = b.op("Add", [attn, x], f"{p}.attention.output/residual")
    h = _layer_norm(b, residual, weights, f"{p}.attention.output.LayerNorm", eps)
    inner = _gelu(b, _dense(b, h, weights, f"{p}.intermediate.dense"), f"{p}.intermediate/gelu")
    out = _dense(b, inner, weights, f"{p}.output.dense")
    residual = b.op("Add", [out, h], f"{p}.output/residual")
    return _layer_norm(b, residual, weights, f"{p}.output.LayerNorm", eps)


def _mean_pool(b: _Builder, hidden: str, mask: str) -> str:
    mask3 = b.op("Unsqueeze", [mask, b.const("pool/axis2", [2], np.int64)], "pool/mask3")
    axis1 = b.const("pool/axis1", [1], np.int64)
    masked = b.op("Mul", [hidden, mask3], "pool/masked")
    summed = b.op("ReduceSum", [masked, axis1], "pool/sum", keepdims=0)
    count = b.op("ReduceSum", [mask3, axis1], "pool/count", keepdims=0)
    count = b.op("Max", [count, b.const("pool/eps", POOL_EPS)], "pool/count_clamped")
    return b.op("Div", [summed, count], "pool/mean")


def _l2_normalize(b: _Builder, x: str) -> str:
    squares = b.op("Mul", [x, x], "norm/squares")
    axis1 = b.const("norm/axis1", [1], np.int64)
    norm = b.op("Sqrt", [b.op("ReduceSum", [squares, axis1], "norm/sum", keepdims=1)], "norm/l2")
    norm = b.op("Max", [norm, b.const("norm/eps", NORM_EPS)], "norm/clamped")
    return b.op("Div", [x, norm], EMBEDDING)


def build_encoder(
    config: BertConfig, weights: Weights, *, name: str = "encoder"
) -> onnx.ModelProto:
    """Build the sentence-embedding graph for ``config`` with ``weights`` as initializers."""
    b = _Builder()
    hidden = _embeddings(b, config, weights)
    mask, bias = _attention_bias(b)
    for index in range(config.num_hidden_layers):
        hidden = _encoder_layer(b, hidden, bias, config, weights, index)
    _l2_normalize(b, _mean_pool(b, hidden, mask))

    dims = ["batch", "sequence"]
    graph = helper.make_graph(
        b.nodes,
        name,
        inputs=[
            helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, dims),
            helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.INT64, dims),
        ],
        outputs=[
            helper.make_tensor_value_info(
                EMBEDDING, TensorProto.FLOAT, ["batch", config.hidden_size]
            )
        ],
        initializer=b.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="streamvane-models",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model, full_check=True)
    return model
