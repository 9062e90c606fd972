from __future__ import annotations

import numpy as np
import pytest

from streamvane_worker.inference import paths
from streamvane_worker.inference.embedder import Embedder
from streamvane_worker.inference.errors import ModelFilesMissing
from streamvane_worker.inference.onnx import OnnxBackend
from streamvane_worker.inference.testing import FakeBackend, fake_embedder
from streamvane_worker.inference.tokenizer import MAX_TOKENS, TextTokenizer

needs_model = pytest.mark.skipif(
    not paths.onnx_path().is_file(), reason="model not built (make models)"
)


async def test_embedder_splits_batch_when_larger_than_model_max_batch() -> None:
    backend = FakeBackend(max_batch_size=4)
    embedder = await fake_embedder(backend)
    embedded = await embedder.embed([f"text {i}" for i in range(10)])
    assert sorted(backend.calls) == [2, 4, 4]
    assert embedded.vectors.shape == (10, 384)


def test_tokenizer_raises_named_error_when_file_is_missing(tmp_path) -> None:
    with pytest.raises(ModelFilesMissing, match="make models"):
        TextTokenizer(tmp_path / "tokenizer.json")


@needs_model
def test_tokenizer_pads_to_longest_and_truncates_when_texts_differ_in_length() -> None:
    encoded = TextTokenizer(paths.tokenizer_path()).encode(["short", "word " * 1000])
    assert encoded.input_ids.dtype == np.int64 and encoded.input_ids.shape == (2, MAX_TOKENS)
    assert encoded.attention_mask[0].sum() == 3 and encoded.input_ids[0, -1] == 0


@needs_model
async def test_onnx_backend_ranks_paraphrase_above_unrelated_when_embedding_real_text() -> None:
    backend = OnnxBackend(paths.onnx_path(), "all-minilm-l6-v2")
    embedder = Embedder(TextTokenizer(paths.tokenizer_path()), backend)
    await embedder.start()
    v = (
        await embedder.embed(["a cat sits on the mat", "a kitten on a rug", "stock prices fell"])
    ).vectors
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


async def test_onnx_backend_raises_named_error_when_model_is_missing(tmp_path) -> None:
    with pytest.raises(ModelFilesMissing, match="make models"):
        await OnnxBackend(tmp_path / "model.onnx", "m").start()
