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
from streamvane_worker.inference.ranker import DENSE_FEATURES, Ranker
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


def dense_row(
    retrieval_score: float, item: CatalogueItem, strength: float, events: int
) -> list[float]:
    """The ``dense`` features of one pair, in ``DENSE_FEATURES`` order (pure)."""
    return [
        retrieval_score,
        1.0 if item.decision == Decision.REVIEW else 0.0,
        float(np.log1p(max(strength, 0.0))),
        float(np.log1p(events)),
    ]


class Ranking:
    def __init__(self, params: RankingParams, ranker: Ranker, items: RankableItems) -> None:
        self._params = params
        self._ranker = ranker
        self._items = items

    async def process(self, messages: list[Candidates]) -> StageResult:
        rows: list[tuple[int, str, float, CatalogueItem]] = []
        for i, message in enumerate(messages):
            for candidate in message.items:
                found = self._items.items.get(candidate.item_id)
                if found is not None:
                    rows.append((i, candidate.item_id, candidate.score, found))
        users = np.asarray([m.profile.vector for m in messages], dtype=np.float32)
        user = users[[i for i, *_ in rows]].reshape(-1, EMBEDDING_DIM)
        item = np.asarray([it.vector for *_, it in rows], dtype=np.float32).reshape(
            -1, EMBEDDING_DIM
        )
        dense = np.asarray(
            [
                dense_row(score, it, messages[i].profile.strength, messages[i].profile.event_count)
                for i, _, score, it in rows
            ],
            dtype=np.float32,
        ).reshape(-1, len(DENSE_FEATURES))
        scores = (await self._ranker.score(user, item, dense)).scores if rows else np.zeros(0)
        ranked: dict[int, list[RankedItem]] = {i: [] for i in range(len(messages))}
        for row, (i, item_id, retrieval_score, _) in enumerate(rows):
            ranked[i].append(
                RankedItem(
                    item_id=item_id,
                    score=float(scores[row]),
                    retrieval_score=retrieval_score,
                    features=RankingFeatures(
                        item=item[row].tolist(),
                        dense=dict(zip(DENSE_FEATURES, dense[row].tolist(), strict=True)),
                    ),
                )
            )
        info = self._ranker.info
        now = datetime.now(UTC)
        outputs: dict[int, Message] = {}
        for i, message in enumerate(messages):
            best = sorted(ranked[i], key=lambda r: (-r.score, r.item_id))[: self._params.top_k]
            outputs[i] = Recommendations(
                user_id=message.user_id,
                items=best,
                model=ModelRef(name=info.name, version=info.version),
                user_features=users[i].tolist(),
                profile_version=message.profile.version,
                candidates_scored=len(ranked[i]),
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
