"""The interface every embedding backend implements (Triton over gRPC, in-process onnxruntime).

A backend takes token tensors and returns L2-normalized sentence embeddings. It is async so the
runtime's event loop never blocks on it: Triton is awaited natively, onnxruntime runs in a thread
(it releases the GIL while computing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from streamvane_worker.inference.errors import ModelMismatch

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
EMBEDDING = "embedding"
EMBEDDING_DIM = 384

TokenArray = npt.NDArray[np.int64]
EmbeddingArray = npt.NDArray[np.float32]


def unit_rows(x: EmbeddingArray) -> EmbeddingArray:
    """Each row (or the one vector) scaled to unit length; a zero row stays zero."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    unit: EmbeddingArray = (x / np.where(norm == 0, 1, norm)).astype(np.float32)
    return unit


@dataclass(frozen=True)
class ModelInfo:
    """What the worker learned about the served model at start."""

    name: str
    version: str
    max_batch_size: int
    embedding_dim: int


def served_model_info(
    model: str,
    metadata: dict[str, Any],
    config: dict[str, Any],
    problems: list[str],
    refusal: str,
) -> ModelInfo:
    """The served ``model`` as Triton's metadata and config describe it, once its tensors were
    checked (``problems``); raise ModelMismatch (``refusal``, then every problem) when any
    tensor is wrong or the model does not batch."""
    max_batch = int(config.get("max_batch_size", 0))
    if max_batch < 1:
        problems = [*problems, "model does not batch (max_batch_size 0)"]
    if problems:
        raise ModelMismatch(f"model {model!r} {refusal}: " + "; ".join(problems))
    versions = metadata.get("versions") or [""]
    return ModelInfo(model, str(versions[-1]), max_batch, EMBEDDING_DIM)


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
