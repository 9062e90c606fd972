"""safety: policy categories scored from each item's embedding, zero-shot or by a trained head.

A category at or above its block threshold blocks the item; otherwise one at or above its
review threshold sends it to review; otherwise the item is allowed. All scores are reported.
Thresholds are given per category, or calibrated at start on benign texts to a target
false-positive rate (``params.calibration``; the rates measured on them are logged). In
classifier mode the benign texts are also the head's benign class: every other one trains the
head, the rest calibrate it, so the rate is not measured on what the head learned from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamvane_worker.config import SafetyCalibration, SafetyParams, ScoringMode
from streamvane_worker.inference.backend import EmbeddingArray
from streamvane_worker.inference.embedder import Embedder
from streamvane_worker.stages.base import Stage, StageContext, StageKind
from streamvane_worker.stages.item import ContentItem, Decision, SafetyVerdict
from streamvane_worker.stages.label_scoring import ClassTexts, calibrate
from streamvane_worker.stages.scored import (
    Annotator,
    class_scores,
    embed_classes,
    local,
    scored_stage,
)

BENIGN = "benign"
"""The label of benign texts (``streamvane classify --examples``), and the head's extra class."""


@dataclass(frozen=True)
class Thresholds:
    name: str
    review: float
    block: float
    benign_review_rate: float | None = None
    """Share of the calibration's benign texts this category sends to review (or blocks)."""
    benign_block_rate: float | None = None


def verdict(scores: EmbeddingArray, thresholds: list[Thresholds]) -> SafetyVerdict:
    """Decision for one item's score row (pure)."""
    blocked = [t.name for t, s in zip(thresholds, scores, strict=True) if s >= t.block]
    flagged = [t.name for t, s in zip(thresholds, scores, strict=True) if s >= t.review]
    decision = Decision.BLOCK if blocked else Decision.REVIEW if flagged else Decision.ALLOW
    rounded = {t.name: round(float(s), 6) for t, s in zip(thresholds, scores, strict=True)}
    return SafetyVerdict(decision=decision, scores=rounded, flagged=flagged)


def thresholds(params: SafetyParams, benign_scores: EmbeddingArray | None) -> list[Thresholds]:
    """Each category's thresholds: its own, else calibrated on the benign scores [n, categories]."""
    result = []
    for k, category in enumerate(params.categories):
        if benign_scores is None or params.calibration is None:
            assert category.review_threshold is not None and category.block_threshold is not None
            result.append(
                Thresholds(category.name, category.review_threshold, category.block_threshold)
            )
            continue
        column = benign_scores[:, k]
        review = calibrate(column, params.calibration.review_false_positive_rate).threshold
        block = calibrate(column, params.calibration.block_false_positive_rate).threshold
        review = category.review_threshold if category.review_threshold is not None else review
        block = category.block_threshold if category.block_threshold is not None else block
        block = max(block, review)
        result.append(
            Thresholds(
                category.name,
                review,
                block,
                benign_review_rate=float(np.mean(column >= review)),
                benign_block_rate=float(np.mean(column >= block)),
            )
        )
    return result


def _classes(params: SafetyParams, calibration: SafetyCalibration | None) -> list[ClassTexts]:
    classes = [ClassTexts(c.name, c.description, c.examples) for c in params.categories]
    if params.mode == ScoringMode.CLASSIFIER and calibration is not None:
        trains = calibration.benign_examples[::2]
        classes.append(ClassTexts(BENIGN, trains[0], trains[1:]))
    return classes


def with_examples(params: SafetyParams, examples: dict[str, list[str]]) -> SafetyParams:
    """``params`` with more example texts per category name, and texts labelled ``benign``
    added to the calibration's benign examples (a calibration with the default rates is made
    when there is none); an unknown name is a ValueError."""
    names = [c.name for c in params.categories]
    unknown = sorted(set(examples) - {*names, BENIGN})
    if unknown:
        raise ValueError(
            f"labels {unknown} are neither the stage's categories {names} nor {BENIGN!r}"
        )
    categories = [
        c.model_copy(update={"examples": [*c.examples, *examples.get(c.name, [])]})
        for c in params.categories
    ]
    update: dict[str, object] = {"categories": categories}
    if examples.get(BENIGN):
        calibration = params.calibration or SafetyCalibration(benign_examples=examples[BENIGN])
        if params.calibration is not None:
            benign = [*calibration.benign_examples, *examples[BENIGN]]
            calibration = calibration.model_copy(update={"benign_examples": benign})
        update["calibration"] = calibration
    return params.model_copy(update=update)


async def annotator(params: SafetyParams, embedder: Embedder) -> Annotator:
    calibration = params.calibration
    classes = _classes(params, calibration)
    scorer = class_scores(params.mode, await embed_classes(embedder, classes))
    categories = len(params.categories)

    def category_scores(vectors: EmbeddingArray) -> EmbeddingArray:
        return scorer(vectors)[:, :categories]

    benign_scores = None
    if calibration is not None:
        held_out = (
            calibration.benign_examples[1::2]
            if params.mode == ScoringMode.CLASSIFIER
            else calibration.benign_examples
        )
        benign_scores = category_scores((await embedder.embed(held_out)).vectors)
    limits = thresholds(params, benign_scores)
    return Annotator(
        local(category_scores),
        lambda row: {"safety": verdict(row, limits)},
        {
            "mode": params.mode.value,
            "thresholds": [t.__dict__ for t in limits],
            "benign_examples": len(benign_scores) if benign_scores is not None else 0,
        },
    )


async def create(ctx: StageContext) -> Stage[ContentItem]:
    params = SafetyParams.model_validate(ctx.params)
    return await scored_stage(ctx, lambda embedder: annotator(params, embedder))


KIND = StageKind(create, ContentItem, ContentItem)
