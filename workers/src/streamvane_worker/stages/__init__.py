"""Stage registry: one module per ``StageType``, each exposing ``create(ctx) -> Stage``."""

from __future__ import annotations

from streamvane_worker.config import StageType
from streamvane_worker.stages import passthrough, safety, tagging, text_embedding
from streamvane_worker.stages.base import Stage, StageContext, StageFactory

REGISTRY: dict[StageType, StageFactory] = {
    StageType.PASSTHROUGH: passthrough.create,
    StageType.TEXT_EMBEDDING: text_embedding.create,
    StageType.TAGGING: tagging.create,
    StageType.SAFETY: safety.create,
}


async def create_stage(ctx: StageContext) -> Stage:
    return await REGISTRY[ctx.stage_type](ctx)


__all__ = ["REGISTRY", "Stage", "StageContext", "create_stage"]
