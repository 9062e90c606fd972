"""Texts -> embeddings: tokenize, split to the model's max batch size, pad to a sequence-length
bucket if configured (``inference.sequenceBuckets``), run the backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from streamvane_worker.inference.backend import EmbeddingArray, EmbeddingBackend, ModelInfo
from streamvane_worker.inference.batching import in_chunks
from streamvane_worker.inference.tokenizer import Tokenizer, pad_to_bucket


@dataclass(frozen=True)
class Embedded:
    vectors: EmbeddingArray
    inference_ms: float


class Embedder:
    """What stages use: one call per micro-batch of texts."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        backend: EmbeddingBackend,
        observe: Callable[[float], None] | None = None,
        buckets: tuple[int, ...] = (),
    ) -> None:
        self._tokenizer = tokenizer
        self._buckets = buckets
        self.backend = backend
        self._observe = observe
        """Called with each model call's duration in seconds (the inference latency metric)."""
        self._info: ModelInfo | None = None

    async def start(self) -> ModelInfo:
        self._info = await self.backend.start()
        return self._info

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            raise RuntimeError("Embedder.start() was not awaited")
        return self._info

    async def embed(self, texts: list[str]) -> Embedded:
        """Embeddings in the order of ``texts``; model calls for one batch run concurrently."""
        started = time.perf_counter()
        vectors = await in_chunks(
            len(texts),
            self.info.max_batch_size,
            lambda rows: self._embed_chunk(texts[rows]),
            (0, self.info.embedding_dim),
        )
        return Embedded(vectors=vectors, inference_ms=(time.perf_counter() - started) * 1000)

    async def _embed_chunk(self, texts: list[str]) -> EmbeddingArray:
        # Tokenizing a batch is CPU work in Rust that releases the GIL: keep it off the loop.
        encoded = pad_to_bucket(
            await asyncio.to_thread(self._tokenizer.encode, texts), self._buckets
        )
        started = time.perf_counter()
        vectors = await self.backend.embed(encoded.input_ids, encoded.attention_mask)
        if self._observe is not None:
            self._observe(time.perf_counter() - started)
        return vectors

    async def close(self) -> None:
        await self.backend.close()
