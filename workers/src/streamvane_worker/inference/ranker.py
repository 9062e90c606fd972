"""The ranking model on Triton: (user, item, dense features) rows -> engagement scores.

The model is built by ``models/ranker.py`` (``recs-ranker``); this side checks, at start, that
the served model takes what the ranking stage sends: FP32 ``user`` [batch, 384], ``item``
[batch, 384] and ``dense`` [batch, len(DENSE_FEATURES)], FP32 ``score`` [batch, 1] out, and
that it batches. Calls go through the one Triton client (``TritonBackend.infer``) and are split
to the model's max batch size like the embedder's (``batching.in_chunks``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from streamvane_worker.inference.backend import EMBEDDING_DIM, ModelInfo, served_model_info
from streamvane_worker.inference.batching import in_chunks

USER = "user"
ITEM = "item"
DENSE = "dense"
SCORE = "score"
DENSE_FEATURES = ("retrievalScore", "review", "logProfileStrength", "logProfileEvents")
"""The ``dense`` columns, in order (the model's training features, models/ranker.py)."""

FloatArray = npt.NDArray[np.float32]


class TensorServer(Protocol):
    """A model server for one model (``TritonBackend``; a fake in unit tests)."""

    @property
    def model(self) -> str: ...

    async def describe(self) -> tuple[dict[str, Any], dict[str, Any]]: ...

    async def infer(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str]
    ) -> dict[str, npt.NDArray[Any]]: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


def check_ranker(metadata: dict[str, Any], config: dict[str, Any], model: str) -> ModelInfo:
    """Compare Triton's view of the ranking model with what the stage sends (pure)."""
    expected = {USER: EMBEDDING_DIM, ITEM: EMBEDDING_DIM, DENSE: len(DENSE_FEATURES)}
    problems: list[str] = []
    inputs = {t["name"]: t for t in metadata.get("inputs", [])}
    outputs = {t["name"]: t for t in metadata.get("outputs", [])}
    for name, width in [*expected.items(), (SCORE, 1)]:
        tensor = (outputs if name == SCORE else inputs).get(name)
        kind = "output" if name == SCORE else "input"
        if tensor is None:
            problems.append(f"missing {kind} {name!r}")
            continue
        dims = [int(d) for d in tensor.get("shape", [])]
        if tensor.get("datatype") != "FP32" or not dims or dims[-1] != width:
            problems.append(
                f"{kind} {name!r} is {tensor.get('datatype')} {dims}, expected FP32 [-1, {width}]"
            )
    extra = sorted(set(inputs) - set(expected))
    if extra:
        problems.append(f"unexpected inputs {extra}")
    return served_model_info(model, metadata, config, problems, "is not a ranker the stage can use")


@dataclass(frozen=True)
class Scored:
    scores: FloatArray
    """One score per row."""
    inference_ms: float


class Ranker:
    """What the ranking stage uses: one call per micro-batch of rows."""

    def __init__(
        self, backend: TensorServer, observe: Callable[[float], None] | None = None
    ) -> None:
        self.backend = backend
        self._observe = observe
        """Called with each model call's duration in seconds (the inference latency metric)."""
        self._info: ModelInfo | None = None

    async def start(self) -> ModelInfo:
        metadata, config = await self.backend.describe()
        self._info = check_ranker(metadata, config, self.backend.model)
        return self._info

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            raise RuntimeError("Ranker.start() was not awaited")
        return self._info

    async def score(self, user: FloatArray, item: FloatArray, dense: FloatArray) -> Scored:
        """Scores of the rows, in order; model calls for one batch run concurrently."""
        started = time.perf_counter()

        async def call(rows: slice) -> FloatArray:
            began = time.perf_counter()
            found = await self.backend.infer(
                {USER: user[rows], ITEM: item[rows], DENSE: dense[rows]}, [SCORE]
            )
            if self._observe is not None:
                self._observe(time.perf_counter() - began)
            return np.asarray(found[SCORE], dtype=np.float32).reshape(-1)

        scores = await in_chunks(len(user), self.info.max_batch_size, call, (0,))
        return Scored(scores=scores, inference_ms=(time.perf_counter() - started) * 1000)

    async def close(self) -> None:
        await self.backend.close()
