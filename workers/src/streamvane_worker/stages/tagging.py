"""tagging: zero-shot tags by cosine similarity to label prototypes.

Each label's description is embedded once at start with the same model as the items; an item's
tags are the ``topK`` labels with the highest cosine similarity at or above ``minScore``. An
embedding already on the item (from an upstream text-embedding stage) is reused.
"""

from __future__ import annotations

import numpy as np

from streamvane_worker.config import TaggingParams
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
from streamvane_worker.stages.item import ContentItem, Tag


def top_tags(scores: EmbeddingArray, names: list[str], top_k: int, min_score: float) -> list[Tag]:
    """The best ``top_k`` labels of one item's similarity row, best first (pure)."""
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [
        Tag(name=names[j], score=round(float(scores[j]), 6))
        for j in order
        if scores[j] >= min_score
    ]


class Tagging:
    def __init__(
        self,
        ctx: StageContext,
        embedder: Embedder,
        params: TaggingParams,
        prototypes: EmbeddingArray,
    ) -> None:
        self._ctx = ctx
        self._embedder = embedder
        self._params = params
        self._names = [label.name for label in params.labels]
        self._prototypes = prototypes

    async def process(self, items: list[ContentItem]) -> StageResult:
        watch = Stopwatch(self._ctx, len(items))
        vectors = await item_vectors(self._embedder, items, reuse=True)
        record = watch.record(vectors.inference_ms)
        outputs = {}
        for i, vector in vectors.by_index.items():
            tags = top_tags(
                self._prototypes @ vector, self._names, self._params.top_k, self._params.min_score
            )
            outputs[i] = items[i].model_copy(
                update={"tags": tags, "stages": [*items[i].stages, record]}
            )
        return StageResult(outputs=outputs, errors=vectors.errors)


async def create(ctx: StageContext) -> Stage:
    embedder = require_embedder(ctx)
    params = TaggingParams.model_validate(ctx.params)
    prototypes = await embedder.embed([label.description for label in params.labels])
    return Tagging(ctx, embedder, params, prototypes.vectors)
