"""The ranking model on Triton: (user, item, dense features) rows -> engagement scores.

The model is built by ``models/ranker.py`` (``recs-ranker``); this side checks, at start, that
the served model takes what the ranking stage sends: FP32 ``user`` [batch, 384], ``item``
[batch, 384] and ``dense`` [batch, len(DENSE_FEATURES)], FP32 ``score`` [batch, 1] out, and
that it batches. Calls go through the one Triton client (``TritonBackend.infer``) and are split
to the model's max batch size like the embedder's (``batching.in_chunks``). Which version is
asked for follows the trainer's announcements (``inference.versions``); each result carries the
version Triton says computed it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import structlog

from streamvane_worker.inference import versions
from streamvane_worker.inference.backend import EMBEDDING_DIM, ModelInfo, served_model_info
from streamvane_worker.inference.batching import in_chunks
from streamvane_worker.inference.errors import VersionNotServed
from streamvane_worker.inference.versions import VersionChoice

USER = "user"
ITEM = "item"
DENSE = "dense"
SCORE = "score"
DENSE_FEATURES = ("retrievalScore", "review", "logProfileStrength", "logProfileEvents")
"""The ``dense`` columns, in order (the model's training features, models/ranker.py)."""

FloatArray = npt.NDArray[np.float32]
log = structlog.get_logger(__name__)


class TensorServer(Protocol):
    """A model server for one model (``TritonBackend``; a fake in unit tests)."""

    @property
    def model(self) -> str: ...

    async def describe(self) -> tuple[dict[str, Any], dict[str, Any]]: ...

    async def infer_at(
        self,
        inputs: Mapping[str, npt.NDArray[Any]],
        outputs: Sequence[str],
        version: int | None,
    ) -> tuple[dict[str, npt.NDArray[Any]], str]: ...

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
    version: str
    """The model version that computed them, as Triton reports it."""


class Ranker:
    """What the ranking stage uses: one call per micro-batch of rows, to the newest announced
    version of the model (``inference.versions``) once ``announce`` was called."""

    def __init__(
        self, backend: TensorServer, observe: Callable[[float], None] | None = None
    ) -> None:
        self.backend = backend
        self._observe = observe
        """Called with each model call's duration in seconds (the inference latency metric)."""
        self._info: ModelInfo | None = None
        self.choice = VersionChoice()

    async def start(self) -> ModelInfo:
        metadata, config = await self.backend.describe()
        self._info = check_ranker(metadata, config, self.backend.model)
        return self._info

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            raise RuntimeError("Ranker.start() was not awaited")
        return self._info

    def announce(self, version: int) -> None:
        """The newest announcement says Triton serves ``version``."""
        if self.choice.announced != version:
            log.info("model_version_announced", model=self.backend.model, version=version)
        self.choice = versions.announce(self.choice, version)

    @property
    def version(self) -> str:
        """The version the next call asks for (the served model's at start when none)."""
        chosen = versions.pick(self.choice, time.monotonic())
        return self.info.version if chosen is None else str(chosen)

    async def score(self, user: FloatArray, item: FloatArray, dense: FloatArray) -> Scored:
        """Scores of the rows, in order, all from one version; model calls for one batch run
        concurrently. A version Triton does not serve is skipped for the previous one that
        did (then Triton's default), and logged."""
        started = time.perf_counter()
        tried: set[int] = set()
        while True:
            version = versions.pick(self.choice, time.monotonic())
            if version in tried:
                version = None  # refused once in this call already: Triton's default
            try:
                scores, served = await self._score_at(version, user, item, dense)
            except VersionNotServed as e:
                if version is None:  # only a version asked for by number is refused
                    raise
                tried.add(version)
                self.choice = versions.refused(self.choice, version, time.monotonic())
                log.warning(
                    "model_version_unserved",
                    model=self.backend.model,
                    version=version,
                    fallback=versions.pick(self.choice, time.monotonic()) or "default",
                    error=str(e),
                )
                continue
            if version is not None:
                self.choice = versions.served(self.choice, version)
            return Scored(scores, (time.perf_counter() - started) * 1000, served)

    async def _score_at(
        self, version: int | None, user: FloatArray, item: FloatArray, dense: FloatArray
    ) -> tuple[FloatArray, str]:
        served: list[str] = []

        async def call(rows: slice) -> FloatArray:
            began = time.perf_counter()
            found, by = await self.backend.infer_at(
                {USER: user[rows], ITEM: item[rows], DENSE: dense[rows]}, [SCORE], version
            )
            if self._observe is not None:
                self._observe(time.perf_counter() - began)
            served.append(by)
            return np.asarray(found[SCORE], dtype=np.float32).reshape(-1)

        scores = await in_chunks(len(user), self.info.max_batch_size, call, (0,))
        return scores, served[0] if served else self.version

    async def close(self) -> None:
        await self.backend.close()
