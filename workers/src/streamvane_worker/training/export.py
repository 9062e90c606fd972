"""The ranker's weights as an ONNX graph, and back: what ``models/`` builds at first and what
the online-training stage exports as each new version, one graph for both.

The graph computes ``score = sigmoid(W2 · relu(W1 · [user * item, dense] + b1) + b2)`` with
Mul, Concat, MatMul + Add, Relu, MatMul + Add, Sigmoid; its weights are initializers named
``w1``, ``b1``, ``w2``, ``b2``, which ``weights_of`` reads back to warm-start a learner.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from streamvane_worker.inference.ranker import DENSE, DENSE_FEATURES, ITEM, SCORE, USER
from streamvane_worker.training.mlp import Weights

WEIGHT_NAMES = ("w1", "b1", "w2", "b2")


def ranker_graph(weights: Weights, name: str) -> onnx.ModelProto:
    """The scoring graph of ``weights``; its vectors are as wide as ``w1``'s rows less the
    dense features."""
    batch = "batch"
    dim = weights.w1.shape[0] - len(DENSE_FEATURES)
    nodes = [
        helper.make_node("Mul", [USER, ITEM], ["cross"]),
        helper.make_node("Concat", ["cross", DENSE], ["x"], axis=1),
        helper.make_node("MatMul", ["x", "w1"], ["h_pre"]),
        helper.make_node("Add", ["h_pre", "b1"], ["h_biased"]),
        helper.make_node("Relu", ["h_biased"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["logit_pre"]),
        helper.make_node("Add", ["logit_pre", "b2"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], [SCORE]),
    ]
    initializers = [
        numpy_helper.from_array(np.asarray(value, dtype=np.float32), key)
        for key, value in zip(WEIGHT_NAMES, weights.arrays(), strict=True)
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [
            helper.make_tensor_value_info(USER, TensorProto.FLOAT, [batch, dim]),
            helper.make_tensor_value_info(ITEM, TensorProto.FLOAT, [batch, dim]),
            helper.make_tensor_value_info(DENSE, TensorProto.FLOAT, [batch, len(DENSE_FEATURES)]),
        ],
        [helper.make_tensor_value_info(SCORE, TensorProto.FLOAT, [batch, 1])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


class NotARankerGraph(ValueError):
    """The ONNX model lacks the ranker's weights (another architecture)."""


def weights_of(model: onnx.ModelProto) -> Weights:
    """The weights of a graph ``ranker_graph`` wrote."""
    found = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    missing = [n for n in WEIGHT_NAMES if n not in found]
    if missing:
        raise NotARankerGraph(f"no initializers {missing}: not the ranker's MLP graph")
    w1, b1, w2, b2 = (np.asarray(found[n], dtype=np.float32) for n in WEIGHT_NAMES)
    if w1.ndim != 2 or w2.shape != (w1.shape[1], 1) or b1.shape != (w1.shape[1],):
        raise NotARankerGraph(f"weights of shapes {w1.shape}, {w2.shape}: not the ranker's MLP")
    return Weights(w1, b1, w2, b2)
