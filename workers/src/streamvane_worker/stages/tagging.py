"""tagging: zero-shot tags by cosine similarity to label prototypes.

Each label's description is embedded once at start with the same model as the items; an item's
tags are the ``topK`` labels with the highest cosine similarity at or above ``minScore``. An
embedding already on the item (from an upstream text-embedding stage) is reused.
"""

from __future__ import annotations

import numpy as np

from streamvane_worker.config import TaggingParams
from streamvane_worker.inference.backend import EmbeddingArray
from streamvane_worker.stages.base import Stage, StageContext, StageKind
from streamvane_worker.stages.item import ContentItem, Tag
from streamvane_worker.stages.zero_shot import zero_shot_stage


def top_tags(scores: EmbeddingArray, names: list[str], top_k: int, min_score: float) -> list[Tag]:
    """The best ``top_k`` labels of one item's similarity row, best first (pure)."""
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [
        Tag(name=names[j], score=round(float(scores[j]), 6))
        for j in order
        if scores[j] >= min_score
    ]


async def create(ctx: StageContext) -> Stage[ContentItem]:
    params = TaggingParams.model_validate(ctx.params)
    names = [label.name for label in params.labels]
    return await zero_shot_stage(
        ctx,
        [label.description for label in params.labels],
        lambda scores: {"tags": top_tags(scores, names, params.top_k, params.min_score)},
    )


KIND = StageKind(create, ContentItem, ContentItem)
