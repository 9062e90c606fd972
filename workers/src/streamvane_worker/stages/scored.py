"""The shape shared by ``tagging`` and ``safety``: score each item's embedding against classes.

At start the classes' texts (descriptions, examples) are embedded once with the same model as
the items and turned into a scorer (``label_scoring``: prototypes, or a trained linear head);
each item's embedding (reused from upstream when present) is scored, and the stage's
``Annotate`` turns that into the item's new field. ``streamvane classify`` builds the same
``Annotator`` from the same params, so it prints what the stage would attach.
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
"""One item's unit embedding -> the fields the stage sets."""


@dataclass(frozen=True)
class Annotator:
    annotate: Annotate
    summary: dict[str, Any] = field(default_factory=dict)
    """What was set up at start (mode, prototypes, calibrated thresholds), for the log."""


async def embed_classes(embedder: Embedder, classes: Sequence[ClassTexts]) -> list[EmbeddingArray]:
    """Each class's texts embedded, description first, in one model call."""
    texts = [c.texts() for c in classes]
    embedded = await embedder.embed([t for each in texts for t in each])
    cuts = np.cumsum([len(each) for each in texts])[:-1]
    return np.split(embedded.vectors, cuts)


def class_scores(mode: ScoringMode, embedded: Sequence[EmbeddingArray]) -> Scores:
    return Prototypes.of(embedded) if mode == ScoringMode.ZERO_SHOT else train_head(embedded)


class ScoredStage:
    def __init__(self, ctx: StageContext, embedder: Embedder, annotate: Annotate) -> None:
        self._ctx = ctx
        self._embedder = embedder
        self._annotate = annotate

    async def process(self, items: list[ContentItem]) -> StageResult:
        watch = Stopwatch(self._ctx, len(items))
        vectors = await item_vectors(self._embedder, items, reuse=True)
        record = watch.record(vectors.inference_ms)
        outputs = {
            i: items[i].model_copy(
                update={**self._annotate(vector), "stages": [*items[i].stages, record]}
            )
            for i, vector in vectors.by_index.items()
        }
        return StageResult(outputs=outputs, errors=vectors.errors)


async def scored_stage(
    ctx: StageContext, build: Callable[[Embedder], Awaitable[Annotator]]
) -> Stage[ContentItem]:
    embedder = require_embedder(ctx)
    annotator = await build(embedder)
    log.info("classes_ready", stage=ctx.name, **annotator.summary)
    return ScoredStage(ctx, embedder, annotator.annotate)
