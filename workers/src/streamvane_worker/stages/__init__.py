"""Stage registry: one module per ``StageType``, each exposing ``KIND`` (its factory and its
input and output message models)."""

from __future__ import annotations

from typing import Any

from streamvane_worker.config import StageType
from streamvane_worker.stages import (
    candidate_retrieval,
    label_examples,
    online_training,
    passthrough,
    ranking,
    safety,
    tagging,
    text_embedding,
    training_examples,
    user_profile,
)
from streamvane_worker.stages.base import Stage, StageContext, StageKind
from streamvane_worker.stages.message import Message

REGISTRY: dict[StageType, StageKind] = {
    StageType.PASSTHROUGH: passthrough.KIND,
    StageType.TEXT_EMBEDDING: text_embedding.KIND,
    StageType.TAGGING: tagging.KIND,
    StageType.SAFETY: safety.KIND,
    StageType.USER_PROFILE: user_profile.KIND,
    StageType.CANDIDATE_RETRIEVAL: candidate_retrieval.KIND,
    StageType.RANKING: ranking.KIND,
    StageType.TRAINING_EXAMPLES: training_examples.KIND,
    StageType.ONLINE_TRAINING: online_training.KIND,
    StageType.LABEL_EXAMPLES: label_examples.KIND,
}


async def create_stage(ctx: StageContext) -> Stage[Any]:
    return await REGISTRY[ctx.stage_type].create(ctx)


def input_model(stage_type: StageType) -> type[Message]:
    return REGISTRY[stage_type].input


def side_input_models(stage_type: StageType) -> dict[str, type[Message]]:
    """The message model of each side input, by the param naming its topic."""
    return dict(REGISTRY[stage_type].side_inputs)


def output_model(stage_type: StageType) -> type[Message]:
    return REGISTRY[stage_type].output


__all__ = [
    "REGISTRY",
    "Stage",
    "StageContext",
    "create_stage",
    "input_model",
    "output_model",
    "side_input_models",
]
