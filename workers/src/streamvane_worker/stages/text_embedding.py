"""text-embedding: title + description + transcript -> 384-d L2-normalized embedding."""

from __future__ import annotations

import numpy as np

from streamvane_worker.stages.base import (
    Stage,
    StageContext,
    StageKind,
    StageResult,
    Stopwatch,
    item_vectors,
    require_embedder,
)
from streamvane_worker.stages.item import ContentItem, Embedding

VECTOR_DECIMALS = 7
"""float32 carries about 7 significant digits; printing 17 would double the message size."""


class TextEmbedding:
    def __init__(self, ctx: StageContext) -> None:
        self._ctx = ctx
        self._embedder = require_embedder(ctx)

    async def process(self, items: list[ContentItem]) -> StageResult:
        watch = Stopwatch(self._ctx, len(items))
        vectors = await item_vectors(self._embedder, items, reuse=False)
        record = watch.record(vectors.inference_ms)
        info = self._embedder.info
        outputs = {
            i: items[i].model_copy(
                update={
                    "embedding": Embedding(
                        vector=np.round(vector, VECTOR_DECIMALS).tolist(),
                        model=info.name,
                        model_version=info.version,
                    ),
                    "stages": [*items[i].stages, record],
                }
            )
            for i, vector in vectors.by_index.items()
        }
        return StageResult(outputs=outputs, errors=vectors.errors)


async def create(ctx: StageContext) -> Stage[ContentItem]:
    return TextEmbedding(ctx)


KIND = StageKind(create, ContentItem, ContentItem)
