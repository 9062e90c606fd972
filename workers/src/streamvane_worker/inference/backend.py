"""The interface every embedding backend implements (Triton over gRPC, in-process onnxruntime).

A backend takes token tensors and returns L2-normalized sentence embeddings. It is async so the
runtime's event loop never blocks on it: Triton is awaited natively, onnxruntime runs in a thread
(it releases the GIL while computing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
EMBEDDING = "embedding"
EMBEDDING_DIM = 384

TokenArray = npt.NDArray[np.int64]
EmbeddingArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ModelInfo:
    """What the worker learned about the served model at start."""

    name: str
    version: str
    max_batch_size: int
    embedding_dim: int


class EmbeddingBackend(Protocol):
    """Runs the embedding model on a tokenized batch."""

    async def start(self) -> ModelInfo:
        """Connect and check the model's tensors; raise a named InferenceError if wrong."""
        ...

    async def embed(self, input_ids: TokenArray, attention_mask: TokenArray) -> EmbeddingArray:
        """Embeddings of shape [batch, dim]; raises BackendUnavailable or InferenceFailed."""
        ...

    async def ready(self) -> bool:
        """Whether the backend can serve now (cheap; used by /readyz)."""
        ...

    async def close(self) -> None: ...
