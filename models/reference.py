"""Plain numpy forward pass of a BERT sentence encoder, kept apart from the ONNX builder.

It exists to check the ONNX conversion: it computes in float64, masks padded keys with
``-inf`` rather than an additive bias, and reads the weights in torch's own layout.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from models.bert import BertConfig, Weights

F64 = npt.NDArray[np.float64]

_erf = np.frompyfunc(math.erf, 1, 1)


def _gelu(x: F64) -> F64:
    return np.asarray(0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64)))


def _layer_norm(x: F64, gamma: F64, beta: F64, eps: float) -> F64:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return np.asarray((x - mean) / np.sqrt(var + eps) * gamma + beta)


def _softmax(x: F64) -> F64:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def encode(
    config: BertConfig,
    weights: Weights,
    input_ids: npt.NDArray[np.int64],
    attention_mask: npt.NDArray[np.int64],
) -> F64:
    """Mean-pooled, L2-normalised sentence embeddings, float64 ``[batch, hidden]``."""
    w = {name: tensor.astype(np.float64) for name, tensor in weights.items()}
    batch, seq = input_ids.shape
    heads, head_size = config.num_attention_heads, config.head_size
    eps = config.layer_norm_eps

    def linear(x: F64, name: str) -> F64:
        return np.asarray(x @ w[f"{name}.weight"].T + w[f"{name}.bias"])

    def norm(x: F64, name: str) -> F64:
        return _layer_norm(x, w[f"{name}.weight"], w[f"{name}.bias"], eps)

    def split(x: F64) -> F64:
        return x.reshape(batch, seq, heads, head_size).transpose(0, 2, 1, 3)

    token_types = np.zeros_like(input_ids)
    x = (
        w["embeddings.word_embeddings.weight"][input_ids]
        + w["embeddings.position_embeddings.weight"][np.arange(seq)][np.newaxis]
        + w["embeddings.token_type_embeddings.weight"][token_types]
    )
    x = norm(x, "embeddings.LayerNorm")
    keep = attention_mask.astype(bool)[:, np.newaxis, np.newaxis, :]

    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}"
        q = split(linear(x, f"{p}.attention.self.query"))
        k = split(linear(x, f"{p}.attention.self.key"))
        v = split(linear(x, f"{p}.attention.self.value"))
        scores = np.where(keep, q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_size), -np.inf)
        context = (_softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(batch, seq, -1)
        x = norm(
            linear(context, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm"
        )
        inner = _gelu(linear(x, f"{p}.intermediate.dense"))
        x = norm(linear(inner, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")

    mask = attention_mask.astype(np.float64)[:, :, np.newaxis]
    pooled = (x * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    return np.asarray(pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12))
