"""The real all-MiniLM-L6-v2 ONNX build against the independent numpy forward pass."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from models.build import BuildOutputs
from models.reference import encode
from models.source import MINILM_WHEEL, ModelSource, read_source

pytestmark = pytest.mark.integration

Batch = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]
Tokenize = Callable[[list[str]], Batch]
Embed = Callable[[Batch], npt.NDArray[np.float32]]

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome!",
    "Streaming pipelines on Kubernetes hand each message to a worker that batches requests "
    "to Triton, which runs the embedding model on the GPU and returns one vector per text.",
    "ok",
    "Héllo wörld — ünïcode, emoji 🚀 and CJK 漢字 survive tokenisation.",
]
PARAPHRASES = [
    ("A man is eating food.", "A man is eating a piece of bread."),
    ("The cat sits on the mat.", "A cat is sitting on a rug."),
    ("How do I reset my password?", "I forgot my password, how can I change it?"),
    ("The stock market fell sharply today.", "Share prices dropped steeply this afternoon."),
]
UNRELATED = ["A man is riding a horse.", "Quantum computers use qubits.", "I love pizza."]


@pytest.fixture(scope="module")
def reference_model(minilm: BuildOutputs) -> ModelSource:
    cache = minilm.model_onnx.parents[2]
    return read_source(cache / "downloads" / MINILM_WHEEL.filename)


def _assert_close_rows(onnx_out: npt.NDArray[np.float32], ref: npt.NDArray[np.float64]) -> None:
    assert np.abs(onnx_out - ref).max() < 1e-4
    cosine = (onnx_out * ref).sum(axis=1) / (
        np.linalg.norm(onnx_out, axis=1) * np.linalg.norm(ref, axis=1)
    )
    assert cosine.min() > 0.9999


def test_onnx_matches_numpy_reference_when_batch_is_padded(
    tokenize: Tokenize, embed_local: Embed, reference_model: ModelSource
) -> None:
    ids, mask = tokenize(SENTENCES)
    assert mask.sum(axis=1).min() < ids.shape[1]  # the batch really contains padding
    onnx_out = embed_local((ids, mask))
    assert onnx_out.shape == (len(SENTENCES), 384)
    _assert_close_rows(onnx_out, encode(reference_model.config, reference_model.weights, ids, mask))


def test_onnx_matches_numpy_reference_when_text_is_truncated_at_256_tokens(
    tokenize: Tokenize, embed_local: Embed, reference_model: ModelSource
) -> None:
    ids, mask = tokenize(["streaming inference at scale " * 100, "short"])
    assert ids.shape == (2, 256)
    _assert_close_rows(
        embed_local((ids, mask)),
        encode(reference_model.config, reference_model.weights, ids, mask),
    )


def test_onnx_scores_paraphrases_above_unrelated_when_compared(
    tokenize: Tokenize, embed_local: Embed
) -> None:
    for left, right in PARAPHRASES:
        out = embed_local(tokenize([left, right, *UNRELATED]))
        similarity = out @ out[0]  # rows are unit vectors: dot product is cosine
        assert similarity[1] > 0.5
        assert similarity[1] > similarity[2:].max() + 0.2
