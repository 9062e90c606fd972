"""The catalogue: the content pipeline's enriched items, read from its output topic.

Every replica of a recommendation stage reads the whole topic with a ``Reader`` (no
subscription, nothing acked) and hands each change to a ``CatalogueListener``: an enriched
item upserts, an empty message keyed by an item id (a tombstone, as compaction understands it)
deletes; it is read and followed like every ``FollowedTopic``, so listeners are only ever
called from the event loop (no locks needed).
Items without an embedding, and payloads that do not parse, are skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pydantic import ValidationError

from streamvane_worker.inference.backend import EmbeddingArray
from streamvane_worker.io.base import Reader, Record
from streamvane_worker.stages.following import FollowedTopic
from streamvane_worker.stages.item import ContentItem, Decision


@dataclass(frozen=True)
class CatalogueItem:
    id: str
    vector: EmbeddingArray
    """Unit-norm float32 embedding."""
    decision: Decision | None
    """Safety decision, None when the content pipeline has no safety stage."""


class CatalogueListener(Protocol):
    def upsert(self, item: CatalogueItem) -> None: ...

    def delete(self, item_id: str) -> None: ...


def parse(record: Record) -> CatalogueItem | str | None:
    """An upsert, the id a tombstone deletes, or None for a record to skip (pure)."""
    if not record.payload:
        return record.key
    try:
        item = ContentItem.model_validate_json(record.payload)
    except ValidationError:
        return None
    if item.embedding is None:
        return None
    vector = np.asarray(item.embedding.vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        return None
    return CatalogueItem(item.id, vector / norm, item.safety.decision if item.safety else None)


class Catalogue(FollowedTopic):
    def __init__(
        self, reader: Reader, listener: CatalogueListener, position: bytes | None = None
    ) -> None:
        super().__init__(reader, position)
        self._listener = listener
        self.skipped = 0

    def apply(self, record: Record) -> None:
        change = parse(record)
        if isinstance(change, CatalogueItem):
            self._listener.upsert(change)
        elif change is not None:
            self._listener.delete(change)
        else:
            self.skipped += 1


class ItemVectors:
    """A ``CatalogueListener`` keeping each live item's embedding, for lookups by id."""

    def __init__(self) -> None:
        self.vectors: dict[str, EmbeddingArray] = {}

    def upsert(self, item: CatalogueItem) -> None:
        self.vectors[item.id] = item.vector

    def delete(self, item_id: str) -> None:
        self.vectors.pop(item_id, None)
