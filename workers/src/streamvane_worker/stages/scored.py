"""The shape shared by ``tagging`` and ``safety``: score each item's embedding against classes.

At start the classes' texts (descriptions, examples) are embedded once with the same model as
the items and turned into a scorer (``label_scoring``: prototypes, or a trained linear head;
for tagging, also a head served on Triton, ``label_head``); each batch's embeddings (reused
from upstream when present) are scored, and the stage's ``Annotate`` turns each item's score
row into its new field. ``streamvane classify`` builds the same ``Annotator`` from the same
params, so it prints what the stage would attach.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from streamvane_worker.config import ScoringMode
from streamvane_worker.inference.backend import EmbeddingArray
from streamvane_worker.inference.embedder import Embedder
from streamvane_worker.stages.base import (
    Stage,
    StageContext,
    StageResult,
    Stopwatch,
    item_vectors,
    require_embedder,
)
from streamvane_worker.stages.item import ContentItem
from streamvane_worker.stages.label_scoring import ClassTexts, Prototypes, Scores, train_head

log = structlog.get_logger(__name__)

Annotate = Callable[[EmbeddingArray], dict[str, Any]]
"""One item's score row -> the fields the stage sets."""


@dataclass(frozen=True)
class ClassScores:
    rows: EmbeddingArray
    """[items, classes]"""
    model: str | None = None
    """The served head that computed them (and its version); None for a local scorer."""
    version: str | None = None


BatchScores = Callable[[EmbeddingArray], Awaitable[ClassScores]]
"""Unit embeddings [n, dim] -> their class scores."""


def local(scores: Scores) -> BatchScores:
    """A scorer computed in-process (prototypes, a head trained at start)."""

    async def score(vectors: EmbeddingArray) -> ClassScores:
        return ClassScores(scores(vectors))

    return score


@dataclass(frozen=True)
class Annotator:
    score: BatchScores
    annotate: Annotate
    summary: dict[str, Any] = field(default_factory=dict)
    """What was set up at start (mode, prototypes, calibrated thresholds), for the log."""

    async def fields(self, vectors: EmbeddingArray) -> list[dict[str, Any]]:
        """The fields of each of ``vectors`` [n, dim], in order."""
        scored = await self.score(vectors)
        return [self.annotate(row) for row in scored.rows]


async def embed_classes(embedder: Embedder, classes: Sequence[ClassTexts]) -> list[EmbeddingArray]:
    """Each class's texts embedded, description first, in one model call."""
    texts = [c.texts() for c in classes]
    embedded = await embedder.embed([t for each in texts for t in each])
    cuts = np.cumsum([len(each) for each in texts])[:-1]
    return np.split(embedded.vectors, cuts)


def class_scores(mode: ScoringMode, embedded: Sequence[EmbeddingArray]) -> Scores:
    return Prototypes.of(embedded) if mode == ScoringMode.ZERO_SHOT else train_head(embedded)


class ScoredStage:
    def __init__(self, ctx: StageContext, embedder: Embedder, annotator: Annotator) -> None:
        self._ctx = ctx
        self._embedder = embedder
        self._annotator = annotator

    async def process(self, items: list[ContentItem]) -> StageResult:
        watch = Stopwatch(self._ctx, len(items))
        vectors = await item_vectors(self._embedder, items, reuse=True)
        indices = list(vectors.by_index)
        scored = ClassScores(np.empty((0, 0), np.float32))
        if indices:
            scored = await self._annotator.score(np.stack([vectors.by_index[i] for i in indices]))
        record = watch.record(vectors.inference_ms)
        if scored.model is not None:
            record = record.model_copy(
                update={"model": scored.model, "model_version": scored.version}
            )
        outputs = {
            i: items[i].model_copy(
                update={**self._annotator.annotate(row), "stages": [*items[i].stages, record]}
            )
            for i, row in zip(indices, scored.rows, strict=True)
        }
        return StageResult(outputs=outputs, errors=vectors.errors)


async def scored_stage(
    ctx: StageContext, build: Callable[[Embedder], Awaitable[Annotator]]
) -> Stage[ContentItem]:
    embedder = require_embedder(ctx)
    annotator = await build(embedder)
    log.info("classes_ready", stage=ctx.name, **annotator.summary)
    return ScoredStage(ctx, embedder, annotator)
