"""The catalogue: the content pipeline's enriched items, read from its output topic.

Every replica of a recommendation stage reads the whole topic with a ``Reader`` (no
subscription, nothing acked) and hands each change to a ``CatalogueListener``: an enriched
item upserts, an empty message keyed by an item id (a tombstone, as compaction understands it)
deletes. ``catch_up`` reads to the end before a stage starts; ``follow`` keeps reading on the
event loop afterwards, so listeners are only ever called from the loop (no locks needed).
Items without an embedding, and payloads that do not parse, are skipped and counted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import structlog
from pydantic import ValidationError

from streamvane_worker.inference.backend import EmbeddingArray
from streamvane_worker.io.base import Reader, Record
from streamvane_worker.io.errors import PulsarError
from streamvane_worker.stages.item import ContentItem, Decision

log = structlog.get_logger(__name__)

READ_MAX = 1000
FOLLOW_WAIT_MS = 200
RETRY_S = 1.0


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


class Catalogue:
    def __init__(
        self, reader: Reader, listener: CatalogueListener, position: bytes | None = None
    ) -> None:
        """``position``: where ``reader`` was opened, for a listener restored from a snapshot."""
        self._reader = reader
        self._listener = listener
        self.position = position
        """Of the last record applied: a reader opened after it misses nothing."""
        self.skipped = 0
        self._reading = asyncio.Lock()  # one read at a time: follow and catch_up share a reader

    async def catch_up(self) -> int:
        """Apply everything published so far; returns how many records were read."""
        total = 0
        while records := await self._read(0):
            total += len(records)
        return total

    async def follow(self) -> None:
        """Apply changes as they arrive, until cancelled."""
        while True:
            try:
                await self._read(FOLLOW_WAIT_MS)
            except PulsarError as e:
                log.warning("catalogue_read_failed", error=str(e))
                await asyncio.sleep(RETRY_S)

    async def _read(self, wait_ms: int) -> list[Record]:
        async with self._reading:
            records = await self._reader.read_available(READ_MAX, wait_ms)
            self._apply(records)
        return records

    def _apply(self, records: list[Record]) -> None:
        for record in records:
            change = parse(record)
            if isinstance(change, CatalogueItem):
                self._listener.upsert(change)
            elif change is not None:
                self._listener.delete(change)
            else:
                self.skipped += 1
            self.position = record.position

    async def close(self) -> None:
        await self._reader.close()


class ItemVectors:
    """A ``CatalogueListener`` keeping each live item's embedding, for lookups by id."""

    def __init__(self) -> None:
        self.vectors: dict[str, EmbeddingArray] = {}

    def upsert(self, item: CatalogueItem) -> None:
        self.vectors[item.id] = item.vector

    def delete(self, item_id: str) -> None:
        self.vectors.pop(item_id, None)


class Following:
    """The task that runs ``Catalogue.follow``; closing cancels it and closes the reader."""

    def __init__(self, catalogue: Catalogue) -> None:
        self._catalogue = catalogue
        self._task = asyncio.create_task(catalogue.follow(), name="catalogue-follow")

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._catalogue.close()
