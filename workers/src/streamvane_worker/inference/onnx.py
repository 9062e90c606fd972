"""In-process onnxruntime backend: same model file and interface as Triton, no server.

Used by ``streamvane embed`` by default and by workers configured with ``backend: onnxruntime``.
Inference runs in a worker thread (onnxruntime releases the GIL) so the event loop stays free.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import onnxruntime as ort

from streamvane_worker.inference.backend import (
    ATTENTION_MASK,
    EMBEDDING,
    EMBEDDING_DIM,
    INPUT_IDS,
    EmbeddingArray,
    ModelInfo,
    TokenArray,
)
from streamvane_worker.inference.errors import (
    InferenceFailed,
    ModelFilesMissing,
    ModelMismatch,
    from_onnxruntime,
)

# The same bound as the Triton model's max_batch_size, so both backends batch alike.
MAX_BATCH_SIZE = 64


class OnnxBackend:
    """Runs the ONNX model with onnxruntime on the CPU."""

    def __init__(self, path: Path, model: str, threads: int = 0) -> None:
        self._path = path
        self._model = model
        self._threads = threads
        self._session: ort.InferenceSession | None = None

    async def start(self) -> ModelInfo:
        if not self._path.is_file():
            raise ModelFilesMissing(f"ONNX model not found at {self._path}; run `make models`")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        try:
            session = ort.InferenceSession(
                str(self._path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime's exceptions share no public base
            raise from_onnxruntime(e, path=str(self._path)) from e
        inputs = {i.name: i.type for i in session.get_inputs()}
        outputs = {o.name: o for o in session.get_outputs()}
        expected = {INPUT_IDS: "tensor(int64)", ATTENTION_MASK: "tensor(int64)"}
        if inputs != expected or EMBEDDING not in outputs:
            raise ModelMismatch(
                f"{self._path}: inputs {inputs} / outputs {sorted(outputs)} differ from "
                f"{expected} / [{EMBEDDING!r}]"
            )
        self._session = session
        return ModelInfo(
            name=self._model,
            version="1",
            max_batch_size=MAX_BATCH_SIZE,
            embedding_dim=EMBEDDING_DIM,
        )

    async def embed(self, input_ids: TokenArray, attention_mask: TokenArray) -> EmbeddingArray:
        return await asyncio.to_thread(self._run, input_ids, attention_mask)

    def _run(self, input_ids: TokenArray, attention_mask: TokenArray) -> EmbeddingArray:
        if self._session is None:
            raise InferenceFailed("onnxruntime backend used before start()")
        try:
            (output,) = self._session.run(
                [EMBEDDING], {INPUT_IDS: input_ids, ATTENTION_MASK: attention_mask}
            )
        except Exception as e:  # onnxruntime's exceptions share no public base
            raise from_onnxruntime(e, path=str(self._path)) from e
        return np.asarray(output, dtype=np.float32)

    async def ready(self) -> bool:
        return self._session is not None

    async def close(self) -> None:
        self._session = None
