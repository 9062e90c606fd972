"""label-examples: labelled content items -> training examples of a label head.

    ContentItem with tags (a labelled topic) --label-examples--> TrainingExample --> online-training

Each item's ``tags`` are its labels (names among ``params.labels``). Its embedding (reused from
upstream, else computed) is paired with every label description's embedding
(``label_head.pair_features``): label 1 for the item's own tags, 0 for the others, negatives
down-sampled by ``negativeSampleRate`` (deterministically, the rate recorded). An item without
tags, or with a tag that is not one of the labels, is dead-lettered with the reason.

The stage writes its examples itself (several per input) and returns only once they are
persisted, so the runtime acks each item after its examples are durable; a redelivered item
yields the same examples with the same ids.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import structlog

from streamvane_worker.config import LabelExamplesParams
from streamvane_worker.inference.backend import EmbeddingArray
from streamvane_worker.inference.embedder import Embedder
from streamvane_worker.io.base import Sink
from streamvane_worker.stages.base import (
    ItemError,
    Stage,
    StageContext,
    StageKind,
    StageResult,
    item_vectors,
    require_embedder,
    send_all,
)
from streamvane_worker.stages.item import ContentItem
from streamvane_worker.stages.label_head import pair_features
from streamvane_worker.stages.label_scoring import ClassTexts
from streamvane_worker.stages.scored import embed_classes
from streamvane_worker.stages.training_examples import example_id, example_out, kept
from streamvane_worker.training.examples import TrainingExample

log = structlog.get_logger(__name__)


def labelled_examples(
    item_id: str,
    vector: EmbeddingArray,
    own: set[str],
    labels: Sequence[tuple[str, EmbeddingArray]],
    negative_rate: float,
    ts_ms: int,
) -> list[TrainingExample]:
    """One item's examples, one per label it keeps (pure)."""
    found = []
    for name, label_vector in labels:
        identifier = example_id(f"label-examples:{item_id}", name)
        positive = name in own
        if not positive and not kept(identifier, negative_rate):
            continue
        found.append(
            TrainingExample(
                label=int(positive),
                ts=ts_ms,
                features=pair_features(vector, label_vector),
                id=identifier,
                item_id=item_id,
                sample_rate=1.0 if positive else negative_rate,
            )
        )
    return found


def label_problem(index: int, own: set[str], names: set[str]) -> ItemError | None:
    """Why the item at ``index``, tagged ``own``, cannot be learned from, if it cannot."""
    if not own:
        return ItemError(index, "unlabelled", "item has no tags: its labels are its tags' names")
    unknown = sorted(own - names)
    if unknown:
        return ItemError(index, "unknown-label", f"tags {unknown} are not among {sorted(names)}")
    return None


class LabelExamples:
    def __init__(
        self,
        embedder: Embedder,
        labels: list[tuple[str, EmbeddingArray]],
        negative_rate: float,
        outputs: Sequence[Sink],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._negative_rate = negative_rate
        self._embedder = embedder
        self._labels = labels
        self._names = {name for name, _ in labels}
        self._outputs = outputs
        self._clock = clock

    async def process(self, items: list[ContentItem]) -> StageResult:
        vectors = await item_vectors(self._embedder, items, reuse=True)
        errors = list(vectors.errors)
        examples: list[TrainingExample] = []
        now_ms = int(self._clock() * 1000)
        for i, vector in vectors.by_index.items():
            own = {tag.name for tag in items[i].tags or []}
            problem = label_problem(i, own, self._names)
            if problem is not None:
                errors.append(problem)
                continue
            examples += labelled_examples(
                items[i].id, vector, own, self._labels, self._negative_rate, now_ms
            )
        outgoing = [example_out(e) for e in examples]
        await send_all([(sink, outgoing) for sink in self._outputs])
        return StageResult(errors=errors)


async def create(ctx: StageContext) -> Stage[ContentItem]:
    params = LabelExamplesParams.model_validate(ctx.params)
    if ctx.topics is None:
        raise ValueError("label-examples writes its examples itself: it needs broker access")
    embedder = require_embedder(ctx)
    classes = [ClassTexts(label.name, label.description) for label in params.labels]
    embedded = await embed_classes(embedder, classes)
    labels = [
        (c.name, np.asarray(e[0], np.float32)) for c, e in zip(classes, embedded, strict=True)
    ]
    outputs = [await ctx.topics.sink(topic) for topic in ctx.outputs]
    ctx.closables.extend(outputs)
    log.info("labels_ready", stage=ctx.name, labels=len(labels))
    return LabelExamples(embedder, labels, params.negative_sample_rate, outputs)


KIND = StageKind(create, ContentItem, TrainingExample)
