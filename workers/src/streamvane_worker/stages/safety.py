"""safety: policy categories scored by cosine similarity to category prototypes.

A category at or above its ``blockThreshold`` blocks the item; otherwise one at or above its
``reviewThreshold`` sends it to review; otherwise the item is allowed. All scores are reported.
"""

from __future__ import annotations

from streamvane_worker.config import SafetyCategory, SafetyParams
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
from streamvane_worker.stages.item import ContentItem, Decision, SafetyVerdict


def verdict(scores: EmbeddingArray, categories: list[SafetyCategory]) -> SafetyVerdict:
    """Decision for one item's similarity row (pure)."""
    by_name = {c.name: round(float(s), 6) for c, s in zip(categories, scores, strict=True)}
    blocked = [c.name for c in categories if by_name[c.name] >= c.block_threshold]
    flagged = [c.name for c in categories if by_name[c.name] >= c.review_threshold]
    decision = Decision.BLOCK if blocked else Decision.REVIEW if flagged else Decision.ALLOW
    return SafetyVerdict(decision=decision, scores=by_name, flagged=flagged)


class Safety:
    def __init__(
        self,
        ctx: StageContext,
        embedder: Embedder,
        params: SafetyParams,
        prototypes: EmbeddingArray,
    ) -> None:
        self._ctx = ctx
        self._embedder = embedder
        self._categories = params.categories
        self._prototypes = prototypes

    async def process(self, items: list[ContentItem]) -> StageResult:
        watch = Stopwatch(self._ctx, len(items))
        vectors = await item_vectors(self._embedder, items, reuse=True)
        record = watch.record(vectors.inference_ms)
        outputs = {
            i: items[i].model_copy(
                update={
                    "safety": verdict(self._prototypes @ vector, self._categories),
                    "stages": [*items[i].stages, record],
                }
            )
            for i, vector in vectors.by_index.items()
        }
        return StageResult(outputs=outputs, errors=vectors.errors)


async def create(ctx: StageContext) -> Stage:
    embedder = require_embedder(ctx)
    params = SafetyParams.model_validate(ctx.params)
    prototypes = await embedder.embed([c.description for c in params.categories])
    return Safety(ctx, embedder, params, prototypes.vectors)
