"""ranking: a user's candidates -> the same items scored by the ranking model on Triton, best
first, with the exact features the model saw.

For each candidate still in the catalogue and not safety-blocked (the catalogue is followed
like candidate-retrieval follows it, so an item deleted or blocked since retrieval is dropped
here too) the stage builds one row: the profile vector (``user``), the item's embedding
(``item``) and the dense features (retrieval score, review flag, log1p of the profile's strength
and event count). All rows of a micro-batch are scored in one pass through the Triton client,
split to the model's max batch size (``inference.ranker``). The top ``topK`` per user are
emitted as ``Recommendations``, each with the exact float32 rows the model saw (base64 on the
wire, ``stages.vector``), plus the model's name and the version that scored them.

With ``modelVersionsTopic`` the stage reads the trainer's ``ModelVersion`` announcements from
the start and follows them: every request asks Triton for the newest announced serving version
of its model, falling back to the previous one that served while Triton does not serve it
(``inference.versions``). Without it, Triton's default version serves, as configured.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import structlog

from streamvane_worker.config import RankingParams
from streamvane_worker.inference.backend import EMBEDDING_DIM
from streamvane_worker.inference.ranker import DENSE_FEATURES, FloatArray, Ranker
from streamvane_worker.stages.base import Stage, StageContext, StageKind, StageResult
from streamvane_worker.stages.catalogue import Catalogue, CatalogueItem
from streamvane_worker.stages.following import Following
from streamvane_worker.stages.item import Decision
from streamvane_worker.stages.message import Message
from streamvane_worker.stages.recommendation import (
    Candidates,
    ModelRef,
    Recommendations,
    request_id,
)
from streamvane_worker.stages.serving_versions import follow_versions
from streamvane_worker.stages.vector import Vector

log = structlog.get_logger(__name__)


class RankableItems:
    """A ``CatalogueListener`` keeping the live items that may be recommended (not blocked)."""

    def __init__(self) -> None:
        self.items: dict[str, CatalogueItem] = {}

    def upsert(self, item: CatalogueItem) -> None:
        if item.decision == Decision.BLOCK:
            self.items.pop(item.id, None)
        else:
            self.items[item.id] = item

    def delete(self, item_id: str) -> None:
        self.items.pop(item_id, None)


def dense_rows(
    retrieval_scores: FloatArray, review: FloatArray, strength: FloatArray, events: FloatArray
) -> FloatArray:
    """The ``dense`` features of each pair, in ``DENSE_FEATURES`` order (pure)."""
    rows: FloatArray = np.stack(
        [retrieval_scores, review, np.log1p(np.maximum(strength, 0.0)), np.log1p(events)], axis=1
    ).astype(np.float32)
    return rows


class Ranking:
    def __init__(self, params: RankingParams, ranker: Ranker, items: RankableItems) -> None:
        self._params = params
        self._ranker = ranker
        self._items = items

    async def process(self, messages: list[Candidates]) -> StageResult:
        owner: list[int] = []
        found: list[CatalogueItem] = []
        retrieval: list[float] = []
        for i, message in enumerate(messages):
            for candidate in message.items:
                known = self._items.items.get(candidate.item_id)
                if known is not None:
                    owner.append(i)
                    found.append(known)
                    retrieval.append(candidate.score)
        # Rows are grouped by message, in message order: message i owns rows[starts[i]:ends[i]].
        ends = np.cumsum(np.bincount(owner, minlength=len(messages))).tolist()
        starts = [0, *ends[:-1]]
        users = np.stack([m.profile.vector.array for m in messages])
        user = users[np.asarray(owner, dtype=np.intp)].reshape(-1, EMBEDDING_DIM)
        item = (
            np.stack([it.vector for it in found]).astype(np.float32, copy=False)
            if found
            else np.zeros((0, EMBEDDING_DIM), np.float32)
        )
        strength = np.asarray([m.profile.strength for m in messages], dtype=np.float32)
        events = np.asarray([m.profile.event_count for m in messages], dtype=np.float32)
        dense = dense_rows(
            np.asarray(retrieval, dtype=np.float32),
            np.asarray([it.decision == Decision.REVIEW for it in found], dtype=np.float32),
            strength[owner],
            events[owner],
        )
        if found:
            scored = await self._ranker.score(user, item, dense)
            scores: list[float] = scored.scores.tolist()
            version = scored.version
        else:
            scores, version = [], self._ranker.version
        dense_values: list[list[float]] = dense.tolist()
        model = ModelRef(name=self._ranker.info.name, version=version)
        now = datetime.now(UTC)
        outputs: dict[int, Message] = {}
        # Validated from plain values (faster than model_construct in pydantic 2); the logged
        # vectors are read-only views of the rows sent, checked without a copy.
        for i, message in enumerate(messages):
            mine = range(starts[i], ends[i])
            best = sorted(mine, key=lambda r: (-scores[r], found[r].id))[: self._params.top_k]
            outputs[i] = Recommendations.model_validate(
                {
                    "userId": message.user_id,
                    "items": [
                        {
                            "itemId": found[r].id,
                            "score": scores[r],
                            "retrievalScore": retrieval[r],
                            "features": {
                                "item": Vector.of(item[r]),
                                "dense": dict(zip(DENSE_FEATURES, dense_values[r], strict=True)),
                            },
                        }
                        for r in best
                    ],
                    "model": model,
                    "userFeatures": Vector.of(users[i]),
                    "profileVersion": message.profile.version,
                    "requestId": request_id(message.profile),
                    "candidatesScored": len(mine),
                    "rankedAt": now,
                }
            )
        return StageResult(outputs=outputs)


async def create(ctx: StageContext) -> Stage[Candidates]:
    params = RankingParams.model_validate(ctx.params)
    if ctx.topics is None:
        raise ValueError("ranking needs broker access")
    if ctx.ranker is None:
        raise ValueError("ranking needs a ranking model on Triton")
    items = RankableItems()
    catalogue = Catalogue(await ctx.topics.reader(params.catalogue_topic, None), items)
    read = await catalogue.catch_up()
    log.info("catalogue_read", records_read=read, items=len(items.items))
    ctx.closables.append(Following(catalogue))
    if params.model_versions_topic is not None:
        ctx.closables.append(
            await follow_versions(ctx.topics, params.model_versions_topic, ctx.ranker)
        )
    return Ranking(params, ctx.ranker, items)


KIND = StageKind(create, Candidates, Recommendations)
