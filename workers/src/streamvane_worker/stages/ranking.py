"""ranking: a user's candidates -> the same items scored by the ranking model on Triton, best
first, with the exact features the model saw.

For each candidate still in the catalogue and not safety-blocked (the catalogue is followed
like candidate-retrieval follows it, so an item deleted or blocked since retrieval is dropped
here too) the stage builds one row: the profile vector (``user``), the item's embedding
(``item``) and the dense features (retrieval score, review flag, log1p of the profile's strength
and event count). All rows of a micro-batch are scored in one pass through the Triton client,
split to the model's max batch size (``inference.ranker``). The top ``topK`` per user are
emitted as ``Recommendations``, each with its features as float32 values turned into JSON
floats exactly, plus the model's name and version.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import structlog

from streamvane_worker.config import RankingParams
from streamvane_worker.inference.backend import EMBEDDING_DIM
from streamvane_worker.inference.ranker import DENSE_FEATURES, FloatArray, Ranker
from streamvane_worker.stages.base import Stage, StageContext, StageKind, StageResult
from streamvane_worker.stages.catalogue import Catalogue, CatalogueItem, Following
from streamvane_worker.stages.item import Decision
from streamvane_worker.stages.message import Message
from streamvane_worker.stages.recommendation import (
    Candidates,
    ModelRef,
    RankedItem,
    RankingFeatures,
    Recommendations,
    request_id,
)

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
        rows = np.asarray(owner, dtype=np.intp)
        users = np.asarray([m.profile.vector for m in messages], dtype=np.float32)
        user = users[rows].reshape(-1, EMBEDDING_DIM)
        item = (
            np.stack([it.vector for it in found]).astype(np.float32)
            if found
            else np.zeros((0, EMBEDDING_DIM), np.float32)
        )
        profiles = [m.profile for m in messages]
        dense = dense_rows(
            np.asarray(retrieval, dtype=np.float32),
            np.asarray([it.decision == Decision.REVIEW for it in found], dtype=np.float32),
            np.asarray([profiles[i].strength for i in owner], dtype=np.float32),
            np.asarray([profiles[i].event_count for i in owner], dtype=np.float32),
        )
        scores = (await self._ranker.score(user, item, dense)).scores if found else np.zeros(0)
        info = self._ranker.info
        model = ModelRef(name=info.name, version=info.version)
        now = datetime.now(UTC)
        outputs: dict[int, Message] = {}
        # The ranked items are built from validated input and the model's float32 output, so
        # they are not validated again (that would re-check 384 floats per item per message).
        for i, message in enumerate(messages):
            mine = np.flatnonzero(rows == i)
            best = sorted(mine, key=lambda r: (-scores[r], found[r].id))[: self._params.top_k]
            outputs[i] = Recommendations(
                user_id=message.user_id,
                items=[
                    RankedItem.model_construct(
                        item_id=found[r].id,
                        score=float(scores[r]),
                        retrieval_score=retrieval[r],
                        features=RankingFeatures.model_construct(
                            item=item[r].tolist(),
                            dense=dict(zip(DENSE_FEATURES, dense[r].tolist(), strict=True)),
                        ),
                    )
                    for r in best
                ],
                model=model,
                user_features=users[i].tolist(),
                profile_version=message.profile.version,
                request_id=request_id(message.profile),
                candidates_scored=len(mine),
                ranked_at=now,
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
    return Ranking(params, ctx.ranker, items)


KIND = StageKind(create, Candidates, Recommendations)
