"""Fakes for unit tests: a word-hashing tokenizer and a bag-of-words backend; no model files.

Texts sharing words get similar vectors, so similarity-based stages (tagging, safety) behave
meaningfully in tests. Failures are scripted per ``embed`` call.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from streamvane_worker.inference.backend import (
    EMBEDDING_DIM,
    EmbeddingArray,
    ModelInfo,
    TokenArray,
)
from streamvane_worker.inference.embedder import Embedder
from streamvane_worker.inference.errors import BackendUnavailable, InferenceError, VersionNotServed
from streamvane_worker.inference.tokenizer import PAD_ID, Encoded


class FakeTokenizer:
    """One id per lower-cased word (crc32), padded with 0 to the batch's longest."""

    def encode(self, texts: list[str]) -> Encoded:
        rows = [[zlib.crc32(w.encode()) % 30_000 + 1 for w in t.lower().split()] for t in texts]
        width = max((len(r) for r in rows), default=0)
        ids = np.full((len(rows), width), PAD_ID, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return Encoded(input_ids=ids, attention_mask=mask)


class FakeBackend:
    """Normalized bag of hashed token ids; ``failures`` is consumed one per ``embed`` call."""

    def __init__(
        self,
        max_batch_size: int = 64,
        failures: list[InferenceError | None] | None = None,
        latencies_s: list[float] | None = None,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.failures = list(failures or [])
        self.latencies_s = list(latencies_s or [])
        """Consumed one per ``embed`` call, like ``failures``: how long the call takes."""
        self.calls: list[int] = []
        self.widths: list[int] = []
        """Sequence length (padded) of each ``embed`` call."""
        self.is_ready = True

    async def start(self) -> ModelInfo:
        return ModelInfo(
            name="fake-model",
            version="7",
            max_batch_size=self.max_batch_size,
            embedding_dim=EMBEDDING_DIM,
        )

    async def embed(self, input_ids: TokenArray, attention_mask: TokenArray) -> EmbeddingArray:
        self.calls.append(len(input_ids))
        self.widths.append(input_ids.shape[1])
        if self.latencies_s:
            await asyncio.sleep(self.latencies_s.pop(0))
        if self.failures:
            failure = self.failures.pop(0)
            if failure is not None:
                raise failure
        out = np.zeros((len(input_ids), EMBEDDING_DIM), dtype=np.float32)
        for i, (row, mask) in enumerate(zip(input_ids, attention_mask, strict=True)):
            np.add.at(out[i], row[mask == 1] % EMBEDDING_DIM, 1.0)
            out[i, 0] += 1e-3  # empty texts still get a unit vector
        normalized: EmbeddingArray = out / np.linalg.norm(out, axis=1, keepdims=True)
        return normalized

    async def ready(self) -> bool:
        return self.is_ready

    async def close(self) -> None:
        self.is_ready = False


async def fake_embedder(backend: FakeBackend | None = None) -> Embedder:
    """A started Embedder over the fakes."""
    embedder = Embedder(FakeTokenizer(), backend or FakeBackend())
    await embedder.start()
    return embedder


class FakeRankerServer:
    """Serves a ranker whose score is ``user · item`` plus the first dense feature over ten
    (a deterministic stand-in for the MLP), at the versions in ``served`` (Triton's default:
    the highest); records each call's row count and the version asked for."""

    model = "fake-ranker"

    def __init__(self, max_batch_size: int = 8, served: set[int] | None = None) -> None:
        self.max_batch_size = max_batch_size
        self.served = set(served or {3})
        self.calls: list[int] = []
        self.seen: list[dict[str, npt.NDArray[Any]]] = []
        self.asked: list[int | None] = []

    async def describe(self) -> tuple[dict[str, object], dict[str, object]]:
        def tensor(name: str, width: int) -> dict[str, object]:
            return {"name": name, "datatype": "FP32", "shape": [-1, width]}

        metadata = {
            "versions": [str(v) for v in sorted(self.served)],
            "inputs": [
                tensor("user", EMBEDDING_DIM),
                tensor("item", EMBEDDING_DIM),
                tensor("dense", 4),
            ],
            "outputs": [tensor("score", 1)],
        }
        return metadata, {"max_batch_size": self.max_batch_size}

    async def infer_at(
        self,
        inputs: Mapping[str, npt.NDArray[Any]],
        outputs: Sequence[str],
        version: int | None,
    ) -> tuple[dict[str, npt.NDArray[Any]], str]:
        assert len(inputs["user"]) <= self.max_batch_size
        self.asked.append(version)
        if version is not None and version not in self.served:
            raise VersionNotServed(f"version {version} is not served")
        if not self.served:
            raise BackendUnavailable("no version is served")
        self.calls.append(len(inputs["user"]))
        self.seen.append(dict(inputs))
        score = (inputs["user"] * inputs["item"]).sum(axis=1) + inputs["dense"][:, 0] / 10
        by = max(self.served) if version is None else version
        return {"score": score.astype(np.float32)[:, np.newaxis]}, str(by)

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        pass
