"""safety: policy categories scored by cosine similarity to category prototypes.

A category at or above its ``blockThreshold`` blocks the item; otherwise one at or above its
``reviewThreshold`` sends it to review; otherwise the item is allowed. All scores are reported.
"""

from __future__ import annotations

from streamvane_worker.config import SafetyCategory, SafetyParams
from streamvane_worker.inference.backend import EmbeddingArray
from streamvane_worker.stages.base import Stage, StageContext, StageKind
from streamvane_worker.stages.item import ContentItem, Decision, SafetyVerdict
from streamvane_worker.stages.zero_shot import zero_shot_stage


def verdict(scores: EmbeddingArray, categories: list[SafetyCategory]) -> SafetyVerdict:
    """Decision for one item's similarity row (pure)."""
    by_name = {c.name: round(float(s), 6) for c, s in zip(categories, scores, strict=True)}
    blocked = [c.name for c in categories if by_name[c.name] >= c.block_threshold]
    flagged = [c.name for c in categories if by_name[c.name] >= c.review_threshold]
    decision = Decision.BLOCK if blocked else Decision.REVIEW if flagged else Decision.ALLOW
    return SafetyVerdict(decision=decision, scores=by_name, flagged=flagged)


async def create(ctx: StageContext) -> Stage[ContentItem]:
    params = SafetyParams.model_validate(ctx.params)
    return await zero_shot_stage(
        ctx,
        [c.description for c in params.categories],
        lambda scores: {"safety": verdict(scores, params.categories)},
    )


KIND = StageKind(create, ContentItem, ContentItem)
