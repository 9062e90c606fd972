"""Zero-shot scoring: the shape shared by ``tagging`` and ``safety``.

Prototype texts (label or category descriptions) are embedded once at start with the same model
as the items; each item's embedding (reused from upstream when present) is scored against them
by cosine similarity, and ``annotate`` turns that row of scores into the item's new field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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

Annotate = Callable[[EmbeddingArray], dict[str, Any]]
"""One item's similarity row (one score per prototype) -> the fields the stage sets."""


class ZeroShot:
    def __init__(
        self, ctx: StageContext, embedder: Embedder, prototypes: EmbeddingArray, annotate: Annotate
    ) -> None:
        self._ctx = ctx
        self._embedder = embedder
        self._prototypes = prototypes
        self._annotate = annotate

    async def process(self, items: list[ContentItem]) -> StageResult:
        watch = Stopwatch(self._ctx, len(items))
        vectors = await item_vectors(self._embedder, items, reuse=True)
        record = watch.record(vectors.inference_ms)
        outputs = {
            i: items[i].model_copy(
                update={
                    **self._annotate(self._prototypes @ vector),
                    "stages": [*items[i].stages, record],
                }
            )
            for i, vector in vectors.by_index.items()
        }
        return StageResult(outputs=outputs, errors=vectors.errors)


async def zero_shot_stage(
    ctx: StageContext, prototypes: list[str], annotate: Annotate
) -> Stage[ContentItem]:
    embedder = require_embedder(ctx)
    embedded = await embedder.embed(prototypes)
    return ZeroShot(ctx, embedder, embedded.vectors, annotate)
