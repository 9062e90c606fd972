"""A label head on Triton: the ranker's graph scoring (item embedding, label embedding) pairs.

The online-training stage learns the ranker's MLP from training examples. A label head is
that same model over pairs of an item's embedding (its ``user`` input) and a label
description's embedding (its ``item`` input), with the dense features 0, as a head has none.
So one trainer learns it from a labelled topic (``label-examples`` writes the pairs), judges
and exports its versions and makes Triton serve them, and a ``tagging`` stage in classifier
mode with ``headModel`` scores each item against every label with them. ``models/`` builds
the untrained first version, ``label-head``.

Why pairs and not a softmax over a fixed label list: the ranker's graph, trainer, promotion
guard and version following serve it as they are, and its AUC (one example per item and
label) is the guard's measure, as for the ranker.
"""

from __future__ import annotations

import numpy as np

from streamvane_worker.inference.backend import EmbeddingArray
from streamvane_worker.inference.ranker import DENSE_FEATURES, ITEM, USER, Ranker
from streamvane_worker.stages.base import StageContext
from streamvane_worker.stages.scored import BatchScores, ClassScores
from streamvane_worker.stages.serving_versions import follow_versions
from streamvane_worker.training.examples import FeatureValue

HEAD_DENSE: dict[str, FeatureValue] = dict.fromkeys(DENSE_FEATURES, 0.0)
"""The ranker's dense inputs, which a label head leaves at 0."""


def pair_features(item: EmbeddingArray, label: EmbeddingArray) -> dict[str, FeatureValue]:
    """One training example's features: the item's and the label's embeddings."""
    return {USER: item.tolist(), ITEM: label.tolist(), **HEAD_DENSE}


def pair_rows(
    items: EmbeddingArray, labels: EmbeddingArray
) -> tuple[EmbeddingArray, EmbeddingArray, EmbeddingArray]:
    """The head's inputs for every (item, label) pair, item-major: ``user`` [n * k, dim],
    ``item`` [n * k, dim] and ``dense`` zeros [n * k, len(DENSE_FEATURES)]."""
    n, k = len(items), len(labels)
    user = np.repeat(items, k, axis=0).astype(np.float32)
    item = np.tile(labels, (n, 1)).astype(np.float32)
    return user, item, np.zeros((n * k, len(DENSE_FEATURES)), np.float32)


def head_scores(head: Ranker, labels: EmbeddingArray) -> BatchScores:
    """Scores of items against ``labels`` [k, dim] by the served head, in one call per batch
    (split to the model's max batch size), all by one version."""

    async def score(vectors: EmbeddingArray) -> ClassScores:
        scored = await head.score(*pair_rows(vectors, labels))
        rows = scored.scores.reshape(len(vectors), len(labels))
        return ClassScores(rows, head.backend.model, scored.version)

    return score


async def served_head(ctx: StageContext, model: str, versions_topic: str | None) -> Ranker:
    """The head ``model`` on the stage's Triton, checked to take (item, label) pairs, following
    ``versions_topic``'s announcements when given."""
    if ctx.model_server is None:
        raise ValueError(
            f"headModel {model!r} is served by Triton: inference.backend must be triton"
        )
    head = ctx.model_server(model)
    ctx.closables.append(head)
    await head.start()
    if versions_topic is not None:
        if ctx.topics is None:
            raise ValueError("following modelVersionsTopic needs broker access")
        ctx.closables.append(await follow_versions(ctx.topics, versions_topic, head))
    return head
