"""Tokenizer wrapper: the model's tokenizer.json -> int64 tensors padded to the batch's longest,
optionally further to a sequence-length bucket (``pad_to_bucket``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tokenizers import Tokenizer as HFTokenizer

from streamvane_worker.inference.backend import TokenArray
from streamvane_worker.inference.errors import ModelFilesMissing

MAX_TOKENS = 256
PAD_ID = 0


@dataclass(frozen=True)
class Encoded:
    input_ids: TokenArray
    attention_mask: TokenArray


def pad_to_bucket(encoded: Encoded, buckets: tuple[int, ...]) -> Encoded:
    """Pad a batch with ``PAD_ID`` (attention mask 0) to the smallest bucket that holds its
    longest sequence; unchanged without buckets or when it is longer than every bucket (pure).

    Why: Triton's dynamic batcher merges requests only when their shapes are equal (the
    onnxruntime backend has no ragged batching), so batches padded to their own longest
    rarely merge; a few fixed lengths make them merge, at the price of computing padding.
    Masked positions do not change the mean-pooled embedding."""
    length = encoded.input_ids.shape[1]
    target = next((b for b in sorted(buckets) if b >= length), length)
    if target == length:
        return encoded
    pad = ((0, 0), (0, target - length))
    return Encoded(
        input_ids=np.pad(encoded.input_ids, pad, constant_values=PAD_ID),
        attention_mask=np.pad(encoded.attention_mask, pad, constant_values=0),
    )


class Tokenizer(Protocol):
    def encode(self, texts: list[str]) -> Encoded: ...


class TextTokenizer:
    """Truncates to ``MAX_TOKENS`` (the model's training length) and pads with id 0."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise ModelFilesMissing(f"tokenizer not found at {path}; run `make models`")
        self._tokenizer = HFTokenizer.from_file(str(path))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=PAD_ID, pad_token="[PAD]")

    def encode(self, texts: list[str]) -> Encoded:
        encodings = self._tokenizer.encode_batch(texts)
        return Encoded(
            input_ids=np.array([e.ids for e in encodings], dtype=np.int64),
            attention_mask=np.array([e.attention_mask for e in encodings], dtype=np.int64),
        )
