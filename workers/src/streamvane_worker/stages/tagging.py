"""tagging: tags from each item's embedding, zero-shot or by a trained linear head.

Zero-shot, a label's score is its best cosine similarity to its prototypes (the description
and, with ``examples``, their centroid); in classifier mode it is the probability of a linear
head trained at start on the labels' examples, or, with ``headModel``, of a head trained
online from a labelled topic and served on Triton (``label_head``; the version that scored an
item is its stage record's ``modelVersion``). An item's tags are the ``topK`` labels scoring at
or above ``minScore``; with ``minMargin``, only the best label, and only when it beats the
runner-up by that much. An embedding already on the item (from an upstream text-embedding
stage) is reused.
"""

from __future__ import annotations

import numpy as np

from streamvane_worker.config import TaggingParams
from streamvane_worker.inference.backend import EmbeddingArray
from streamvane_worker.inference.embedder import Embedder
from streamvane_worker.inference.ranker import Ranker
from streamvane_worker.stages.base import Stage, StageContext, StageKind
from streamvane_worker.stages.item import ContentItem, Tag
from streamvane_worker.stages.label_head import head_scores, served_head
from streamvane_worker.stages.label_scoring import ClassTexts
from streamvane_worker.stages.scored import (
    Annotator,
    class_scores,
    embed_classes,
    local,
    scored_stage,
)


def top_tags(scores: EmbeddingArray, names: list[str], params: TaggingParams) -> list[Tag]:
    """The tags of one item's score row, best first (pure)."""
    order = np.argsort(-scores, kind="stable")
    if params.min_margin is not None:
        runner_up = scores[order[1]] if len(order) > 1 else -np.inf
        order = order[:1] if scores[order[0]] - runner_up >= params.min_margin else order[:0]
    return [
        Tag(name=names[j], score=round(float(scores[j]), 6))
        for j in order[: params.top_k]
        if scores[j] >= params.min_score
    ]


def with_examples(params: TaggingParams, examples: dict[str, list[str]]) -> TaggingParams:
    """``params`` with more example texts per label name; an unknown name is a ValueError."""
    names = [label.name for label in params.labels]
    unknown = sorted(set(examples) - set(names))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the stage's labels {names}")
    labels = [
        label.model_copy(update={"examples": [*label.examples, *examples.get(label.name, [])]})
        for label in params.labels
    ]
    return params.model_copy(update={"labels": labels})


async def annotator(
    params: TaggingParams, embedder: Embedder, head: Ranker | None = None
) -> Annotator:
    """The stage's scoring; ``head`` is the served ``headModel`` when params name one."""
    classes = [ClassTexts(label.name, label.description, label.examples) for label in params.labels]
    embedded = await embed_classes(embedder, classes)
    if params.head_model is not None:
        if head is None:
            raise ValueError(f"headModel {params.head_model!r} is served by Triton: none given")
        score = head_scores(head, np.stack([e[0] for e in embedded]))
    else:
        score = local(class_scores(params.mode, embedded))
    names = [label.name for label in params.labels]
    return Annotator(
        score,
        lambda row: {"tags": top_tags(row, names, params)},
        {
            "mode": params.mode.value,
            "head_model": params.head_model,
            "labels": len(names),
            "examples": sum(len(c.examples) for c in classes),
        },
    )


async def create(ctx: StageContext) -> Stage[ContentItem]:
    params = TaggingParams.model_validate(ctx.params)
    head = None
    if params.head_model is not None:
        head = await served_head(ctx, params.head_model, params.model_versions_topic)
    return await scored_stage(ctx, lambda embedder: annotator(params, embedder, head))


KIND = StageKind(create, ContentItem, ContentItem)
