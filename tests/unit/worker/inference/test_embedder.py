from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from streamvane_worker.config import MAX_SEQUENCE_TOKENS, InferenceSettings
from streamvane_worker.inference import paths
from streamvane_worker.inference.embedder import Embedder
from streamvane_worker.inference.errors import ModelFilesMissing
from streamvane_worker.inference.onnx import OnnxBackend
from streamvane_worker.inference.testing import FakeBackend, FakeTokenizer, fake_embedder
from streamvane_worker.inference.tokenizer import (
    MAX_TOKENS,
    Encoded,
    TextTokenizer,
    pad_to_bucket,
)

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


def _encoded(width: int, lengths: list[int]) -> Encoded:
    ids = np.zeros((len(lengths), width), dtype=np.int64)
    for i, n in enumerate(lengths):
        ids[i, :n] = 7
    return Encoded(input_ids=ids, attention_mask=(ids != 0).astype(np.int64))


@pytest.mark.parametrize(
    ("width", "buckets", "padded"),
    [(5, (4, 8, 16), 8), (8, (4, 8, 16), 8), (17, (4, 8, 16), 17), (5, (), 5), (1, (16,), 16)],
)
def test_pad_to_bucket_pads_to_the_smallest_bucket_that_fits_when_buckets_are_set(
    width: int, buckets: tuple[int, ...], padded: int
) -> None:
    encoded = _encoded(width, [width, 1])
    out = pad_to_bucket(encoded, buckets)

    assert out.input_ids.shape == out.attention_mask.shape == (2, padded)
    assert np.array_equal(out.input_ids[:, :width], encoded.input_ids)
    assert not out.input_ids[:, width:].any() and not out.attention_mask[:, width:].any()


async def test_embedder_sends_bucket_shapes_when_sequence_buckets_are_configured() -> None:
    backend = FakeBackend()
    embedder = Embedder(FakeTokenizer(), backend, buckets=(4, 8))
    await embedder.start()
    plain = await fake_embedder()

    texts = ["one two three", "one two three four five"]
    embedded = await embedder.embed(texts)
    await embedder.embed(["a b c d e f g h i j"])

    assert backend.widths == [8, 10], "5 tokens -> bucket 8; 10 is longer than every bucket"
    assert np.array_equal(embedded.vectors, (await plain.embed(texts)).vectors)


def test_sequence_buckets_are_refused_when_not_increasing_or_longer_than_the_tokenizer() -> None:
    assert MAX_SEQUENCE_TOKENS == MAX_TOKENS
    assert InferenceSettings(sequence_buckets=(16, 64, 256)).sequence_buckets == (16, 64, 256)
    for buckets in [(64, 16), (16, 16), (0, 16), (16, MAX_TOKENS + 1)]:
        with pytest.raises(ValidationError, match="sequenceBuckets"):
            InferenceSettings(sequence_buckets=buckets)


@needs_model
async def test_onnx_embeddings_do_not_change_when_a_batch_is_padded_to_a_bucket() -> None:
    texts = ["a cat sits on the mat", "stock prices fell sharply on monday"]
    tokenizer = TextTokenizer(paths.tokenizer_path())
    plain = Embedder(tokenizer, OnnxBackend(paths.onnx_path(), "all-minilm-l6-v2"))
    bucketed = Embedder(
        tokenizer, OnnxBackend(paths.onnx_path(), "all-minilm-l6-v2"), buckets=(64,)
    )
    await plain.start()
    await bucketed.start()

    a, b = (await plain.embed(texts)).vectors, (await bucketed.embed(texts)).vectors
    np.testing.assert_allclose(a, b, atol=1e-5)
